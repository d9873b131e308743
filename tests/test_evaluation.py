"""The evaluation a clinician can trust: every metric as a bootstrap statistic equal to the recorded metric,
pooled metrics' intervals against scipy, subgroups flagged, the interval promotion rules, operating thresholds
used by predict, and the model card written on deploy and exported.
"""

import json

import numpy as np
import pytest
from scipy import stats

from patientml_widgets import bootstrap, evaluation, model_card
from patientml_widgets.errors import ValidationError
from patientml_widgets.policy import promotion_decision
from patientml_widgets.records import Prediction
from patientml_widgets.training import metrics

TINY = {"steps": 6, "image_size": 32, "base_channels": 4, "batch_size": 16}


def whole(statistic):
    """A statistic's value on the whole set (every example once)."""
    return float(statistic.bind(np.zeros(statistic.n, int), 1)(np.ones((1, 1)))[0])


def test_every_statistic_equals_the_metric_the_trainer_records():
    rng = np.random.default_rng(0)
    n, k = 90, 3
    proba = rng.dirichlet(np.ones(k), n)
    y = rng.integers(0, k, n)
    loss = float(np.mean(-np.log(proba[np.arange(n), y])))
    ref = metrics.classification_metrics(y, proba, loss)
    got = evaluation.statistics("classification", proba, y, k)
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "auroc", "loss"):
        assert whole(got[name]) == pytest.approx(ref[name]), name
    assert whole(got["ece"]) == pytest.approx(evaluation.calibration(proba, y)["ece"])
    truth = rng.random((n, k)) < 0.4
    ref = metrics.multilabel_metrics(truth, proba)
    got = evaluation.statistics("classification", proba, truth, k, multi_label=True)
    for name in ("subset_accuracy", "f1_macro", "balanced_accuracy", "auroc"):
        assert whole(got[name]) == pytest.approx(ref[name]), name
    masks = [rng.integers(0, 3, (12, 20)) for _ in range(6)]
    preds = [np.where(rng.random(m.shape) < 0.7, m, rng.integers(0, 3, m.shape)) for m in masks]
    ref = metrics.segmentation_metrics(np.stack(masks), np.stack(preds), 3)
    got = evaluation.statistics("segmentation", preds, masks, 3)
    for name in ("dice_mean", "iou_mean", "pixel_accuracy"):
        assert whole(got[name]) == pytest.approx(ref[name]), name
    volumes = [rng.integers(0, 2, (4, 8, 8)) for _ in range(3)]
    ref = metrics.volume_metrics(volumes, volumes[::-1], [(1.0, 1.0, 1.0)] * 3, 2)
    got = evaluation.statistics("segmentation", volumes[::-1], volumes, 2, hd95=ref["hd95_per_volume"])
    assert whole(got["dice_mean"]) == pytest.approx(ref["dice_mean"])
    assert whole(got["hd95_mean"]) == pytest.approx(ref["hd95_mean"])
    with pytest.raises(ValidationError, match="prediction is"):
        evaluation.statistics("segmentation", [np.zeros((3, 3))], [np.zeros((4, 4))], 2)


def test_a_pooled_metrics_interval_equals_scipys_bootstrap_of_it():
    rng = np.random.default_rng(1)
    n = 80
    truth = rng.random(n) < 0.4
    score = np.clip(truth * 0.25 + rng.normal(0.4, 0.2, n), 0, 1)
    got = bootstrap.paired_bootstrap(
        {"auroc": bootstrap.Auroc(truth, score)}, range(n), resamples=8000, seed=3, method="percentile"
    )["metrics"]["auroc"]

    def auc(t, s):
        return metrics.auroc(t, s)

    ref = stats.bootstrap(
        (truth, score), auc, paired=True, vectorized=False, n_resamples=8000, method="percentile", random_state=4
    )
    assert got["value"] == pytest.approx(metrics.auroc(truth, score))
    assert got["low"] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert got["high"] == pytest.approx(ref.confidence_interval.high, abs=0.01)
    # balanced accuracy from pooled confusion counts, BCa, against scipy's BCa
    y = rng.integers(0, 2, n)
    proba = np.stack([1 - score, score], 1)
    stat = evaluation.statistics("classification", proba, y, 2)["balanced_accuracy"]
    got = bootstrap.paired_bootstrap({"b": stat}, range(n), resamples=8000, seed=5)["metrics"]["b"]

    def balanced(t, p):
        return metrics.classification_metrics(t, np.stack([1 - p, p], 1))["balanced_accuracy"]

    ref = stats.bootstrap((y, score), balanced, paired=True, vectorized=False, n_resamples=8000, random_state=6)
    assert got["low"] == pytest.approx(ref.confidence_interval.low, abs=0.012)
    assert got["high"] == pytest.approx(ref.confidence_interval.high, abs=0.012)


