"""What the metrics views plot, computed from run records (no widgets here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..records import Run

__all__ = ["LearningCurve", "Point", "challenger_table", "learning_curve", "metric_names", "metric_series"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Point:
    run_id: str
    slug: str
    number: int  #: 1-based position of the run among the model's runs
    started: str
    value: float


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
                    points.append(Point(run.id, run.slug, number, run.started or run.created, float(value)))
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
