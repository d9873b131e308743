"""MetricsChart: the Metrics tab - metrics across runs, and per-epoch learning curves (bqplot)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..project import Project
from ..records import Model, Run
from .base import Notice, View
from .markup import HTML, Markup, description, escape, html
from .poller import Poller
from .series import SPLITS, Point, integer_ticks, learning_curve, metric_names, metric_series, same_curves

__all__ = ["MetricsChart"]

COLORS = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#e52592", "#5f6368"]
DASH = {"train": "dotted", "val": "dashed", "test": "solid"}
#: bqplot's line styles as SVG dash patterns, shortened to fit the legend's keys
DASH_ARRAY = {"solid": "none", "dashed": "7,4", "dotted": "2,4"}
DOT = {"default_size": 48}
#: the points of a curve drawn over an equal one: hollow squares, so both show
RING = {"marker": "square", "fill": False, "default_size": 160}
BARS_CAPTION = "Bars: 95% bootstrap intervals over test subjects"


class MetricsChart(View, w.VBox):
    """Check metrics and splits on the left; hover a point for the run; click it for its details."""

    def __init__(self, project: Project, model: Model | str, *, on_run_click: Callable[[str], Any] | None = None):
        self.project = project
        self._model_key = project.model(model).id
        self._on_run_click = on_run_click or self.show_run
        runs = project.runs(self._model_key)
        objective = _objective(project, self._model_key)
        self.metric_boxes: dict[str, w.Checkbox] = {}
        self.split_boxes = {s: _checkbox(s, value=s in ("val", "test")) for s in SPLITS}
        for box in self.split_boxes.values():
            box.observe(lambda _: self.redraw(), names="value")
        self.metric_panel = w.VBox()
        self._sync_metric_boxes(metric_names(runs), default={objective})
        self.x_axis = w.ToggleButtons(options=[("Run number", "number"), ("Start time", "time")], value="number")
        self.x_axis.style.button_width = "auto"  # as wide as its label
        self.x_axis.observe(lambda _: self.redraw(), names="value")
        self.x_scale, self.y_scale = bq.LinearScale(), bq.LinearScale()
        self.time_scale = bq.DateScale()
        self.figure = bq.Figure(
            marks=[], title="Metrics across runs",
            fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 20},
            layout=w.Layout(width="100%", height="380px"),
        )  # fmt: skip
        # learning curves
        self.curve_runs = w.SelectMultiple(description="Runs", rows=5)
        self.curve_metric = w.Dropdown(description="Metric")
        self.curve_runs.observe(lambda _: self.redraw_curves(), names="value")
        self.curve_metric.observe(lambda _: self.redraw_curves(), names="value")
        self.curve_x, self.curve_y = bq.LinearScale(), bq.LinearScale()
        self.curve_x_axis = bq.Axis(scale=self.curve_x, label="step", tick_format="d")
        self.curves = bq.Figure(
            marks=[], title="Learning curves (best checkpoint marked)",
            axes=[self.curve_x_axis, bq.Axis(scale=self.curve_y, side="left")],
            layout=w.Layout(width="100%", height="320px"),
        )  # fmt: skip
        # the legends are HTML under the figures, never over the lines
        self.legend, self.curve_legend = HTML(), HTML()
        for legend in (self.legend, self.curve_legend):
            legend.add_class("pml-legend")
        self.details = w.VBox()
        self.empty = HTML()
        left = w.VBox(
            [HTML(html("<b>Metrics</b>")), self.metric_panel, HTML(html("<b>Splits</b>")), *self.split_boxes.values()],
            layout=w.Layout(width="190px", flex="none"),
        )
        chart = w.VBox([self.x_axis, self.figure, self.legend, self.empty], layout=w.Layout(flex="1"))
        curves = w.VBox([w.HBox([self.curve_runs, self.curve_metric]), self.curves, self.curve_legend])
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
                box = _checkbox(name.replace("_", " "), value=name in default)
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
        scales = {"x": x_scale, "y": self.y_scale}
        chosen = metric_series(runs, self.selected_metrics(), self.selected_splits())
        series = [(metric, split, points) for (metric, split), points in sorted(chosen.items()) if points]
        labels = [f"{metric} ({split})" for metric, split, _ in series]
        twins = same_curves([[(p.number, p.value) for p in points] for _, _, points in series])
        champion = self.project.model(self._model_key).champion_run_id
        marks: list[bq.Mark] = []
        keys = []
        for (metric, split, points), label, twin in zip(series, labels, twins):
            color = COLORS[sorted(self.metric_boxes).index(metric) % len(COLORS)]
            xs = [_when(p.started) for p in points] if by_time else [p.number for p in points]
            ys = [p.value for p in points]
            bars = [(x, p) for x, p in zip(xs, points) if p.low is not None and p.high is not None]
            if bars:  # one vertical segment per interval
                marks.append(bq.Lines(x=[[x, x] for x, _ in bars], y=[[p.low, p.high] for _, p in bars],
                                      scales=scales, colors=[color] * len(bars), stroke_width=1.5))  # fmt: skip
            marks.append(bq.Lines(x=xs, y=ys, scales=scales, colors=[color], line_style=DASH[split]))
            dots = bq.Scatter(
                x=xs, y=ys, scales=scales, colors=[color], names=[_tooltip(p) for p in points],
                display_names=False, tooltip=bq.Tooltip(fields=["name"]), **(DOT if twin is None else RING),
            )  # fmt: skip
            dots.on_element_click(
                lambda _mark, event, points=points: self._on_run_click(points[event["data"]["index"]].run_id)
            )
            marks.append(dots)
            deployed = [k for k, p in enumerate(points) if p.run_id == champion]
            if deployed:
                star = bq.Scatter(
                    x=[xs[k] for k in deployed], y=[ys[k] for k in deployed], marker="diamond", colors=["#f9ab00"],
                    default_size=220, scales=scales, names=["deployed"],
                    display_names=False, tooltip=bq.Tooltip(fields=["name"]),
                )  # fmt: skip
                marks.append(star)
            hint = "" if twin is None else f" (same curve as {labels[twin]})"
            keys.append(_key(color, DASH[split], label + hint, ring=twin is not None))
        self.figure.marks = marks
        points = [p for _, _, ps in series for p in ps]
        if by_time:
            _fit_times(self.time_scale, [_when(p.started) for p in points])
            x_axis = bq.Axis(scale=self.time_scale, label="run start time")
        else:
            ticks = _fit_integers(self.x_scale, [p.number for p in points])
            x_axis = bq.Axis(scale=self.x_scale, label="run number", tick_format="d", tick_values=ticks)
        self.figure.axes = [x_axis, bq.Axis(scale=self.y_scale, side="left", label="value")]
        _fit(self.y_scale, [v for p in points for v in (p.value, p.low, p.high) if v is not None])
        with_bars = any(p.low is not None for p in points)
        self.legend.value = _legend(keys, BARS_CAPTION if with_bars else "")
        finished = sum(r.status == "succeeded" for r in runs)
        hint = "" if marks else "Check a metric and a split." if finished else "No succeeded runs yet."
        self.empty.value = html("<span style='color:#5f6368'>{}</span>", hint) if hint else escape("")

    def redraw_curves(self) -> None:
        curves = []
        if self.curve_metric.value:
            split, metric = self.curve_metric.value.split(" ", 1)
            direction = (self.project.model(self._model_key).training or {}).get("direction", "max")
            for i, run_id in enumerate(self.curve_runs.value):
                curve = learning_curve(self.project.run(run_id), metric, split, direction=direction)
                if curve.values:
                    curves.append((COLORS[i % len(COLORS)], curve))
        twins = same_curves([list(zip(curve.epochs, curve.values)) for _, curve in curves])
        scales = {"x": self.curve_x, "y": self.curve_y}
        marks: list[bq.Mark] = []
        keys = []
        for (color, curve), twin in zip(curves, twins):
            dash = "solid" if twin is None else "dashed"  # a curve over an equal one: the one under shows through
            marks.append(bq.Lines(x=curve.epochs, y=curve.values, scales=scales, colors=[color], line_style=dash,
                                  marker="circle", marker_size=24))  # fmt: skip
            marks.append(bq.Scatter(x=[curve.best_epoch], y=[curve.best_value], scales=scales, colors=[color],
                                    marker="triangle-up", default_size=160, names=[f"best: {curve.best_value:.4f}"],
                                    display_names=False, tooltip=bq.Tooltip(fields=["name"])))  # fmt: skip
            if twin is not None:
                marks.append(bq.Scatter(x=curve.epochs, y=curve.values, scales=scales, colors=[color], **RING))
            hint = "" if twin is None else f" (same curve as {curves[twin][1].slug})"
            keys.append(_key(color, dash, curve.slug + hint, ring=twin is not None))
        self.curves.marks = marks
        self.curve_x_axis.tick_values = _fit_integers(self.curve_x, [e for _, c in curves for e in c.epochs])
        _fit(self.curve_y, [v for _, c in curves for v in c.values])
        self.curve_legend.value = _legend(keys)

    def show_run(self, run_id: str) -> None:
        """Show a run's details under the chart."""
        from .run_details import RunDetails

        for old in self.details.children:
            old.close()
        self.details.children = [RunDetails(self.project, run_id)]


