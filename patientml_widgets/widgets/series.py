"""What the metrics views plot, computed from run records (no widgets here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..records import Run

__all__ = [
    "LearningCurve",
    "Point",
    "bootstrap_interval",
    "challenger_table",
    "integer_ticks",
    "learning_curve",
    "metric_names",
    "metric_series",
    "same_curves",
]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Point:
    run_id: str
    slug: str
    number: int  #: 1-based position of the run among the model's runs
    started: str
    value: float
    low: float | None = None  #: the 95% bootstrap interval of a test value (``run.evaluation``), if any
    high: float | None = None


@dataclass
class LearningCurve:
    run_id: str
    slug: str
    epochs: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None


def _scalar(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mapping(value: Any) -> dict[str, Any]:
    """A dict from a run record, or an empty one where a crafted record holds something else."""
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> float | None:
    return float(value) if _scalar(value) and math.isfinite(value) else None


def bootstrap_interval(run: Run, metric: str) -> tuple[float | None, float | None]:
    """The 95% bootstrap interval of a test metric from ``run.evaluation``; ``(None, None)`` where it has none."""
    entry = _mapping(_mapping(_mapping(run.evaluation).get("metrics")).get(metric))
    low, high = _finite(entry.get("low")), _finite(entry.get("high"))
    if low is None or high is None or low > high:
        return None, None
    return low, high


def split_metrics(run: Run, split: str) -> dict[str, float]:
    """A run's scalar metrics on a split (train: the training loss of its best epoch)."""
    if split == "train":
        best = run.metrics.get("best_epoch")
        for record in run.history:
            if record.get("epoch") == best and "trial" not in record:
                return {k: v for k, v in _mapping(record.get("train")).items() if _scalar(v)}
        return {}
    return {k: v for k, v in _mapping(run.metrics.get(split)).items() if _scalar(v) and k != "n"}


def metric_names(runs: list[Run]) -> list[str]:
    """Every scalar metric any finished run recorded, objective-like ones first."""
    names: set[str] = set()
    for run in runs:
        for split in SPLITS:
            names |= set(split_metrics(run, split))
    first = ["dice_mean", "balanced_accuracy", "iou_mean", "accuracy", "f1_macro", "auroc", "loss"]
    return [n for n in first if n in names] + sorted(names - set(first))


def metric_series(runs: list[Run], metrics: list[str], splits: list[str]) -> dict[tuple[str, str], list[Point]]:
    """One series per (metric, split): a point per succeeded run that has the value, in run order.

    Failed, cancelled and unfinished runs have no final metrics and are left out (their partial
    history shows in the learning curves).
    """
    out: dict[tuple[str, str], list[Point]] = {}
    for metric in metrics:
        for split in splits:
            points = []
            for number, run in enumerate(runs, start=1):
                if run.status != "succeeded":
                    continue
                value = split_metrics(run, split).get(metric)
                if value is not None:
                    low, high = bootstrap_interval(run, metric) if split == "test" else (None, None)
                    points.append(Point(run.id, run.slug, number, run.started or run.created, float(value), low, high))
            out[metric, split] = points
    return out


def learning_curve(run: Run, metric: str, split: str = "val", *, direction: str = "max") -> LearningCurve:
    """Validation values of a run by step (the last trial's, for a search), with the best marked."""
    curve = LearningCurve(run.id, run.slug)
    history = list(run.history)
    trials = [r.get("trial") for r in history if r.get("trial") is not None]
    if trials:
        history = [r for r in history if r.get("trial") == trials[-1]]
    for record in history:
        value = _mapping(record.get(split)).get(metric)
        step = record.get("step", record.get("epoch"))
        if _scalar(value) and _scalar(step):
            curve.epochs.append(int(step))
            curve.values.append(float(value))
    if curve.values:
        pick = max if (direction == "max" and metric != "loss") else min
        best = pick(range(len(curve.values)), key=lambda i: curve.values[i])
        curve.best_epoch, curve.best_value = curve.epochs[best], curve.values[best]
    return curve


def same_curves(curves: Sequence[Sequence[tuple[float, float]]]) -> list[int | None]:
    """For each curve (its ``(x, y)`` points), the first earlier curve with the same points (within 1e-12)."""

    def same(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
        return len(a) == len(b) and all(abs(p - q) <= 1e-12 for u, v in zip(a, b) for p, q in zip(u, v))

    return [next((j for j in range(i) if same(curves[j], curve)), None) for i, curve in enumerate(curves)]


def integer_ticks(values: Sequence[int], most: int = 10) -> list[int]:
    """Ticks of an integer axis: the values themselves, or at most ``most`` round, evenly spaced integers."""
    ticks = sorted(set(values))
    if len(ticks) <= most:
        return ticks
    span = ticks[-1] - ticks[0]
    step = next(s for s in (k * 10**e for e in range(18) for k in (1, 2, 5)) if span // s < most)
    return list(range(-(-ticks[0] // step) * step, ticks[-1] + 1, step))


def challenger_table(run: Run) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(metric, this run, champion, difference)`` on the same test examples."""
    ours = split_metrics(run, "test")
    champion_metrics = _mapping(_mapping(run.champion).get("metrics"))
    theirs = {k: v for k, v in _mapping(champion_metrics.get("test")).items() if _scalar(v)}
    theirs.pop("n", None)
    rows = []
    for name in sorted(set(ours) | set(theirs), key=lambda n: (n != run.spec.get("objective"), n)):
        a, b = ours.get(name), theirs.get(name)
        rows.append((name, a, b, None if a is None or b is None else a - b))
    return rows
