"""Review of the redesign: where the new code behaved differently from the one it replaced (33a1134),
or where its new paths went wrong. Each test is fast: fake weights, no training.
"""

import pytest
from helpers import deployed_run, image

import patientml_widgets as pml
from patientml_widgets.errors import NotFoundError, ValidationError
from patientml_widgets.predictions import Predictions
from patientml_widgets.runs import RunHandle
from patientml_widgets.store.check import check
from patientml_widgets.widgets import ExampleBrowser


def prediction(run_id, model, example_id, predicted, n=3):
    p = [0.1] * n
    p[predicted] = 1 - 0.1 * (n - 1)
    return {"run_id": run_id, "example_id": example_id, "model_id": model.id, "created": "t",
            "uncertainty": 1 - max(p), "probabilities": p}  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, run_id):
        raise AssertionError("loaded the run's network although its predictions are stored")

    monkeypatch.setattr(Predictions, "predictor", refuse)


# -- argument checks in the order they were made --------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": "no such model", "direction": "up"}, NotFoundError, "no model"),
        ({"model": "no such model", "search_space": {"lr": "x"}}, NotFoundError, "no model"),
        ({"objective": "accuracy", "direction": "up"}, ValidationError, "not a segmentation metric"),
        ({"objective": "accuracy", "max_trials": 0}, ValidationError, "not a segmentation metric"),
        ({"search_space": {"lr": "x"}, "direction": "up"}, ValidationError, "search space"),
        ({"budget": "forever", "direction": "up"}, ValidationError, "budget"),
        ({"model_code": "nope", "objective": "accuracy"}, ValidationError, "not a segmentation metric"),
        ({"model_code": "nope", "hyperparameters": {"steps": -1}}, NotFoundError, "no registered model code"),
    ],
)
def test_configure_training_reports_the_first_problem_it_always_did(project, seg, kwargs, error, match):
    kwargs = {"model": seg, **kwargs}
    before = project.model(seg).training
    with pytest.raises(error, match=match):
        project.configure_training(kwargs.pop("model"), **kwargs)
    assert project.model(seg).training == before


def test_register_model_code_checks_the_name_before_the_code(project):
    with pytest.raises(ValidationError, match="model code name must be a non-empty string"):
        project.register_model_code("", 5)


# -- views ------------------------------------------------------------------------------------


def test_the_disagrees_filter_keeps_the_tables_descending_order(project, cls, no_network):
    examples = project.add_examples(cls, [image(8, 8, seed=i) for i in range(6)])
    run_id = deployed_run(project, cls)
    project.session.store_predictions([prediction(run_id, cls, ex.id, 0) for ex in examples])
    for ex in examples:
        project.submit_label(ex, classes=[1])  # every one disagrees
    browser = ExampleBrowser(project, cls)
    browser.table.active_filter = "disagrees"
    browser.table.sort = {"key": "id", "descending": True}
    expected = sorted((ex.id for ex in examples), reverse=True)
    assert [r["_id"] for r in browser.table.rows] == expected
    browser.open_example(expected[0])  # Previous / Next walk the same order
    assert browser._order == expected


def test_examples_added_with_a_new_subject_say_they_wrote_subjects(project, seg):
    seen = []
    project.observe(seen.append)
    project.add_example(seg, image(), subject="patient-9")
    assert project.subject("patient-9").id == "patient-9"
    assert seen[-1].kind == "examples_added" and seen[-1].touches("subjects")


# -- predictions ------------------------------------------------------------------------------


def test_disagreements_are_not_remembered_from_a_batch_that_was_undone(project, cls, no_network):
    (ex,) = project.add_examples(cls, [image(8, 8)])
    run_id = deployed_run(project, cls)
    project.session.store_predictions([prediction(run_id, cls, ex.id, 0)])
    with pytest.raises(RuntimeError), project.batch():
        project.submit_label(ex, classes=[0])  # agrees with the prediction (version 1, never committed)
        assert project.disagreements(cls) == []
        raise RuntimeError("undo the batch")
    label = project.submit_label(ex, classes=[2])  # version 1 again, now disagreeing
    assert label.version == 1
    assert [e.id for e in project.disagreements(cls)] == [ex.id]


def test_predicting_every_example_skips_examples_deleted_meanwhile(project, cls, monkeypatch):
    examples = project.add_examples(cls, [image(8, 8, seed=i) for i in range(5)])
    run_id = deployed_run(project, cls)
    other = pml.Project.open(project.path, user="labeler")  # another kernel, while the worker predicts
    computed = []

    def compute(self, model, run, example_id, img):
        computed.append(example_id)
        if len(computed) == 2:  # one already computed, one still to come
            other.delete_example(examples[0])
            other.delete_example(examples[3])
        return prediction(run, cls, example_id, 0)

    monkeypatch.setattr(Predictions, "_compute", compute)
    Predictions(project.session).predict_all(cls, run_id)
    stored = project.session.prediction_records(run_id)
    assert sorted(stored) == sorted(ex.id for ex in examples if ex not in (examples[0], examples[3]))
    assert not check(project.path).problems


def test_predictions_of_a_model_deleted_meanwhile_are_not_stored(project, cls):
    (ex,) = project.add_examples(cls, [image(8, 8)])
    run_id = deployed_run(project, cls)
    entry = prediction(run_id, cls, ex.id, 0)
    pml.Project.open(project.path).delete_model(cls)  # another kernel, while the worker predicted
    project.session.store_predictions([entry])
    assert not project.session.store.mapping("predictions")
    assert not check(project.path).problems


# -- runs ---------------------------------------------------------------------------------------


def test_a_run_handle_still_has_its_project(project, seg):
    run = project.create_run(seg)
    handle = RunHandle(project, run.id)
    assert handle.project is project and handle.status == "queued"
