"""How RunDetails shows a run's evaluation (``Run.evaluation``, computed by the worker): the metrics with their
intervals next to the champion's, the subgroups and their flags, calibration and its reliability diagram, the
operating thresholds and the model card. Everything is read from the run record (nothing is computed here),
and every value is checked: a crafted record shows as text, or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bqplot as bq
import ipywidgets as w

from ..model_card import markdown
from ..records import Run
from .markup import HTML, Markup, escape, html, is_number, number, table
from .series import challenger_table

__all__ = ["calibration_figure", "comparison", "interval", "metric_text", "model_card", "subgroups", "thresholds"]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> bool:
    return is_number(value) and value == value and abs(value) != float("inf")


def interval(value: Any, fmt: str = ".4f") -> str:
    """``0.8123 [0.7712, 0.8501]``; the value alone without bounds; ``-`` without a value (plain text)."""
    value = _mapping(value)
    if not _finite(value.get("value")):
        return "-"
    text = format(value["value"], fmt)
    low, high = value.get("low"), value.get("high")
    return f"{text} [{format(low, fmt)}, {format(high, fmt)}]" if _finite(low) and _finite(high) else text


def cell(value: Any, fmt: str = ".4f") -> Markup:
    """A table cell: the value, and its interval under it in gray (each on one line; ``-`` without a value)."""
    value = _mapping(value)
    if not _finite(value.get("value")):
        return escape("-")
    low, high = value.get("low"), value.get("high")
    if not (_finite(low) and _finite(high)):
        return escape(format(value["value"], fmt))
    return html(
        "{}<br><span style='color:#5f6368;font-size:11px;white-space:nowrap'>[{}, {}]</span>",
        format(value["value"], fmt),
        format(low, fmt),
        format(high, fmt),
    )


def _level(evaluation: Mapping[str, Any]) -> str:
    level = evaluation.get("level")
    return f"{level:.0%}" if isinstance(level, float) and 0 < level < 1 else "95%"


def comparison(run: Run, champion_label: str) -> Markup:
    """The test metrics with intervals, next to the champion's on the same examples, and the paired difference."""
    evaluation = _mapping(run.evaluation)
    intervals = _mapping(evaluation.get("metrics"))
    rows = challenger_table(run)
    if not rows and not intervals:
        return escape("")
    error = _mapping(run.champion).get("error")
    if not intervals:  # an older run: the point estimates only
        body = table(
            ["metric", "this run", champion_label, "difference"],
            [[n, metric_text(a), metric_text(b), number(d, "+.4f")] for n, a, b, d in rows],
        )
        return html("<b>On the same test examples</b>{}{}", body, _gray(error))
    theirs, diffs = _mapping(evaluation.get("champion")), _mapping(evaluation.get("difference"))
    objective = run.spec.get("objective")
    names = sorted(intervals, key=lambda n: (n != objective, n))
    body = table(
        ["metric", "this run", champion_label, "difference"],
        [[name, cell(intervals[name]), cell(theirs.get(name)), cell(diffs.get(name), "+.4f")] for name in names],
    )
    rest = [(n, a, b, d) for n, a, b, d in rows if n not in intervals]  # click scores: no interval
    extra = (
        table(
            ["metric", "this run", champion_label, "difference"],
            [[n, metric_text(a), metric_text(b), number(d, "+.4f")] for n, a, b, d in rest],
        )
        if rest
        else escape("")
    )
    subjects, examples = evaluation.get("subjects"), evaluation.get("examples")
    caption = html(
        "{} test subjects ({} examples); [low, high]: {} interval from {} paired bootstrap resamples over subjects",
        number(subjects),
        number(examples),
        _level(evaluation),
        number(evaluation.get("resamples")),
    )
    return html(
        "<b>On the same test examples</b><div style='color:#5f6368;font-size:12px'>{}</div>{}{}{}{}",
        caption,
        _gray(evaluation.get("note")),
        body,
        extra,
        _gray(error),
    )


def subgroups(run: Run) -> Markup:
    """The objective per subgroup, with the challenger - champion difference and the flags."""
    evaluation = _mapping(run.evaluation)
    groups = [g for g in evaluation.get("subgroups") or [] if isinstance(g, dict)]
    if not groups:
        return escape("")
    flagged = [g for g in groups if g.get("flag") is True]
    rows = [
        [
            g.get("field"),
            g.get("group"),
            number(g.get("subjects")),
            cell(g.get("metric")),
            cell(g.get("champion")),
            cell(g.get("difference"), "+.4f"),
            html("<span style='color:#c5221f;font-weight:600'>worse beyond the interval</span>")
            if g.get("flag") is True
            else ("too few subjects" if g.get("enough") is False else ""),
        ]
        for g in groups
    ]
    warning = (
        html(
            "<div style='color:#c5221f'>Worse than the champion beyond the interval in: {}</div>",
            ", ".join(f"{g.get('field')} {g.get('group')}" for g in flagged),
        )
        if flagged
        else escape("")
    )
    compared = evaluation.get("subgroup_comparisons")
    note = (
        html(
            "<div style='color:#5f6368;font-size:12px'>A flag: worse than the champion beyond the interval "
            "corrected for the {} groups compared (Bonferroni).</div>",
            number(compared),
        )
        if isinstance(compared, int) and compared > 1
        else escape("")
    )
    return html(
        "<b>Subgroups</b> ({}){}{}{}",
        evaluation.get("objective") or run.spec.get("objective") or "objective",
        note,
        warning,
        table(["field", "group", "subjects", "this run", "champion", "difference", ""], rows),
    )