def test_subgroups_come_from_dicom_fields_age_and_tags_and_a_worse_one_is_flagged():
    examples = [
        {"subject_id": "p1", "source": {"manufacturer": "GE", "modality": "MR"}},
        {"subject_id": "p2", "source": {"dicom": {"modality": "CT", "patient": {"PatientSex": "F"}}}},
        {"subject_id": "p3", "source": {"file": "site-b/x.png"}},
    ]
    subjects = {
        "p1": {"metadata": {"PatientSex": "M", "PatientAge": "067Y"}, "tags": ["trial"]},
        "p2": {"metadata": {"PatientBirthDate": "19800601", "StudyDate": "20200501"}},
        "p3": {"metadata": {"PatientAge": "006M"}},
    }
    assert evaluation.group_of("Manufacturer", examples[0], subjects["p1"]) == ["GE"]
    assert evaluation.group_of("Modality", examples[1], subjects["p2"]) == ["CT"]
    assert evaluation.group_of("PatientSex", examples[1], subjects["p2"]) == ["F"]
    assert [evaluation.group_of("age", e, subjects[e["subject_id"]]) for e in examples] == [
        ["60-79"],
        ["18-39"],
        ["0-17"],
    ]
    assert evaluation.group_of("tags", examples[0], subjects["p1"]) == ["trial"]
    assert evaluation.group_of("split_source", examples[2], None) == ["site-b"]
    assert evaluation.group_of("Manufacturer", {"source": {"manufacturer": ["crafted"]}}, None) == []
    assert evaluation.group_of("Manufacturer", {"source": {"manufacturer": float("nan")}}, None) == []
    for unknown in (
        {"PatientAge": "999Y"},
        {"PatientAge": "old"},
        {"PatientBirthDate": "20300101", "StudyDate": "20200101"},
    ):
        assert evaluation.group_of("age", {}, {"metadata": unknown}) == [], unknown  # unknown: in no group
    assert evaluation.group_of("age", {}, {"metadata": {"PatientAge": 0}}) == ["0-17"]  # a newborn
    assert evaluation.group_of("age", {}, {"metadata": {"PatientAge": "010W"}}) == ["0-17"]
    grouped = evaluation.groups(["Modality", "Manufacturer"], examples, subjects)
    assert list(grouped) == ["Modality"] and grouped["Modality"]["CT"].tolist() == [False, True, False]
    # 60 subjects; the challenger is better on site A and clearly worse on site B
    rng = np.random.default_rng(2)
    site = np.array(["A"] * 30 + ["B"] * 30)
    champion = rng.normal(0.8, 0.05, 60)
    challenger = champion + np.where(site == "A", 0.05, -0.08) + rng.normal(0, 0.01, 60)
    out = evaluation.evaluate(
        {"dice_mean": bootstrap.mean(challenger)},
        range(60),
        {"dice_mean": bootstrap.mean(champion)},
        objective="dice_mean",
        subgroups={"site": {"A": site == "A", "B": site == "B"}},
        resamples=1000,
    )
    flags = {g["group"]: g["flag"] for g in out["subgroups"]}
    assert flags == {"A": False, "B": True}
    b = next(g for g in out["subgroups"] if g["group"] == "B")
    assert b["subjects"] == 30 and b["difference"]["high"] < 0
    decision, reason = promotion_decision("dice_mean", "max", 0.0, 0.815, 0.8, evaluation=out)
    assert decision == "reject" and "site B" in reason and "95% CI" in reason