def _checkbox(text: str, value: bool) -> w.Checkbox:
    """A checkbox as wide as the left panel (not ipywidgets' 300px); a metric's name from a run record is text
    that MathJax must not typeset (``description``).
    """
    return w.Checkbox(value=value, indent=False, layout=w.Layout(width="auto"), **description(text))


def _objective(project: Project, model_id: str) -> str:
    from ..training.metrics import OBJECTIVES

    model = project.model(model_id)
    return (model.training or {}).get("objective") or OBJECTIVES[model.problem_type]


def _tooltip(point: Point) -> str:
    interval = "" if point.low is None else f" (95% CI {point.low:.2f}-{point.high:.2f})"
    return f"{point.slug}: {point.value:.4f}{interval}, {point.started[:16].replace('T', ' ')}"


def _key(color: str, dash: str, label: str, ring: bool = False) -> Markup:
    """A legend entry: the line's colour and dash with its dot (in a hollow square: RING), then its label."""
    square = html("<rect x='12' y='1' width='12' height='12' fill='none' stroke='{}'/>", color) if ring else escape("")
    return html(
        "<span style='display:inline-flex;align-items:center;gap:4px'>"
        "<svg width='36' height='14' style='flex:none'><line x1='0' y1='7' x2='36' y2='7' stroke='{c}' "
        "stroke-width='2' stroke-dasharray='{d}'/><circle cx='18' cy='7' r='3' fill='{c}'/>{s}</svg>{t}</span>",
        c=color, d=DASH_ARRAY[dash], s=square, t=label,
    )  # fmt: skip