def calibration_figure(run: Run) -> w.Widget | None:
    """The reliability diagram (observed accuracy against mean confidence per bin, the diagonal for perfect
    calibration) with the expected calibration error, for a classification run; None for others.
    """
    evaluation = _mapping(run.evaluation)
    cal = _mapping(evaluation.get("calibration"))
    bins = [
        b
        for b in cal.get("bins") or []
        if isinstance(b, dict)
        and _finite(b.get("confidence"))
        and _finite(b.get("accuracy"))
        and is_number(b.get("count"))
        and b["count"] > 0
    ]
    if not bins:
        return None
    x, y = bq.LinearScale(min=0, max=1), bq.LinearScale(min=0, max=1)
    scales = {"x": x, "y": y}
    diagonal = bq.Lines(x=[0, 1], y=[0, 1], scales=scales, colors=["#9aa0a6"], line_style="dashed")
    observed = bq.Lines(
        x=[b["confidence"] for b in bins],
        y=[b["accuracy"] for b in bins],
        scales=scales,
        colors=["#1a73e8"],
        marker="circle",
        marker_size=36,
    )
    sizes = bq.Scatter(
        x=[b["confidence"] for b in bins],
        y=[b["accuracy"] for b in bins],
        scales=scales,
        colors=["#1a73e8"],
        default_size=36,
        names=[
            f"{number(b.get('low'), '.1f')}-{number(b.get('high'), '.1f')}: {b['count']} "
            f"examples, confidence {b['confidence']:.2f}, observed {b['accuracy']:.2f}"
            for b in bins
        ],
        display_names=False,
        tooltip=bq.Tooltip(fields=["name"]),
    )
    kind = "top-class probability" if cal.get("kind") != "every class" else "each class's probability"
    figure = bq.Figure(
        marks=[diagonal, observed, sizes],
        axes=[
            bq.Axis(scale=x, label=f"mean confidence ({kind})", tick_format=".1f", num_ticks=6),
            bq.Axis(
                scale=y,
                side="left",
                label="observed accuracy",
                tick_format=".1f",
                tick_values=[0.2, 0.4, 0.6, 0.8, 1.0],
            ),
        ],
        title="Reliability diagram (test)",
        fig_margin={"top": 40, "bottom": 50, "left": 60, "right": 20},
        layout=w.Layout(width="340px", height="320px"),
    )
    ece = _mapping(evaluation.get("metrics")).get("ece") or {"value": cal.get("ece")}
    caption = HTML(
        html(
            "<div style='font-size:12px'>Expected calibration error {} (10 bins). Dashed: perfect calibration; "
            "points above it are under-confident, below over-confident.</div>",
            interval(ece),
        )
    )
    return w.VBox([figure, caption], layout=w.Layout(width="360px", margin="0 0 0 24px"))


def thresholds(run: Run) -> Markup:
    """The per-class operating thresholds chosen on validation, and their sensitivity / specificity."""
    chosen = _mapping(run.thresholds)
    classes = _mapping(chosen.get("classes"))
    if not classes:
        return escape("")
    val, test = _mapping(chosen.get("val")), _mapping(chosen.get("test"))

    def share(where: dict[str, Any], name: str, key: str) -> str:
        return number(_mapping(where.get(name)).get(key), ".2f")

    point = chosen.get("point")
    point_text = ", ".join(f"{k} {number(v)}" for k, v in point.items()) if isinstance(point, dict) else number(point)
    rows = [
        [
            name,
            number(t, ".3f"),
            share(val, name, "sensitivity"),
            share(val, name, "specificity"),
            share(test, name, "sensitivity"),
            share(test, name, "specificity"),
        ]
        for name, t in classes.items()
    ]
    return html(
        "<b>Operating thresholds</b> (chosen on validation for {}; predict uses them){}",
        point_text,
        table(
            ["class", "threshold", "val sensitivity", "val specificity", "test sensitivity", "test specificity"], rows
        ),
    )


def model_card(run: Run) -> Markup:
    """The model card written when the run was deployed, as the Markdown ``export_run`` writes (escaped)."""
    card = _mapping(run.model_card)
    if not card:
        return escape("")
    try:
        text = markdown(card)
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        OverflowError,
    ):  # a crafted card: say so, show nothing of it
        return html("<span style='color:#5f6368'>The model card of this run cannot be read.</span>")
    return html("<pre style='font-size:11px;white-space:pre-wrap;max-height:360px;overflow:auto'>{}</pre>", text)


def _gray(text: Any) -> Markup:
    return html("<div style='color:#5f6368'>{}</div>", text) if text else escape("")


def metric_text(value: Any) -> str:
    """A metric value as text: 4 decimals for a float, the value itself otherwise."""
    return number(value, ".4f") if isinstance(value, float) else number(value)
