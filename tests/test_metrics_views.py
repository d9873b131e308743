"""MetricsChart and RunDetails: series from run records, selection, champion table, worst examples."""

import numpy as np
import pytest
from helpers import update_run_with_weights

from patientml_widgets.records import Run
from patientml_widgets.widgets import MetricsChart, RunDetails
from patientml_widgets.widgets.run_details import worst_examples
from patientml_widgets.widgets.series import (
    bootstrap_interval,
    challenger_table,
    integer_ticks,
    learning_curve,
    metric_names,
    metric_series,
    same_curves,
)


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


def interval(low, high, value=0.8):
    return {"metrics": {"dice_mean": {"value": value, "low": low, "high": high}}}


def test_test_points_carry_the_bootstrap_interval_and_crafted_ones_are_ignored():
    evaluated = run("run-5", test={"dice_mean": 0.8}, val={"dice_mean": 0.7}, evaluation=interval(0.75, 0.85))
    series = metric_series([evaluated], ["dice_mean"], ["val", "test"])
    assert [(p.low, p.high) for p in series["dice_mean", "test"]] == [(0.75, 0.85)]
    assert [(p.low, p.high) for p in series["dice_mean", "val"]] == [(None, None)]  # intervals are of test metrics
    crafted = [
        {},  # an older run: no evaluation
        interval(None, None),  # too few test subjects
        interval("0.7", 0.9),
        interval(0.7, float("nan")),
        interval(float("-inf"), 0.9),
        interval(True, 0.9),
        interval(0.9, 0.7),  # the wrong way round
        {"metrics": {"dice_mean": [0.7, 0.9]}},
        {"metrics": [{"dice_mean": {"low": 0.7, "high": 0.9}}]},
        "<b>not a dict</b>",
    ]
    for evaluation in crafted:
        assert bootstrap_interval(run("run-6", evaluation=evaluation), "dice_mean") == (None, None), evaluation
    assert bootstrap_interval(run("run-6", evaluation=interval(0, 1)), "dice_mean") == (0.0, 1.0)


def test_equal_curves_and_integer_ticks():
    a, b = [(1, 0.5), (2, 0.7)], [(1, 0.5 + 1e-13), (2, 0.7)]
    assert same_curves([a, [(1, 0.5)], b, [(1, 0.5), (2, 0.71)], a]) == [None, None, 0, None, 0]
    assert integer_ticks([2, 1, 2]) == [1, 2]
    assert integer_ticks([1, 4, 9]) == [1, 4, 9]  # the run numbers themselves
    assert integer_ticks(list(range(1, 101))) == list(range(10, 101, 10))  # thinned: round and evenly spaced
    assert integer_ticks(list(range(3, 16))) == [4, 6, 8, 10, 12, 14]
    assert integer_ticks(list(range(0, 1001, 50))) == list(range(0, 1001, 200))
    assert integer_ticks([]) == []


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


def _marks(figure, kind):
    return [m for m in figure.marks if type(m).__name__ == kind]