def _legend(keys: list[Markup], caption: str = "") -> Markup:
    caption_line = html("<div style='color:#5f6368'>{}</div>", caption) if caption else escape("")
    return html(
        "<div style='margin-left:50px;font-size:12px'><div style='display:flex;flex-wrap:wrap;gap:2px 18px'>{}</div>"
        "{}</div>",
        escape("").join(keys), caption_line,
    )  # fmt: skip


def _fit_integers(scale: bq.LinearScale, values: list[int]) -> list[int] | None:
    """Integer ticks for ``values`` (None: none to show); the range padded by half the smallest step each side."""
    distinct = sorted(set(values))
    half = min((b - a for a, b in pairwise(distinct)), default=1) / 2
    with scale.hold_sync():
        scale.min, scale.max = (distinct[0] - half, distinct[-1] + half) if distinct else (None, None)
    return integer_ticks(distinct) or None


def _fit_times(scale: bq.DateScale, times: list[Any]) -> None:
    """Room of a twentieth of the span each side (runs at one moment: a minute), so no point sits on the frame."""
    with scale.hold_sync():
        if not times:
            scale.min = scale.max = None
            return
        lo, hi = min(times), max(times)
        pad = (hi - lo) / 20 or np.timedelta64(1, "m")
        scale.min, scale.max = lo - pad, hi + pad


def _fit(scale: bq.LinearScale, values: list[float]) -> None:
    """Let ``scale`` show ``values`` with a little room (a flat series: a small range around it); none: unset."""
    with scale.hold_sync():
        if not values:
            scale.min = scale.max = None
            return
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.01)
        scale.min, scale.max = lo - pad, hi + pad


def _when(stamp: str):
    return np.datetime64(stamp[:23])
