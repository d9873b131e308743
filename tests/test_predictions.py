"""The orders and filters built on stored predictions are Project queries (no widget, no network
loaded when the predictions are stored), and the worker stores them for every example after deploy.
"""

import numpy as np
import pytest
from helpers import deployed_run, image

import patientml_widgets as pml
from patientml_widgets.predictions import Predictions


@pytest.fixture
def no_network_loading(monkeypatch):
    def refuse(self, run_id):
        raise AssertionError("the query loaded the run's network although its predictions are stored")

    monkeypatch.setattr(Predictions, "predictor", refuse)


def test_uncertainty_order_and_disagreements_come_from_stored_predictions(project, cls, no_network_loading):
    examples = project.add_examples(
        cls, [image(8, 8, seed=i) for i in range(30)], subjects=[f"p{i}" for i in range(30)]
    )
    run_id = deployed_run(project, cls)
    rng = np.random.default_rng(0)
    entries, truth = [], {}
    for i, ex in enumerate(examples):
        p = rng.dirichlet([1, 1, 1])
        entries.append({"run_id": run_id, "example_id": ex.id, "model_id": cls.id, "created": "t",
                        "uncertainty": float(1 - p.max()), "probabilities": [float(v) for v in p]})  # fmt: skip
        if i % 2 == 0:  # half labeled: with the predicted class, or another one
            label = int(p.argmax()) if i % 4 == 0 else int((p.argmax() + 1) % 3)
            project.submit_label(ex, classes=[label])
            truth[ex.id] = label != int(p.argmax())
    project.session.store_predictions(entries)

    order = [e.id for e in project.examples(cls, sort="uncertainty")]
    scores = {e["example_id"]: e["uncertainty"] for e in entries}
    assert sorted(order) == sorted(e.id for e in examples)
    assert scores[order[0]] == max(scores.values())
    assert [scores[i] for i in order[:9]] == sorted((scores[i] for i in order[:9]), reverse=True)
    tenth = sorted(scores, key=lambda i: -scores[i])
    assert order[9] in tenth[15:]  # every tenth place is drawn from the surer half
    assert [e.id for e in project.examples(cls, sort="uncertainty", limit=5, offset=2)] == order[2:7]
    unlabeled = [e.id for e in project.examples(cls, status="unlabeled", sort="uncertainty")]
    assert set(unlabeled) == {e.id for e in examples[1::2]}

    found = [e.id for e in project.disagreements(cls)]
    assert found == [e.id for e in project.examples(cls, status="labeled") if truth[e.id]]
    assert found and all(truth[i] for i in found)
    with pytest.raises(pml.ValidationError, match="sort"):
        project.disagreements(cls, sort="uncertainty")


def test_a_mask_prediction_disagrees_below_a_dice_of_0_8(project, seg, no_network_loading):
    a, b = project.add_examples(seg, [image(16, 16, seed=1), image(16, 16, seed=2)])
    run_id = deployed_run(project, seg)
    truth = np.zeros((16, 16), np.uint8)
    truth[4:12, 4:12] = 1
    near = truth.copy()
    near[4, 4:12] = 0  # Dice 0.93
    far = np.zeros_like(truth)
    far[4:8, 4:12] = 1  # Dice 0.67
    for ex, predicted in ((a, near), (b, far)):
        project.submit_label(ex, mask=truth)
        entry = {"run_id": run_id, "example_id": ex.id, "model_id": seg.id, "created": "t",
                 "uncertainty": 0.1, "probabilities": [0.5, 0.5, 0.0], "mask": predicted}  # fmt: skip
        project.session.store_predictions([entry])
    assert [e.id for e in project.disagreements(seg)] == [b.id]
    project.submit_label(b, mask=far)  # a new label version is compared again
    assert project.disagreements(seg) == []


def test_queries_need_a_deployed_run(project, cls):
    project.add_example(cls, image())
    with pytest.raises(pml.ValidationError, match="no deployed run"):
        project.examples(cls, sort="uncertainty")
    with pytest.raises(pml.ValidationError, match="no deployed run"):
        project.disagreements(cls)
    with pytest.raises(pml.ValidationError, match="sort must be one of"):
        project.examples(cls, sort="surprise")


