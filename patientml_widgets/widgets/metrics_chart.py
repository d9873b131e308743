"""MetricsChart: the Metrics tab - metrics across runs, and per-epoch learning curves (bqplot)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bqplot as bq
import ipywidgets as w

from ..project import Project
from ..records import Model, Run
from .base import Notice, View
from .markup import HTML, description, escape, html
from .poller import Poller
from .series import SPLITS, learning_curve, metric_names, metric_series

__all__ = ["MetricsChart"]

COLORS = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#e52592", "#5f6368"]
DASH = {"train": "dotted", "val": "dashed", "test": "solid"}


class MetricsChart(View, w.VBox):
    """Check metrics and splits on the left; hover a point for the run; click it for its details."""

    def __init__(self, project: Project, model: Model | str, *, on_run_click: Callable[[str], Any] | None = None):
        self.project = project
        self._model_key = project.model(model).id
        self._on_run_click = on_run_click or self.show_run
        runs = project.runs(self._model_key)
        objective = _objective(project, self._model_key)
        self.metric_boxes: dict[str, w.Checkbox] = {}
        self.split_boxes = {s: w.Checkbox(value=s in ("val", "test"), indent=False, **description(s)) for s in SPLITS}
        for box in self.split_boxes.values():
            box.observe(lambda _: self.redraw(), names="value")
        self.metric_panel = w.VBox(layout=w.Layout(width="190px"))
        self._sync_metric_boxes(metric_names(runs), default={objective})
        self.x_axis = w.ToggleButtons(options=[("Run number", "number"), ("Start time", "time")], value="number")
        self.x_axis.style.button_width = "90px"
        self.x_axis.observe(lambda _: self.redraw(), names="value")
        self.x_scale, self.y_scale = bq.LinearScale(), bq.LinearScale()
        self.time_scale = bq.DateScale()
        self.figure = bq.Figure(
            marks=[], title="Metrics across runs", legend_location="top-left",
            fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 20},
            layout=w.Layout(width="100%", height="380px"),
        )  # fmt: skip
        # learning curves
        self.curve_runs = w.SelectMultiple(description="Runs", rows=5)
        self.curve_metric = w.Dropdown(description="Metric")
        self.curve_runs.observe(lambda _: self.redraw_curves(), names="value")
        self.curve_metric.observe(lambda _: self.redraw_curves(), names="value")
        self.curve_x, self.curve_y = bq.LinearScale(), bq.LinearScale()
        self.curves = bq.Figure(
            marks=[], title="Learning curves (best checkpoint marked)", legend_location="top-left",
            axes=[bq.Axis(scale=self.curve_x, label="step"), bq.Axis(scale=self.curve_y, side="left")],
            layout=w.Layout(width="100%", height="320px"),
        )  # fmt: skip
        self.details = w.VBox()
        self.empty = HTML()
        left = w.VBox(
            [HTML(html("<b>Metrics</b>")), self.metric_panel, HTML(html("<b>Splits</b>")), *self.split_boxes.values()]
        )
        chart = w.VBox([self.x_axis, self.figure, self.empty], layout=w.Layout(flex="1"))
        curves = w.VBox([w.HBox([self.curve_runs, self.curve_metric]), self.curves])
        self.view = w.Tab(children=[w.HBox([left, chart]), curves])
        self.view.set_title(0, "Across runs")
        self.view.set_title(1, "Learning curves")
        self.follow(
            project,
            lambda _: self.refresh(),
            model_id=self._model_key,
            kinds={"run_created", "run_updated", "model_updated"},
            tables=("runs", "models"),
        )
        self.notice = Notice()
        self.refresh()
        super().__init__([self.view, self.notice, self.details, Poller(project)])

    # -- data ------------------------------------------------------------------------------

    def _runs(self) -> list[Run]:
        return self.project.runs(self._model_key)

    def selected_metrics(self) -> list[str]:
        return [name for name, box in self.metric_boxes.items() if box.value]

    def selected_splits(self) -> list[str]:
        return [s for s, box in self.split_boxes.items() if box.value]

    def _sync_metric_boxes(self, names: list[str], default: frozenset[str] | set[str] = frozenset()) -> None:
        for name in names:
            if name not in self.metric_boxes:
                # a metric's name is text from a run record: MathJax must not typeset it
                box = w.Checkbox(value=name in default, indent=False, **description(name.replace("_", " ")))
                box.observe(lambda _: self.redraw(), names="value")
                self.metric_boxes[name] = box
        self.metric_panel.children = list(self.metric_boxes.values())

    def refresh(self) -> None:
        """Re-read the runs (a running run's curve grows) and redraw both views."""
        runs = self._runs()
        # a metric seen for the first time starts checked if it is the objective
        self._sync_metric_boxes(metric_names(runs), default={_objective(self.project, self._model_key)})
        options = [(f"{r.slug} ({r.status})", r.id) for r in runs if r.history]
        chosen = [v for v in self.curve_runs.value if v in dict((v, k) for k, v in options)]
        self.curve_runs.options = options
        self.curve_runs.value = tuple(chosen) or tuple(v for _, v in options[-3:])
        names = sorted({k for r in runs for rec in r.history for part in ("train", "val") for k in rec.get(part, {})})
        metric = self.curve_metric.value
        self.curve_metric.options = [f"val {n}" for n in names if n != "n"] + ["train loss"]
        objective = _objective(self.project, self._model_key)
        fallback = f"val {objective}" if f"val {objective}" in self.curve_metric.options else None
        self.curve_metric.value = metric if metric in self.curve_metric.options else fallback
        self.redraw()
        self.redraw_curves()

    # -- drawing -----------------------------------------------------------------------------

    def redraw(self) -> None:
        runs = self._runs()
        by_time = self.x_axis.value == "time"
        x_scale = self.time_scale if by_time else self.x_scale
        series = metric_series(runs, self.selected_metrics(), self.selected_splits())
        champion = self.project.model(self._model_key).champion_run_id
        marks: list[bq.Mark] = []
        for i, ((metric, split), points) in enumerate(sorted(series.items())):
            if not points:
                continue
            color = (
                COLORS[sorted(self.metric_boxes).index(metric) % len(COLORS)]
                if metric in self.metric_boxes
                else COLORS[i % len(COLORS)]
            )
            xs = [_when(p.started) for p in points] if by_time else [p.number for p in points]
            ys = [p.value for p in points]
            label = f"{metric} ({split})"
            marks.append(bq.Lines(x=xs, y=ys, scales={"x": x_scale, "y": self.y_scale}, colors=[color],
                                  line_style=DASH[split], labels=[label], display_legend=True))  # fmt: skip
            dots = bq.Scatter(
                x=xs, y=ys, scales={"x": x_scale, "y": self.y_scale}, colors=[color], default_size=48,
                names=[f"{p.slug}: {p.value:.4f} ({p.started[:16].replace('T', ' ')})" for p in points],
                display_names=False, tooltip=bq.Tooltip(fields=["name"]),
            )  # fmt: skip
            dots.on_element_click(
                lambda _mark, event, points=points: self._on_run_click(points[event["data"]["index"]].run_id)
            )
            marks.append(dots)
            deployed = [k for k, p in enumerate(points) if p.run_id == champion]
            if deployed:
                star = bq.Scatter(
                    x=[xs[k] for k in deployed], y=[ys[k] for k in deployed], marker="diamond", colors=["#f9ab00"],
                    default_size=220, scales={"x": x_scale, "y": self.y_scale}, names=["deployed"],
                    display_names=False, tooltip=bq.Tooltip(fields=["name"]),
                )  # fmt: skip
                marks.append(star)
        self.figure.marks = marks
        self.figure.axes = [
            bq.Axis(
                scale=x_scale, label="run start time" if by_time else "run number", tick_format=None if by_time else "d"
            ),
            bq.Axis(scale=self.y_scale, side="left", label="value"),
        ]
        finished = sum(r.status == "succeeded" for r in runs)
        hint = "" if marks else "Check a metric and a split." if finished else "No succeeded runs yet."
        self.empty.value = html("<span style='color:#5f6368'>{}</span>", hint) if hint else escape("")

    def redraw_curves(self) -> None:
        if not self.curve_metric.value:
            self.curves.marks = []
            return
        split, metric = self.curve_metric.value.split(" ", 1)
        direction = (self.project.model(self._model_key).training or {}).get("direction", "max")
        marks = []
        for i, run_id in enumerate(self.curve_runs.value):
            curve = learning_curve(self.project.run(run_id), metric, split, direction=direction)
            if not curve.values:
                continue
            color = COLORS[i % len(COLORS)]
            scales = {"x": self.curve_x, "y": self.curve_y}
            marks.append(bq.Lines(x=curve.epochs, y=curve.values, scales=scales, colors=[color], labels=[curve.slug],
                                  display_legend=True, marker="circle", marker_size=24))  # fmt: skip
            marks.append(bq.Scatter(x=[curve.best_epoch], y=[curve.best_value], scales=scales, colors=[color],
                                    marker="triangle-up", default_size=160, names=[f"best: {curve.best_value:.4f}"],
                                    display_names=False, tooltip=bq.Tooltip(fields=["name"])))  # fmt: skip
        self.curves.marks = marks

    def show_run(self, run_id: str) -> None:
        """Show a run's details under the chart."""
        from .run_details import RunDetails

        for old in self.details.children:
            old.close()
        self.details.children = [RunDetails(self.project, run_id)]


def _objective(project: Project, model_id: str) -> str:
    from ..training.metrics import OBJECTIVES

    model = project.model(model_id)
    return (model.training or {}).get("objective") or OBJECTIVES[model.problem_type]


def _when(stamp: str):
    import numpy as np

    return np.datetime64(stamp[:23])