def test_the_chart_has_integer_ticks_a_fitted_y_range_and_error_bars(demo):
    seg = demo.model("Skin lesion segmentation")
    ids = _fake_runs(demo, seg, [0.6, 0.7])
    demo.session.update_run(ids[1], evaluation=interval(0.66, 0.81, value=0.7))
    chart = MetricsChart(demo, seg)
    chart.split_boxes["val"].value = False
    x_axis = chart.figure.axes[0]
    assert list(x_axis.tick_values) == [1, 2] and x_axis.tick_values.dtype.kind == "i" and x_axis.tick_format == "d"
    assert (chart.x_scale.min, chart.x_scale.max) == (0.5, 2.5)  # end points are not on the frame
    # a vertical bar per test point with an interval, in the series' colour
    bars, line = _marks(chart.figure, "Lines")
    assert bars.x.tolist() == [2, 2] and bars.y.tolist() == [0.66, 0.81] and bars.colors == line.colors
    dots = next(m for m in _marks(chart.figure, "Scatter") if m.default_size == 48)
    assert dots.names[0].startswith("run-1: 0.6000,")
    assert dots.names[1].startswith("run-2: 0.7000 (95% CI 0.66-0.81),")
    assert "Bars: 95% bootstrap intervals over test subjects" in chart.legend.value
    # the y range covers the points and the bars, with a little room
    assert 0.5 < chart.y_scale.min < 0.6 and 0.81 < chart.y_scale.max < 0.9
    chart.split_boxes["test"].value = False
    chart.split_boxes["val"].value = True
    assert _marks(chart.figure, "Lines")[0].y.tolist() == [0.6, 0.7] and len(_marks(chart.figure, "Lines")) == 1
    assert 0.58 < chart.y_scale.min < 0.6 and 0.7 < chart.y_scale.max < 0.72  # no bars on val
    assert "Bars:" not in chart.legend.value
    # nothing plotted: the range and ticks are reset, not left from the last metric
    chart.metric_boxes["dice_mean"].value = False
    assert chart.figure.marks == [] and chart.y_scale.min is None and chart.y_scale.max is None
    assert chart.x_scale.min is None and chart.figure.axes[0].tick_values is None


def test_a_flat_series_gets_a_small_range_around_it(demo):
    seg = demo.model("Skin lesion segmentation")
    _fake_runs(demo, seg, [0.5, 0.5])
    chart = MetricsChart(demo, seg)
    assert chart.y_scale.min == pytest.approx(0.475) and chart.y_scale.max == pytest.approx(0.525)


def test_the_legends_are_html_with_a_hint_for_equal_curves(demo):
    seg = demo.model("Skin lesion segmentation")
    ids = _fake_runs(demo, seg, [0.6, 0.6, 0.8])
    crafted = {"<b>x</b>": 0.5}
    demo.session.update_run(ids[0], metrics={**demo.run(ids[0]).metrics, "test": {"dice_mean": 0.6, **crafted}})
    chart = MetricsChart(demo, seg)
    # no legend inside the figures: it would sit on the lines
    assert not any(m.display_legend for m in chart.figure.marks + chart.curves.marks)
    legend = chart.legend.value
    assert "dice_mean (test)" in legend and "dice_mean (val) (same curve as dice_mean (test))" in legend
    assert "stroke-dasharray='7,4'" in legend and "Bars:" not in legend  # val is dashed; no intervals
    # the curve drawn over an equal one shows hollow squares around its points
    dots = [m for m in _marks(chart.figure, "Scatter") if m.marker != "diamond"]
    assert [(m.marker, m.fill) for m in dots] == [("circle", True), ("square", False)]
    # learning curves: run-2's is run-1's
    curves = chart.curve_legend.value
    assert "run-1</span>" in curves and "run-2 (same curve as run-1)" in curves and "run-3</span>" in curves
    rings = [m for m in _marks(chart.curves, "Scatter") if m.marker == "square"]
    assert len(rings) == 1 and rings[0].fill is False and rings[0].colors == _marks(chart.curves, "Lines")[1].colors
    assert [m.line_style for m in _marks(chart.curves, "Lines")] == ["solid", "dashed", "solid"]
    assert list(chart.curve_x_axis.tick_values) == [1] and (chart.curve_x.min, chart.curve_x.max) == (0.5, 1.5)
    assert 0.55 < chart.curve_y.min < 0.6 and 0.8 < chart.curve_y.max < 0.85
    # a metric's name from a run record is text in the legend
    chart.metric_boxes["<b>x</b>"].value = True
    assert "&lt;b&gt;x&lt;/b&gt; (test)" in chart.legend.value and "<b>x" not in chart.legend.value
    chart.curve_runs.value = ()
    assert chart.curves.marks == [] and chart.curve_y.min is None and chart.curve_x_axis.tick_values is None