@pytest.mark.slow
def test_the_worker_predicts_every_example_after_deploying(demo, monkeypatch):
    kind = demo.model("Lesion type")
    run = demo.train(kind, hyperparameters={"steps": 4, "image_size": 32, "base_channels": 4}).wait(timeout=120)
    assert run.status == "succeeded" and demo.model(kind).champion_run_id == run.id, run.traceback
    stored = demo.session.prediction_records(run.id)
    assert set(stored) == {e.id for e in demo.examples(kind)}
    assert "predicted" in demo.run_log(run)

    def refuse(self, run_id):
        raise AssertionError("the kernel loaded the network although the worker stored every prediction")

    monkeypatch.setattr(Predictions, "predictor", refuse)
    order = [e.id for e in demo.examples(kind, sort="uncertainty", limit=10)]
    assert stored[order[0]]["uncertainty"] == max(p["uncertainty"] for p in stored.values())
    names = {c.index: c.name for c in kind.classes}
    for ex in demo.disagreements(kind):
        assert demo.predict(kind, ex).classes != [names[i] for i in demo.label(ex).classes]


def test_a_query_predicts_what_is_missing_in_memory_and_writes_nothing(project, cls, monkeypatch):
    examples = project.add_examples(cls, [image(8, 8, seed=i) for i in range(5)])
    run_id = deployed_run(project, cls)
    calls = []

    def compute(self, model, run, example_id, img):
        calls.append(example_id)
        p = [0.2, 0.3, 0.5] if example_id == examples[3].id else [0.9, 0.05, 0.05]
        return {"run_id": run, "example_id": example_id, "model_id": model["id"], "created": "t",
                "uncertainty": 1 - max(p), "probabilities": p}  # fmt: skip

    monkeypatch.setattr(Predictions, "_compute", compute)
    commit = project.session.store.commit
    assert project.examples(cls, sort="uncertainty")[0].id == examples[3].id
    assert project.examples(cls, sort="uncertainty")[0].id == examples[3].id  # computed once, kept
    assert sorted(calls) == sorted(e.id for e in examples)
    assert project.session.store.commit == commit and project.session.prediction_records(run_id) == {}


def test_predicting_a_whole_model_commits_in_a_bounded_number_of_steps(project, seg, monkeypatch):
    from patientml_widgets import predictions

    examples = project.add_examples(seg, [image(8, 8, seed=i) for i in range(30)])
    run_id = deployed_run(project, seg)

    def compute(self, model, run, example_id, img):
        mask = np.full(img.shape[:2], 1 + examples.index(project.example(example_id)) % 2, np.uint8)
        return {"run_id": run, "example_id": example_id, "model_id": model["id"], "created": "t",
                "uncertainty": 0.5, "probabilities": [0.0, 0.5, 0.5], "mask": mask}  # fmt: skip

    monkeypatch.setattr(Predictions, "_compute", compute)
    monkeypatch.setattr(predictions, "BATCH", 4)
    monkeypatch.setattr(predictions, "MAX_COMMITS", 5)
    commit = project.session.store.commit
    assert Predictions(project.session).predict_all(seg, run_id) == 30
    assert project.session.store.commit - commit == 5  # 30 predictions, 6 per commit
    stored = project.session.prediction_records(run_id)
    for i, ex in enumerate(examples):
        assert (project.session.mask_blob(stored[ex.id]["mask_ref"]) == 1 + i % 2).all()
    assert Predictions(project.session).predict_all(seg, run_id) == 0  # nothing left to predict


def test_damaged_weights_are_a_clear_error_and_the_labeler_still_opens(tmp_path):
    pytest.importorskip("torch")
    from patientml_widgets.widgets import LabelCanvas

    proj = pml.Project.open(tmp_path / "study", user="tester")
    seg = proj.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    ex = proj.add_example(seg, image(), subject="p1")
    deployed_run(proj, proj.model(seg.id))  # its weights blob is b"w": not a state dict
    with pytest.raises(pml.StoreError, match="cannot be loaded for prediction"):
        proj.predict(seg, ex)
    canvas = LabelCanvas.for_example(proj, ex)
    assert canvas.prediction is None and canvas.status.startswith("No prediction")