def test_subgroup_flags_are_corrected_for_how_many_groups_are_compared():
    rng = np.random.default_rng(8)
    flagged = 0
    for draw in range(60):  # two equally good runs, 4 fields x 5 random groups of 200 patients
        champion = rng.normal(0.7, 0.1, 200)
        challenger = champion + rng.normal(0, 0.05, 200)
        fields = {f"f{f}": {f"g{g}": rng.integers(0, 5, 200) == g for g in range(5)} for f in range(4)}
        out = evaluation.evaluate(
            {"dice_mean": bootstrap.mean(challenger)},
            range(200),
            {"dice_mean": bootstrap.mean(champion)},
            objective="dice_mean",
            subgroups=fields,
            resamples=500,
            seed=draw,
        )
        assert out["subgroup_comparisons"] == 20 and out["flag_level"] == pytest.approx(1 - 0.05 / 20)
        flagged += any(g["flag"] for g in out["subgroups"])
    assert flagged / 60 <= 0.12  # uncorrected, about a third of such runs had a flagged group


def test_a_diverged_network_gets_no_intervals_and_saturated_losses_match_torchs():
    import torch
    import torch.nn.functional as F

    with pytest.raises(ValidationError, match="NaN"):
        evaluation.statistics("classification", [[0.5, 0.5], [np.nan, 0.5]], [0, 1], 2)
    with pytest.raises(ValidationError, match="NaN"):
        evaluation.calibration(np.array([[0.5, 0.5], [np.nan, 0.5]]), [0, 1])
    p = np.array([[1 - 1e-9, 0.3, 1e-12], [1e-12, 0.5, 1 - 1e-12]])
    y = np.array([[1, 0, 0], [1, 1, 1]], bool)
    ref = F.binary_cross_entropy(
        torch.tensor(p, dtype=torch.float32).clamp(1e-7, 1 - 1e-7), torch.tensor(y, dtype=torch.float32)
    ).item()
    assert whole(evaluation.statistics("classification", p, y, 3, multi_label=True)["loss"]) == pytest.approx(ref)


def test_the_interval_rules_decide_on_the_bound_and_fall_back_with_too_few_subjects():
    def run(shift, n=40, noise=0.03):
        rng = np.random.default_rng(7)
        champion = rng.normal(0.8, 0.05, n)
        challenger = champion + shift + rng.normal(0, noise, n)
        return (
            evaluation.evaluate(
                {"dice_mean": bootstrap.mean(challenger)},
                range(n),
                {"dice_mean": bootstrap.mean(champion)},
                objective="dice_mean",
                resamples=1000,
            ),
            float(challenger.mean()),
            float(champion.mean()),
        )

    clear, a, b = run(0.05)
    decision, reason = promotion_decision("dice_mean", "max", 0.0, a, b, rule="superiority", evaluation=clear)
    assert decision == "approve" and "superiority shown" in reason and "95% CI" in reason
    noisy, a, b = run(0.005, noise=0.08)  # better on average, but the interval spans 0
    assert promotion_decision("dice_mean", "max", 0.0, a, b, evaluation=noisy)[0] == "approve"  # the margin rule
    assert promotion_decision("dice_mean", "max", 0.0, a, b, rule="superiority", evaluation=noisy)[0] == "reject"
    decision, reason = promotion_decision(
        "dice_mean", "max", 0.05, a, b, rule="non-inferiority", evaluation=noisy
    )  # not worse than the champion by more than 0.05: shown
    assert decision == "approve" and "non-inferiority shown" in reason
    few, a, b = run(0.05, n=6)
    decision, reason = promotion_decision("dice_mean", "max", 0.0, a, b, rule="superiority", evaluation=few)
    assert decision == "approve" and "too few" in reason and "margin rule instead of superiority" in reason
    lower = {"difference": {"loss": {"value": -0.05, "low": -0.06, "high": -0.04}}}  # a loss: lower is better
    assert promotion_decision("loss", "min", 0.0, 0.3, 0.35, rule="superiority", evaluation=lower)[0] == "approve"


