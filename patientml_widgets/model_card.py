"""The model card of a deployed run: what it was trained on, how, how well (with intervals, per subgroup),
how it compared with the champion it replaced, who deployed it and why, and what it is meant for.

:func:`build` makes the card (a JSON-ready dict) from the records; the session writes it onto the run in the
commit that deploys it. :func:`markdown` renders it for ``export_run`` (``model_card.md`` next to
``model_card.json``). Pure functions of records: no store, no torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CARD_VERSION", "build", "markdown", "snapshot_hash"]

CARD_VERSION = 1
SPLITS = ("train", "val", "test")


def snapshot_hash(snapshot: Mapping[str, Sequence[Sequence[Any]]], image_refs: Mapping[str, str]) -> str:
    """sha256 of the frozen data: each split's (example id, image content reference, label version), sorted.

    Images are stored by their content's hash and label versions never change once written, so two runs
    with the same hash were trained and tested on the same pixels and labels.
    """
    rows = sorted(
        [split, str(item[0]), image_refs.get(str(item[0]), ""), int(item[1])]
        for split, items in snapshot.items()
        for item in items
    )
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def build(
    model: Mapping[str, Any],
    run: Mapping[str, Any],
    *,
    deployment: Mapping[str, Any] | None,
    replaced: Mapping[str, Any] | None,
    image_refs: Mapping[str, str],
    generated: str,
) -> dict[str, Any]:
    """The card of ``run`` of ``model``; ``deployment`` the decision that deployed it (None: not deployed),
    ``replaced`` the run that was the champion before (None for the first).
    """
    config = model.get("training") or {}
    snapshot = run.get("snapshot") or {}
    evaluation = run.get("evaluation") or {}
    metrics = run.get("metrics") or {}
    system = [a for a in run.get("approvals") or [] if a.get("actor") == "system"]
    return {
        "card_version": CARD_VERSION,
        "generated": generated,
        "software": f"patientml-widgets {_version()}",
        "model": {
            "id": model.get("id"),
            "name": model.get("name"),
            "problem_type": model.get("problem_type"),
            "multi_label": bool(model.get("multi_label")),
            "classes": [{"index": c.get("index"), "name": c.get("name")} for c in model.get("classes") or []],
        },
        "intended_use": config.get("intended_use") or "",
        "run": {k: run.get(k) for k in ("id", "slug", "created", "started", "ended", "trigger")},
        "data": {
            "counts": {s: len(snapshot.get(s, [])) for s in SPLITS},
            "label_versions": {s: [list(item) for item in snapshot.get(s, [])] for s in SPLITS},
            "content_hash": snapshot_hash(snapshot, image_refs),
        },
        "training": {
            "hyperparameters": run.get("hyperparameters") or {},
            "plan": run.get("plan") or {},
            "hardware": run.get("hardware") or {},
            "training": run.get("training") or {},
        },
        "evaluation": {
            "objective": evaluation.get("objective") or (run.get("spec") or {}).get("objective"),
            "test": {k: v for k, v in (metrics.get("test") or {}).items() if _scalar(v)},
            "intervals": evaluation.get("metrics") or {},
            "subjects": evaluation.get("subjects"),
            "level": evaluation.get("level"),
            "note": evaluation.get("note"),
            "subgroups": evaluation.get("subgroups") or [],
            "calibration": {k: v for k, v in (evaluation.get("calibration") or {}).items() if k in ("ece", "kind")},
            "thresholds": run.get("thresholds") or {},
        },
        "champion_comparison": {
            "replaced": (replaced or {}).get("slug"),
            "compared_with": (run.get("champion") or {}).get("run_id"),
            "difference": evaluation.get("difference") or {},
            "rule": config.get("rule", "margin"),
            "margin": config.get("min_margin", 0.0),
        },
        "decision": {
            "promotion_rule": system[-1] if system else None,
            "deployment": dict(deployment) if deployment else None,
        },
    }


def markdown(card: Mapping[str, Any]) -> str:
    """The card as a Markdown document (what a clinician or an auditor reads)."""
    model, run, data = card.get("model") or {}, card.get("run") or {}, card.get("data") or {}
    ev, comparison, decision = card.get("evaluation") or {}, card.get("champion_comparison") or {}, card["decision"]
    lines = [
        f"# Model card: {_cell(model.get('name'))} - {_cell(run.get('slug'))}",
        "",
        f"Generated {_cell(card.get('generated'))} by {_cell(card.get('software'))}.",
        "",
        "## Intended use",
        "",
        _text(card.get("intended_use")) or "_Not written: set it with configure_training(intended_use=...)._",
        "",
        "## Model",
        "",
        f"- Problem type: {_cell(model.get('problem_type'))}{' (multi-label)' if model.get('multi_label') else ''}",
        "- Classes: "
        + ", ".join(f"{_cell(c.get('name'))} ({_cell(c.get('index'))})" for c in model.get("classes") or []),
        f"- Run: {_cell(run.get('slug'))} ({_cell(run.get('id'))}), trained {_cell(run.get('started'))} to "
        f"{_cell(run.get('ended'))}",
        "",
        "## Data",
        "",
        "| split | examples |",
        "|---|---|",
        *[f"| {_cell(s)} | {_cell(n)} |" for s, n in _items(data.get("counts"))],
        "",
        f"Content hash (sha256 of each example's image content and label version): {_cell(data.get('content_hash'))}",
        "",
        "## Training",
        "",
    ]
    training = card.get("training") or {}
    hw, t = training.get("hardware") or {}, training.get("training") or {}
    lines += [
        f"- Hardware: {_cell(hw.get('device'))} {_cell(hw.get('name'))}, {_cell(hw.get('precision'))}, "
        f"{_cell(hw.get('threads'))} threads",
        f"- Steps: {_cell(t.get('steps'))} in {_cell(t.get('seconds'))} s (best at {_cell(t.get('best_step'))}, "
        f"ended by {_cell(t.get('stopped'))})",
        "- Hyperparameters: "
        + ", ".join(f"{_cell(k)}={_cell(v)}" for k, v in sorted((training.get("hyperparameters") or {}).items())),
        "",
        "## Test metrics",
        "",
    ]
    level = ev.get("level") if isinstance(ev.get("level"), float) and 0 < ev["level"] < 1 else 0.95
    lines += [f"On {_cell(ev.get('subjects'))} test subjects; {level:.0%} bootstrap intervals over subjects.", ""]
    if ev.get("note"):
        lines += [f"_{_text(ev['note'])}_", ""]
    lines += ["| metric | value | interval |", "|---|---|---|"]
    intervals = ev.get("intervals") or {}
    for name, value in (ev.get("test") or {}).items():
        lines.append(f"| {_cell(name)} | {_number(value)} | {_range(intervals.get(name))} |")
    if ev.get("subgroups"):
        lines += [
            "",
            f"### Subgroups ({_cell(ev.get('objective'))})",
            "",
            "| field | group | subjects | value | difference with the champion | flag |",
            "|---|---|---|---|---|---|",
        ]
        for g in ev["subgroups"]:
            metric, diff = g.get("metric") or {}, g.get("difference") or {}
            lines.append(
                f"| {_cell(g.get('field'))} | {_cell(g.get('group'))} | {_cell(g.get('subjects'))} | "
                f"{_number(metric.get('value'))} {_range(metric)} | {_number(diff.get('value'), '+.4f')} "
                f"{_range(diff, '+.4f')} | {'worse beyond the interval' if g.get('flag') else ''} |"
            )
    calibration = ev.get("calibration") or {}
    if calibration.get("ece") is not None:
        lines += [
            "",
            f"Calibration: expected calibration error {_number(calibration['ece'])} "
            f"({_cell(calibration.get('kind'))} probability, 10 bins).",
        ]
    thresholds = ev.get("thresholds") or {}
    if thresholds.get("classes"):
        lines += [
            "",
            f"Operating thresholds (chosen on validation for {_cell(thresholds.get('point'))}): "
            + ", ".join(f"{_cell(k)} {_number(v)}" for k, v in thresholds["classes"].items()),
        ]
    lines += ["", "## Comparison with the champion", ""]
    if comparison.get("compared_with"):
        lines += [
            f"Compared with {_cell(comparison.get('replaced') or comparison.get('compared_with'))} on the same "
            f"test examples (rule: {_cell(comparison.get('rule'))}, margin {_cell(comparison.get('margin'))}).",
            "",
            "| metric | difference | interval |",
            "|---|---|---|",
        ]
        for name, diff in (comparison.get("difference") or {}).items():
            lines.append(f"| {_cell(name)} | {_number((diff or {}).get('value'), '+.4f')} | {_range(diff, '+.4f')} |")
    else:
        lines.append("No champion to compare with: the first deployed run.")
    lines += ["", "## Decision", ""]
    for what, event in (("Promotion rule", decision.get("promotion_rule")), ("Deployed", decision.get("deployment"))):
        if event:
            lines.append(
                f"- {what}: {_cell(event.get('decision'))} by {_cell(event.get('actor'))} at "
                f"{_cell(event.get('time'))}: {_cell(event.get('reason'))}"
            )
    if not decision.get("deployment"):
        lines.append("- Not deployed.")
    return "\n".join(lines) + "\n"


def _items(value: Any) -> list[tuple[Any, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("patientml-widgets")
    except PackageNotFoundError:  # run from a source tree
        return "(not installed)"


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    """User text as Markdown text: what could make markup escaped (HTML, links and bare-URL autolinks, code,
    emphasis, strikethrough, table cells, and a heading, quote, list or setext underline at a line's start), so
    a card shows what was written and runs or links nothing.
    """
    text = "" if value is None else str(value)
    for ch in "\\`*_~[]<>|&!":
        text = text.replace(ch, "\\" + ch)
    text = text.replace("://", ":\\/\\/").replace("www.", "www\\.")
    text = re.sub(r"(?m)^(\s*)([#>+=-])", r"\1\\\2", text)
    return re.sub(r"(?m)^(\s*\d+)([.)])", r"\1\\\2", text)


def _cell(value: Any) -> str:
    """A value in a table cell or a line: escaped, on one line; ``-`` for a missing one."""
    if value is None or value == "":
        return "-"
    return _text(value).replace("\r", " ").replace("\n", " ")


def _number(value: Any, fmt: str = ".4f") -> str:
    return format(value, fmt) if _scalar(value) else "-"


def _range(interval: Mapping[str, Any] | None, fmt: str = ".4f") -> str:
    interval = interval or {}
    low, high = interval.get("low"), interval.get("high")
    return f"[{format(low, fmt)}, {format(high, fmt)}]" if _scalar(low) and _scalar(high) else ""
