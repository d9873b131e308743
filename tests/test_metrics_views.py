"""MetricsChart and RunDetails: series from run records, selection, champion table, worst examples."""

import numpy as np
import pytest
from helpers import update_run_with_weights

from patientml_widgets.records import Run
from patientml_widgets.widgets import MetricsChart, RunDetails
from patientml_widgets.widgets.run_details import worst_examples
from patientml_widgets.widgets.series import challenger_table, learning_curve, metric_names, metric_series


def run(slug, status="succeeded", test=None, val=None, history=(), best=None, champion=None, **extra):
    metrics = {}
    if test is not None:
        metrics["test"] = test
    if val is not None:
        metrics["val"] = val
    if best is not None:
        metrics["best_epoch"] = best
    return Run(id=f"run_{slug}", model_id="m", slug=slug, status=status, trigger="manual", metrics=metrics,
               history=tuple(history), champion=champion or {}, created=f"2026-11-28T10:0{slug[-1]}:00+00:00",
               started=f"2026-11-28T10:0{slug[-1]}:00+00:00", spec={"objective": "dice_mean"}, **extra)  # fmt: skip


def epochs(values, split="val", metric="dice_mean"):
    return [{"epoch": i + 1, "train": {"loss": 1.0 - 0.1 * i}, split: {metric: v}} for i, v in enumerate(values)]


RUNS = [
    run(
        "run-1",
        test={"dice_mean": 0.70, "loss": 0.5, "n": 30},
        val={"dice_mean": 0.72},
        history=epochs([0.6, 0.72]),
        best=2,
    ),
    run("run-2", status="failed"),
    run("run-3", status="running", history=epochs([0.5, 0.65, 0.61])),
    run("run-4", test={"dice_mean": 0.80, "loss": 0.4}, val={"dice_mean": 0.81}, history=epochs([0.7, 0.81]), best=2),
]


def test_series_skip_failed_and_unfinished_runs():
    series = metric_series(RUNS, ["dice_mean", "loss"], ["train", "val", "test"])
    assert [(p.slug, p.number, p.value) for p in series["dice_mean", "test"]] == [
        ("run-1", 1, 0.70),
        ("run-4", 4, 0.80),
    ]
    assert [p.value for p in series["dice_mean", "val"]] == [0.72, 0.81]
    assert [p.value for p in series["loss", "train"]] == [pytest.approx(0.9), pytest.approx(0.9)]  # best epoch's loss
    assert series["loss", "val"] == []
    assert metric_names(RUNS) == ["dice_mean", "loss"]


def test_learning_curves_include_a_running_run_and_mark_the_best():
    curve = learning_curve(RUNS[2], "dice_mean")
    assert curve.epochs == [1, 2, 3] and curve.best_epoch == 2 and curve.best_value == 0.65
    loss = learning_curve(RUNS[2], "loss", "train")
    assert loss.best_epoch == 3  # lower is better for a loss
    searched = run("run-5", history=[{**e, "trial": t} for t in (1, 2) for e in epochs([0.1 * t, 0.2 * t])])
    assert learning_curve(searched, "dice_mean").values == [0.2, 0.4]  # the last trial


def test_challenger_vs_champion_table_and_worst_examples():
    challenger = run(
        "run-6",
        test={"dice_mean": 0.85, "iou_mean": 0.75, "loss": 0.3},
        champion={"run_id": "run_run-4", "metrics": {"test": {"dice_mean": 0.80, "loss": 0.4, "n": 30}}},
        test_examples=(
            {"example_id": "b", "score": 0.2},
            {"example_id": "a", "score": 0.2},
            {"example_id": "c", "score": 0.9},
        ),
    )
    rows = challenger_table(challenger)
    assert rows[0][0] == "dice_mean"  # the objective first
    assert rows[0][1:3] == (0.85, 0.80) and rows[0][3] == pytest.approx(0.05)
    assert dict((r[0], r[1:]) for r in rows)["iou_mean"] == (0.75, None, None)
    assert [e["example_id"] for e in worst_examples(challenger)] == ["a", "b", "c"]


def _fake_runs(project, model, values):
    ids = []
    for value in values:
        r = project.create_run(model)
        metrics = {"test": {"dice_mean": value, "loss": 1 - value}, "val": {"dice_mean": value}, "best_epoch": 1}
        history = [{"epoch": 1, "train": {"loss": 1 - value}, "val": {"dice_mean": value}}]
        update_run_with_weights(
            project,
            r.id,
            b"w",
            status="succeeded",
            started=r.created,
            ended=r.created,
            spec={"objective": "dice_mean"},
            metrics=metrics,
            history=history,
        )
        ids.append(r.id)
    return ids