def test_operating_thresholds_meet_their_target_and_predict_uses_them():
    rng = np.random.default_rng(3)
    n = 200
    y = (rng.random(n) < 0.3).astype(int)
    p1 = np.clip(0.35 * y + rng.normal(0.35, 0.15, n), 0.001, 0.999)
    proba = np.stack([1 - p1, p1], 1)
    chosen = evaluation.operating_thresholds(proba, y, ["normal", "tumour"], {"sensitivity": 0.95})
    t = chosen["classes"]["tumour"]
    assert list(chosen["classes"]) == ["tumour"]  # two classes: the finding's threshold
    assert (p1[y == 1] >= t).mean() >= 0.95 and chosen["val"]["tumour"]["sensitivity"] >= 0.95
    assert (p1[y == 1] >= t + 1e-3).mean() < 0.95 or t >= 0.999  # the highest such threshold
    spec = evaluation.operating_thresholds(proba, y, ["normal", "tumour"], {"specificity": 0.9})
    assert spec["val"]["tumour"]["specificity"] >= 0.9
    assert evaluation.operating_thresholds(proba, y, ["normal", "tumour"], "youden")["classes"]["tumour"] < 1
    for bad in ({"sensitivity": 1.5}, {"accuracy": 0.9}, "best", {"sensitivity": True}):
        with pytest.raises(ValidationError, match="operating_point"):
            evaluation.operating_point(bad)
    below = Prediction("r", None, {"normal": 0.8, "tumour": 0.2}, 0.2, thresholds={"tumour": 0.15})
    assert below.classes == ["tumour"]  # 0.2 reaches the tumour threshold 0.15
    for t in (0.1, 0.2, 0.3, 0.7, 0.123456789):  # exactly at the threshold is the finding, whatever the float noise
        at = Prediction("r", None, {"normal": 1 - t, "tumour": t}, 0.2, thresholds={"tumour": t})
        assert at.classes == ["tumour"]
    # the target holds on validation exactly, for float32 outputs too (thresholds are the scores themselves)
    for seed in range(50):
        r = np.random.default_rng(seed)
        truth = r.random(60) < 0.4
        score = (1 / (1 + np.exp(-(truth + r.normal(0, 1, 60))))).astype(np.float32)
        got = evaluation.operating_thresholds(
            np.stack([1 - score, score], 1), truth.astype(int), ["n", "f"], {"sensitivity": 0.9}
        )
        assert (score[truth] >= got["classes"]["f"]).mean() >= 0.9
        assert got["val"]["f"]["sensitivity"] >= 0.9
    three = evaluation.operating_thresholds(np.full((4, 3), 1 / 3), [0, 1, 0, 1], ["a", "b", "c"], "youden")
    assert set(three["classes"]) == {"a", "b"}  # no "c" in validation: it keeps the default rule
    assert Prediction("r", None, {"normal": 0.8, "tumour": 0.2}, 0.2).classes == ["normal"]
    multi = Prediction("r", None, {"a": 0.3, "b": 0.6}, 0.2, thresholds={"a": 0.25, "b": 0.7}, multi_label=True)
    assert multi.classes == ["a"]


def test_the_model_card_markdown_escapes_what_users_wrote():
    card = model_card.build(
        {
            "id": "m",
            "name": "Lesions <img src=x onerror=alert(1)>",
            "problem_type": "classification",
            "classes": [{"index": 0, "name": "a|b"}],
            "training": {"intended_use": "Triage only.\n# not a heading"},
        },
        {
            "id": "r",
            "slug": "run-1",
            "snapshot": {"train": [["e1", 1]], "test": [["e2", 3]]},
            "metrics": {"test": {"accuracy": 0.9}},
            "evaluation": {"metrics": {"accuracy": {"value": 0.9, "low": 0.8, "high": 0.95}}},
        },
        deployment={"decision": "deploy", "actor": "ana", "reason": "ok", "time": "t"},
        replaced=None,
        image_refs={"e1": "sha-1", "e2": "sha-2"},
        generated="now",
    )
    text = model_card.markdown(card)
    # no link, emphasis or heading from what users wrote: bare URLs, www., _x_, ~~x~~, a setext underline
    tricky = model_card._text("see https://x.org and www.evil.com _a_ ~~b~~ ![i](x)\nTriage\n===\n1. one")
    assert "://" not in tricky and "www." not in tricky and "\\_a\\_" in tricky and "\\~\\~b" in tricky
    assert "\n\\===" in tricky and "1\\. one" in tricky and "\\!\\[i\\]" in tricky
    crafted = {**card, "data": {"counts": {"<b>": "<i>"}, "content_hash": "` <img src=x onerror=alert(2)> `"}}
    assert "<img" not in model_card.markdown(crafted).replace("\\<img", "") and "<b>" not in model_card.markdown(
        crafted
    )
    assert " <img" not in text and "\\<img" in text and "a\\|b" in text and "\n# not" not in text
    assert "| accuracy | 0.9000 | [0.8000, 0.9500] |" in text and "deploy by ana" in text
    again = model_card.snapshot_hash({"test": [["e2", 3]], "train": [["e1", 1]]}, {"e1": "sha-1", "e2": "sha-2"})
    assert card["data"]["content_hash"] == again
    assert model_card.snapshot_hash({"train": [["e1", 2]], "test": [["e2", 3]]}, {"e1": "sha-1"}) != again


