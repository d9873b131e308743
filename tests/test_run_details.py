"""RunDetails shows a run's evaluation as the worker recorded it: intervals next to the champion's, subgroups
and their flags, the reliability diagram, the operating thresholds and the model card; crafted values show as
text or not at all, and nothing is computed (or loaded) to open it.
"""

import bqplot as bq
import pytest
from helpers import update_run_with_weights

from patientml_widgets import bootstrap, evaluation
from patientml_widgets.widgets import RunDetails
from patientml_widgets.widgets.markup import escape

EVIL = "<img src=x onerror=alert(1)>"


def evaluated(n=24, shift=0.03):
    import numpy as np

    rng = np.random.default_rng(0)
    champion = rng.normal(0.6, 0.1, n)
    challenger = champion + shift + rng.normal(0, 0.02, n)
    site = np.array(["A"] * (n // 2) + ["B"] * (n - n // 2))
    out = evaluation.evaluate(
        {"balanced_accuracy": bootstrap.mean(challenger), "ece": bootstrap.mean(np.abs(rng.normal(0, 0.05, n)))},
        range(n),
        {"balanced_accuracy": bootstrap.mean(champion)},
        objective="balanced_accuracy",
        subgroups={"InstitutionName": {EVIL: site == "A", "B": site == "B"}},
        resamples=500,
    )
    out["calibration"] = evaluation.calibration(rng.dirichlet([1, 1], n), rng.integers(0, 2, n))
    return out, float(challenger.mean()), float(champion.mean())


def make_run(project, model, **fields):
    run = project.create_run(model)
    classes = [{"index": c.index, "name": c.name, "color": c.color, "description": ""} for c in model.classes]
    update_run_with_weights(
        project, run.id, b"w", status="succeeded", classes=classes, spec={"objective": "balanced_accuracy"}, **fields
    )
    return run.id


def test_run_details_show_intervals_subgroups_calibration_thresholds_and_the_card(demo):
    kind = demo.model("Lesion type")
    ev, ours, theirs = evaluated()
    first = make_run(demo, kind, metrics={"test": {"balanced_accuracy": theirs}})
    demo.deploy(first)
    thresholds = {
        "point": {"sensitivity": 0.9},
        "classes": {"atypical lesion": 0.31},
        "val": {"atypical lesion": {"sensitivity": 0.92, "specificity": 0.7}},
        "test": {"atypical lesion": {"sensitivity": 0.88, "specificity": 0.74}},
    }
    second = make_run(
        demo,
        kind,
        metrics={"test": {"balanced_accuracy": ours}},
        evaluation=ev,
        thresholds=thresholds,
        champion={"run_id": first, "metrics": {"test": {"balanced_accuracy": theirs}}},
    )
    demo.configure_training(kind, intended_use="Teaching only.")
    demo.deploy(second, reason="reviewed by the board")
    details = RunDetails(demo, second)
    shown = details.comparison.value
    m, d = ev["metrics"]["balanced_accuracy"], ev["difference"]["balanced_accuracy"]
    assert f"{m['value']:.4f}<br>" in shown and f"[{m['low']:.4f}, {m['high']:.4f}]" in shown
    assert f"{d['value']:+.4f}<br>" in shown and f"[{d['low']:+.4f}, {d['high']:+.4f}]" in shown
    assert "24 test subjects (24 examples)" in shown and "run-1" in shown and "paired bootstrap" in shown
    groups = details.subgroups.value
    assert escape(EVIL) in groups and EVIL not in groups and "InstitutionName" in groups
    assert ("worse beyond the interval" in groups) == any(g["flag"] for g in ev["subgroups"])
    (box,) = details.calibration.children
    figure = box.children[0]
    assert isinstance(figure, bq.Figure) and figure.title == "Reliability diagram (test)"
    observed = figure.marks[1]
    bins = [b for b in ev["calibration"]["bins"] if b["count"]]
    assert list(observed.x) == pytest.approx([b["confidence"] for b in bins])
    assert list(observed.y) == pytest.approx([b["accuracy"] for b in bins])
    assert "Expected calibration error" in box.children[1].value
    shown = details.thresholds.value
    assert "sensitivity 0.9" in shown and "0.310" in shown and "0.92" in shown and "0.74" in shown
    card = details.card_view.children[0].value
    assert details.card_view.layout.display is None
    assert "Teaching only." in card and "reviewed by the board" in card and "# Model card" in card


def test_a_run_with_too_few_subjects_or_none_says_so_and_crafted_evaluations_do_not_break_it(demo):
    kind = demo.model("Lesion type")
    few = evaluation.evaluate(
        {"balanced_accuracy": bootstrap.mean([0.5, 0.7, 0.9])}, ["a", "b", "c"], objective="balanced_accuracy"
    )
    run_id = make_run(demo, kind, metrics={"test": {"balanced_accuracy": 0.7}}, evaluation=few)
    details = RunDetails(demo, run_id)
    assert "too few for a meaningful interval" in details.comparison.value
    assert "0.7000" in details.comparison.value and "[" not in details.comparison.value.split("</div>", 2)[-1]
    assert details.card_view.layout.display == "none"  # not deployed: no card yet
    crafted = {
        "metrics": {"x": {"value": EVIL, "low": [], "high": None}, EVIL: "no"},
        "subgroups": [EVIL, {"field": EVIL, "group": 3, "metric": "?", "flag": "yes"}],
        "calibration": {"bins": [{"count": "many", "confidence": 0.5, "accuracy": 0.5}, 7]},
        "level": "high",
    }
    bad = make_run(
        demo,
        kind,
        metrics={"test": {"balanced_accuracy": 0.7}},
        evaluation=crafted,
        thresholds={"classes": {EVIL: "x"}, "val": [1]},
        model_card={"decision": 1},
    )
    details = RunDetails(demo, bad)
    everything = details.comparison.value + details.subgroups.value + details.thresholds.value
    assert EVIL not in everything and escape(EVIL) in everything
    assert not details.calibration.children  # no bin holds a count: no diagram
    assert "cannot be read" in details.card_view.children[0].value


def test_opening_run_details_loads_no_network_when_the_worker_stored_its_predictions(demo, monkeypatch):
    from patientml_widgets.project import Project

    kind = demo.model("Lesion type")
    example = demo.examples(kind, limit=1)[0]
    run_id = make_run(
        demo,
        kind,
        metrics={"test": {"balanced_accuracy": 0.7}},
        test_examples=[{"example_id": example.id, "score": 0.1}],
    )
    demo.session.store_predictions(
        [
            {
                "run_id": run_id,
                "example_id": example.id,
                "model_id": kind.id,
                "uncertainty": 0.2,
                "probabilities": [0.1, 0.8, 0.1],
            }
        ]
    )

    def no_network(self, run):
        raise AssertionError("RunDetails loaded the network")

    monkeypatch.setattr(Project, "predictor", no_network)
    details = RunDetails(demo, run_id)
    (card,) = details.worst.children[1].children
    assert "predicted atypical lesion (80%)" in card.children[1].value


def test_the_labeler_marks_the_class_the_deployed_run_calls_at_its_thresholds(demo):
    from patientml_widgets.widgets import LabelCanvas

    kind = demo.model("Lesion type")
    chosen = {"benign nevus": 0.9, "atypical lesion": 0.05, "seborrheic keratosis": 0.9}
    run_id = make_run(demo, kind, thresholds={"point": {"sensitivity": 0.95}, "classes": chosen})
    demo.deploy(run_id)
    example = demo.examples(kind, limit=1)[0]
    demo.session.store_predictions(
        [
            {
                "run_id": run_id,
                "example_id": example.id,
                "model_id": kind.id,
                "uncertainty": 0.4,
                "probabilities": [0.6, 0.3, 0.1],
            }
        ]
    )
    prediction = demo.predict(kind, example)
    assert prediction.thresholds == chosen and prediction.classes == ["atypical lesion"]  # 0.3 / 0.05 is the most
    canvas = LabelCanvas.for_example(demo, example)
    atypical = next(c.index for c in kind.classes if c.name == "atypical lesion")
    assert canvas.predicted == [atypical] and canvas.prediction_scores[str(atypical)] == 0.3