def test_a_chart_opened_before_any_run_shows_the_objective_once_runs_exist(demo):
    seg = demo.model("Skin lesion segmentation")
    chart = MetricsChart(demo, seg)
    assert chart.figure.marks == [] and "No succeeded runs" in chart.empty.value
    _fake_runs(demo, seg, [0.5])
    assert chart.selected_metrics() == ["dice_mean"] and len(chart.figure.marks) > 0


def test_metrics_chart_selection_and_click(demo):
    seg = demo.model("Skin lesion segmentation")
    ids = _fake_runs(demo, seg, [0.6, 0.7, 0.9])
    demo.deploy(ids[2])
    chart = MetricsChart(demo, seg)
    assert chart.selected_metrics() == ["dice_mean"] and chart.selected_splits() == ["val", "test"]

    def kinds():
        return sorted(type(m).__name__ for m in chart.figure.marks)

    # a line and clickable points per series, and the deployed run marked on each
    assert kinds() == ["Lines", "Lines", "Scatter", "Scatter", "Scatter", "Scatter"]
    lines = [m for m in chart.figure.marks if type(m).__name__ == "Lines"]
    assert [list(m.y) for m in lines] == [[0.6, 0.7, 0.9], [0.6, 0.7, 0.9]]
    chart.split_boxes["test"].value = False
    assert kinds() == ["Lines", "Scatter", "Scatter"]
    chart.metric_boxes["loss"].value = True
    chart.split_boxes["test"].value = True
    assert kinds().count("Lines") == 3  # loss has no val value: test only
    opened = []
    chart._on_run_click = opened.append
    points = next(m for m in chart.figure.marks if type(m).__name__ == "Scatter" and m.default_size == 48)
    points._handle_custom_msgs(None, {"event": "element_click", "data": {"index": 1}})
    assert opened == [ids[1]]
    # a new run appears without asking
    _fake_runs(demo, seg, [0.95])
    assert len(next(m for m in chart.figure.marks if type(m).__name__ == "Lines").x) == 4
    assert len(chart.curves.marks) == 2 * 3  # the last three runs' curves, each with its best epoch


def test_run_details_decisions_and_per_class_tables(demo):
    kind = demo.model("Lesion type")
    (run_id,) = _fake_runs(demo, kind, [0.5])
    test = {"balanced_accuracy": 0.5, "precision": [1.0, 0.5, 0.0], "recall": [0.5, 1.0, 0.0]}
    test["confusion_matrix"] = [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    demo.session.update_run(run_id, metrics={"test": test})
    details = RunDetails(demo, run_id)
    assert "Confusion matrix" in details.per_class.value and "seborrheic keratosis" in details.per_class.value
    assert "run-1" in details.summary.value
    details.reject_button.click()
    assert "needs a reason" in details.notice.value
    details.reason.value = "overfits site B"
    details.reject_button.click()
    assert demo.run(run_id).approvals[-1]["decision"] == "reject" and "overfits site B" in details.approvals.value
    details.deploy_button.click()
    assert demo.model(kind).champion_run_id == run_id and details.deploy_button.disabled
    assert "Deployed" in details.summary.value


@pytest.mark.slow
def test_run_details_show_the_worst_examples_with_the_prediction(demo):
    seg = demo.model("Skin lesion segmentation")
    trained = demo.train(seg, hyperparameters={"steps": 3, "image_size": 32, "base_channels": 4}).wait(timeout=120)
    details = RunDetails(demo, trained.id)
    # where and how it trained, and the plan derived from the data, are shown
    summary = details.summary.value
    assert "trained on: cpu" in summary and f", {trained.hardware['precision']}, " in summary
    assert f"{trained.hardware['threads']} threads" in summary and "plan: 32x32" in summary
    assert "training images, median 128x128" in summary and "3 steps in" in summary
    assert "up to 3 steps (no time budget)" in summary  # a fixed length: only a budget one sets cuts it
    cards = details.worst.children[1].children
    assert len(cards) == min(8, len(trained.snapshot["test"]))
    image, caption, button = cards[0].children
    assert image.value[:2] == b"\xff\xd8" and "Dice" in caption.value
    worst = worst_examples(demo.run(trained.id))[0]["example_id"]
    button.click()  # from an error to its fix
    canvas = details.children[1]
    assert type(canvas).__name__ == "LabelCanvas" and canvas._example_id == worst
    details.children[0].click()
    assert details.worst in details.children
    assert np.isfinite(trained.metrics["test"]["dice_mean"])