def findings_project(path, n, splits):
    """A classification project of ``n`` patients (one image each; a finding is a brighter square)."""
    from patientml_widgets import Project

    project = Project.open(path, create=True)
    model = project.create_model("Findings", problem_type="classification", classes=["normal", "finding"])
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(n):
        img = rng.normal(60, 20, (24, 24))
        img[8:16, 8:16] += 120 * (i % 2)
        project.add_subject(f"p{i}", metadata={"PatientSex": "FM"[i % 4 // 2]}, tags=["site-a" if i < 30 else "b"])
        images.append(img.clip(0, 255).astype(np.uint8))
        labels.append(["normal", "finding"][i % 2])
    examples = project.add_examples(model, images, subjects=[f"p{i}" for i in range(n)], splits=splits)
    for ex, label in zip(examples, labels, strict=True):
        project.submit_label(ex, classes=[label])
    return project, model, examples


@pytest.mark.slow
def test_a_run_without_test_examples_still_gets_its_thresholds(tmp_path):
    project, model, _ = findings_project(tmp_path / "p", 16, ["train", "train", "val", "val"] * 4)
    project.configure_training(model, operating_point="youden")
    run = project.train(model, hyperparameters=TINY).wait(timeout=180)
    assert run.status == "succeeded", run.traceback
    assert run.evaluation == {"note": "the test split is empty: nothing to evaluate"}
    assert set(run.thresholds["classes"]) == {"finding"} and "test" not in run.thresholds


@pytest.mark.slow
def test_a_run_is_evaluated_with_intervals_judged_by_them_deployed_with_a_card(tmp_path):
    splits = [{0: "test", 3: "test", 1: "val", 4: "val"}.get(i % 6, "train") for i in range(48)]
    project, model, examples = findings_project(tmp_path / "p", 48, splits)
    project.configure_training(
        model, rule="superiority", margin=0.0, operating_point={"sensitivity": 0.9}, intended_use="Teaching."
    )
    first = project.train(model, hyperparameters=TINY).wait(timeout=180)
    assert first.status == "succeeded", first.traceback
    ev = first.evaluation
    assert ev["subjects"] == sum(s == "test" for s in splits) >= 10 and ev["enough"]
    for name in ("accuracy", "balanced_accuracy", "auroc", "f1_macro", "loss", "ece"):
        m = ev["metrics"][name]
        assert m["low"] <= m["value"] <= m["high"], name
        if name != "ece":
            assert m["value"] == pytest.approx(first.metrics["test"][name]), name
    assert ev["calibration"]["ece"] == pytest.approx(ev["metrics"]["ece"]["value"])
    assert sum(b["count"] for b in ev["calibration"]["bins"]) == ev["examples"]
    assert {g["field"] for g in ev["subgroups"]} == {"PatientSex", "tags"}
    assert set(first.thresholds["classes"]) == {"finding"} and first.thresholds["val"]["finding"]
    # deployed (first run): the card quotes the data, the intervals and the decision
    card = first.model_card
    assert card["intended_use"] == "Teaching." and card["decision"]["deployment"]["decision"] == "deploy"
    assert card["data"]["counts"]["test"] == ev["examples"] and len(card["data"]["content_hash"]) == 64
    prediction = project.predict(model, examples[2])
    assert prediction.thresholds == first.thresholds["classes"]
    second = project.train(model, hyperparameters={**TINY, "seed": 1}).wait(timeout=180)
    assert second.status == "succeeded", second.traceback
    ev2 = second.evaluation
    assert set(ev2["difference"]) >= {"accuracy", "auroc"} and ev2["champion"]["accuracy"]["value"] == pytest.approx(
        second.champion["metrics"]["test"]["accuracy"]
    )
    system = [a for a in second.approvals if a["actor"] == "system"][-1]
    assert "superiority" in system["reason"] and "95% CI" in system["reason"]
    folder = project.export_run(second, tmp_path / "export")
    exported = json.loads((folder / "model_card.json").read_text())
    assert exported["run"]["slug"] == second.slug and exported["decision"]["deployment"] == (
        second.model_card or {}
    ).get("decision", {}).get("deployment")
    assert "## Comparison with the champion" in (folder / "model_card.md").read_text()
