"""A run's test evaluation with intervals: what the worker computes after training and caches on the run.

- :func:`statistics`: every scalar test metric of a problem type as a bootstrap :class:`~.bootstrap.Statistic`
  of the test examples' outputs (its value on the whole test set is the metric the trainer records);
- :func:`evaluate`: the paired bootstrap over test subjects of the challenger, the champion and their
  difference, overall and per subgroup (:func:`groups`), subgroups where the challenger is worse beyond the
  interval flagged;
- :func:`calibration`: expected calibration error and the reliability diagram's bins (classification);
- :func:`operating_thresholds`: per-class thresholds chosen on validation for a sensitivity or specificity
  target (or Youden's J), and what they give.

numpy only: the outputs are the trainer's (probabilities, predicted label maps), as arrays.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bootstrap import MIN_SUBJECTS, Auroc, Pooled, Statistic, mean, paired_bootstrap
from .errors import ValidationError

__all__ = [
    "AGE_BINS",
    "BINS",
    "SUBGROUP_FIELDS",
    "WORST",
    "MIN_SUBJECTS",
    "calibration",
    "describe",
    "evaluate",
    "finite",
    "group_of",
    "groups",
    "operating_point",
    "operating_thresholds",
    "sensitivity_specificity",
    "statistics",
]

#: the subgroup fields analysed by default (those the test examples carry; see :func:`group_of`)
SUBGROUP_FIELDS = ("Manufacturer", "Modality", "InstitutionName", "PatientSex", "age", "tags")
#: age bins in years: [low, high)
AGE_BINS = ((0, 18), (18, 40), (40, 60), (60, 80), (80, 200))
#: the worst test examples a run keeps its predictions of (RunDetails shows them without loading the network)
WORST = 8
#: equal-width confidence bins of the reliability diagram and the ECE
BINS = 10
#: where a field is looked up: the example's ``source``, its DICOM reference, the subject's metadata
_ALIASES = {
    "manufacturer": ("manufacturer", "Manufacturer"),
    "modality": ("modality", "Modality"),
    "institutionname": ("institution", "InstitutionName"),
    "institution": ("institution", "InstitutionName"),
    "patientsex": ("PatientSex", "sex"),
    "sex": ("PatientSex", "sex"),
}


# -- metrics as statistics ---------------------------------------------------------------------------


def statistics(
    problem_type: str,
    outputs: Any,
    targets: Sequence[Any],
    k: int,
    *,
    multi_label: bool = False,
    hd95: Sequence[float] | None = None,
) -> dict[str, Statistic]:
    """Each scalar test metric as a statistic of the test examples.

    ``outputs``: probabilities (n, k) for classification, predicted label maps (class positions) for
    segmentation, each the shape of its target (2-D image or volume); ``targets``: class positions (n,), a
    0/1 matrix (n, k) for multi-label, or masks; ``hd95``: each volume's mean foreground HD95 (volumes).
    The value on the whole set equals what ``training.metrics`` computes (pooled over pixels and classes
    as there; segmentation losses are not kept per example, so they have no interval).
    """
    if problem_type == "segmentation":
        return _segmentation(outputs, targets, k, hd95)
    proba = _probabilities(outputs, len(targets), k)
    if multi_label:
        return _multilabel(proba, np.asarray(targets, bool).reshape(len(targets), k))
    return _classification(proba, np.asarray(targets, np.int64).reshape(-1))


def _probabilities(outputs: Any, n: int, k: int) -> np.ndarray:
    """(n, k) float64 probabilities, or a ValidationError if the network gave NaN or infinite values."""
    proba = np.asarray(outputs, np.float64).reshape(n, k)
    if not np.isfinite(proba).all():
        raise ValidationError("the network's probabilities hold NaN or infinite values (it diverged)")
    return proba


def _clamped(p: np.ndarray) -> np.ndarray:
    """``p`` clamped to [1e-7, 1 - 1e-7] in float32, as the trainer's losses (torch) clamp it, as float64."""
    return np.clip(p.astype(np.float32), np.float32(1e-7), np.float32(1 - 1e-7)).astype(np.float64)


def _classification(proba: np.ndarray, y: np.ndarray) -> dict[str, Statistic]:
    n, k = proba.shape
    cells = np.zeros((n, k * k))
    cells[np.arange(n), y * k + proba.argmax(1)] = 1

    def matrix(s: np.ndarray) -> np.ndarray:
        return s.reshape(len(s), k, k)

    def recall(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cm = matrix(s)
        actual = cm.sum(2)
        return np.where(actual > 0, np.diagonal(cm, axis1=1, axis2=2) / np.maximum(actual, 1), 0.0), actual > 0

    def balanced(s: np.ndarray) -> np.ndarray:
        r, present = recall(s)
        return np.where(present.any(1), (r * present).sum(1) / np.maximum(present.sum(1), 1), 0.0)

    def f1(s: np.ndarray) -> np.ndarray:
        cm = matrix(s)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        return _f1(tp, cm.sum(1) - tp, cm.sum(2) - tp).mean(1)

    truth = np.zeros((n, k), bool)
    truth[np.arange(n), y] = True
    nll = -np.log(np.maximum(proba[np.arange(n), y].astype(np.float32), np.float32(1e-7)).astype(np.float64))
    return {
        "accuracy": Pooled(cells, lambda s: np.trace(matrix(s), axis1=1, axis2=2) / s.sum(1)),
        "balanced_accuracy": Pooled(cells, balanced),
        "f1_macro": Pooled(cells, f1),
        "auroc": Auroc(truth, proba),
        "loss": mean(nll),
        "ece": _ece(proba.max(1), proba.argmax(1) == y),
    }


def _multilabel(proba: np.ndarray, y: np.ndarray) -> dict[str, Statistic]:
    k = proba.shape[1]
    pred = proba >= 0.5
    counts = np.concatenate([y & pred, ~y & pred, y & ~pred, ~y & ~pred], axis=1).astype(np.float64)

    def parts(s: np.ndarray) -> tuple[np.ndarray, ...]:
        return s[:, :k], s[:, k : 2 * k], s[:, 2 * k : 3 * k], s[:, 3 * k :]

    def balanced(s: np.ndarray) -> np.ndarray:
        tp, fp, fn, tn = parts(s)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        return ((recall + tn / np.maximum(tn + fp, 1)) / 2).mean(1)

    clamped = _clamped(proba)
    bce = -(y * np.log(clamped) + ~y * np.log(1 - clamped))
    return {
        "subset_accuracy": mean((y == pred).all(1)),
        "f1_macro": Pooled(counts, lambda s: _f1(parts(s)[0], parts(s)[1], parts(s)[2]).mean(1)),
        "balanced_accuracy": Pooled(counts, balanced),
        "auroc": Auroc(y, proba),
        "loss": mean(bce.mean(1)),
        "ece": _ece(proba, y),
    }


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-300), 0.0)
    return np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)


def _segmentation(
    outputs: Sequence[Any], targets: Sequence[Any], k: int, hd95: Sequence[float] | None
) -> dict[str, Statistic]:
    cells = np.zeros((len(targets), k * k))
    for i, (t, p) in enumerate(zip(targets, outputs, strict=True)):
        t, p = np.asarray(t), np.asarray(p)
        if t.shape != p.shape:
            raise ValidationError(f"test example {i}: the prediction is {p.shape}, its mask {t.shape}")
        for start in range(0, len(t), 16):  # a few rows (slices) at a time: int64 copies of a CT are GBs
            part = t[start : start + 16].astype(np.int64) * k + p[start : start + 16]
            cells[i] += np.bincount(part.ravel(), minlength=k * k)
    fg = slice(1, None) if k > 1 else slice(None)

    def overlap(s: np.ndarray, dice: bool) -> np.ndarray:
        cm = s.reshape(len(s), k, k)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        fp, fn = cm.sum(1) - tp, cm.sum(2) - tp
        num, den = (2 * tp, 2 * tp + fp + fn) if dice else (tp, tp + fp + fn)
        return np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)[:, fg].mean(1)

    out: dict[str, Statistic] = {
        "dice_mean": Pooled(cells, lambda s: overlap(s, True)),
        "iou_mean": Pooled(cells, lambda s: overlap(s, False)),
        "pixel_accuracy": Pooled(
            cells, lambda s: np.trace(s.reshape(len(s), k, k), axis1=1, axis2=2) / np.maximum(s.sum(1), 1)
        ),
    }
    if hd95 is not None:
        out["hd95_mean"] = mean(hd95)
    return out


def _ece(confidence: np.ndarray, correct: np.ndarray) -> Pooled:
    """Expected calibration error over :data:`BINS` equal-width bins of ``confidence`` (per example: a value,
    or a row of values, one per class, for multi-label), as a pooled statistic.
    """
    confidence = np.asarray(confidence, np.float64).reshape(len(confidence), -1)
    correct = np.asarray(correct, np.float64).reshape(confidence.shape)
    bins = np.minimum((confidence * BINS).astype(np.int64), BINS - 1)
    stats = np.zeros((len(confidence), 3 * BINS))
    rows = np.repeat(np.arange(len(confidence)), confidence.shape[1])
    for offset, values in enumerate((np.ones_like(confidence), confidence, correct)):
        np.add.at(stats, (rows, offset * BINS + bins.ravel()), values.ravel())

    def ece(s: np.ndarray) -> np.ndarray:
        count, conf, hits = s[:, :BINS], s[:, BINS : 2 * BINS], s[:, 2 * BINS :]
        return np.abs(conf - hits).sum(1) / count.sum(1)

    return Pooled(stats, ece)


def calibration(proba: Any, targets: Any, *, multi_label: bool = False) -> dict[str, Any]:
    """The reliability diagram's bins (``low``, ``high``, ``count``, mean ``confidence``, ``accuracy``) and the
    expected calibration error: the top class's probability against being right (single-label), or every
    class's probability against its truth (multi-label).
    """
    proba = _probabilities(proba, len(proba), np.shape(proba)[1])
    if multi_label:
        confidence, correct = proba.ravel(), np.asarray(targets, bool).ravel()
    else:
        y = np.asarray(targets, np.int64).reshape(-1)
        confidence, correct = proba.max(1), proba.argmax(1) == y
    bins = np.minimum((confidence * BINS).astype(np.int64), BINS - 1)
    out: list[dict[str, Any]] = []
    for b in range(BINS):
        where = bins == b
        count = int(where.sum())
        out.append(
            {
                "low": b / BINS,
                "high": (b + 1) / BINS,
                "count": count,
                "confidence": float(confidence[where].mean()) if count else None,
                "accuracy": float(correct[where].mean()) if count else None,
            }
        )
    gaps = np.abs(np.bincount(bins, confidence, BINS) - np.bincount(bins, correct.astype(np.float64), BINS))
    ece = gaps.sum() / max(1, len(confidence))
    return {"ece": float(ece), "bins": out, "kind": "every class" if multi_label else "top class"}


# -- operating thresholds ------------------------------------------------------------------------


def operating_thresholds(
    proba: Any, targets: Any, names: Sequence[str], point: Mapping[str, Any] | str, *, multi_label: bool = False
) -> dict[str, Any]:
    """Per-class thresholds on the validation outputs for an operating ``point``: ``{"sensitivity": 0.9}``
    (the highest threshold that keeps at least that share of the class's cases), ``{"specificity": 0.95}``
    (the lowest that keeps at least that share of the others out) or ``"youden"`` (the most sensitivity +
    specificity). Returns ``{"point", "classes": {name: threshold}, "val": {name: {"sensitivity",
    "specificity"}}}``.

    A single-label model with two classes gets a threshold for its second class (the finding): ``predict``
    then calls the finding when its probability reaches it. With more classes, each class's threshold is chosen
    one against the rest and the prediction is the class whose probability is largest relative to its
    threshold. A class with no case (or nothing else) in validation gets none (the default rule stays).
    Thresholds are the validation scores themselves, unrounded: the target holds on validation exactly.
    """
    point = operating_point(point)
    kind, target = ("youden", 0.0) if isinstance(point, str) else next(iter(point.items()))
    proba = np.asarray(proba, np.float64)
    n, k = proba.shape
    truth = np.asarray(targets, bool).reshape(n, k) if multi_label else np.eye(k, dtype=bool)[np.asarray(targets)]
    thresholds: dict[str, float] = {}
    val: dict[str, dict[str, float | None]] = {}
    for c in [1] if (not multi_label and k == 2) else range(k):
        t = _threshold(proba[:, c], truth[:, c], kind, target)
        if t is not None:  # a class without cases (or without others) in validation keeps the default rule
            thresholds[names[c]] = t
            val[names[c]] = sensitivity_specificity(proba[:, c], truth[:, c], t)
    return {"point": point, "classes": thresholds, "val": val}


def operating_point(point: Any) -> dict[str, float] | str:
    """``point`` checked: ``{"sensitivity": share}``, ``{"specificity": share}`` or ``"youden"``."""
    if isinstance(point, str) and point == "youden":
        return "youden"
    if isinstance(point, Mapping) and len(point) == 1:
        ((kind, target),) = point.items()
        if kind in ("sensitivity", "specificity") and finite(target) and 0 < target <= 1:
            return {kind: float(target)}
    raise ValidationError(
        f"operating_point is {{'sensitivity': share}}, {{'specificity': share}} (0 < share <= 1) or 'youden', "
        f"not {point!r}"
    )


def _threshold(score: np.ndarray, truth: np.ndarray, kind: str, target: float) -> float | None:
    """The threshold (a probability) for one class; None where the class or the rest has no example."""
    pos, neg = score[truth], score[~truth]
    if not len(pos) or not len(neg):
        return None
    candidates = np.unique(np.concatenate([score, [0.0, 1.0]]))
    sens = (pos[None, :] >= candidates[:, None]).mean(1)
    spec = (neg[None, :] < candidates[:, None]).mean(1)
    if kind == "sensitivity":
        best = np.flatnonzero(sens >= target - 1e-12)[-1]  # the highest threshold that still keeps the target
    elif kind == "specificity":
        ok = np.flatnonzero(spec >= target - 1e-12)
        best = ok[0] if len(ok) else len(candidates) - 1
    else:
        best = int(np.argmax(sens + spec))
    return float(candidates[best])


def sensitivity_specificity(score: Any, truth: Any, threshold: float) -> dict[str, float | None]:
    """The share of cases at or above ``threshold`` and of the others below it (None without any)."""
    score, truth = np.asarray(score, np.float64), np.asarray(truth, bool)
    called = score >= threshold
    return {
        "sensitivity": float(called[truth].mean()) if truth.any() else None,
        "specificity": float((~called[~truth]).mean()) if (~truth).any() else None,
    }


# -- subgroups -------------------------------------------------------------------------------------


def group_of(field: str, example: Mapping[str, Any], subject: Mapping[str, Any] | None) -> list[str]:
    """The groups an example belongs to by ``field``: a DICOM keyword (Manufacturer, Modality,
    InstitutionName, PatientSex), ``age`` (bins of :data:`AGE_BINS` from PatientAge or the birth and study
    dates), ``tags`` (each tag of the subject), ``split_source`` (where the example came from: its import
    file's folder), or any key of the example's ``source`` or the subject's metadata. Empty: unknown.
    """
    source = _dict(example.get("source"))
    dicom = _dict(source.get("dicom"))
    patient = _dict(dicom.get("patient"))
    metadata = _dict((subject or {}).get("metadata"))
    if field == "tags":
        tags = (subject or {}).get("tags")
        return sorted({str(t) for t in tags if str(t)}) if isinstance(tags, list) else []
    if field == "age":
        years = _age(metadata, patient, dicom, source)
        return [] if years is None else [_age_bin(years)]
    if field == "split_source":
        file = str(source.get("file") or "")
        return [file.rsplit("/", 1)[0] if "/" in file else "(top folder)"] if file else []
    for key in _ALIASES.get(field.lower(), (field,)):
        for place in (source, dicom, patient, metadata):
            value = place.get(key)
            if (isinstance(value, str) or finite(value)) and str(value).strip():
                return [str(value).strip()[:64]]
    return []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _age(*places: Mapping[str, Any]) -> float | None:
    """Age in years from PatientAge ("045Y", "006M", "010W", "003D" or a number), else from the birth and study
    dates; None when unknown or not a human age (outside 0-150 years).
    """
    years: float | None = None
    for place in places:
        value = place.get("PatientAge", place.get("age"))
        if finite(value):
            years = float(value)
            break
        match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", value) if isinstance(value, str) else None
        if match:
            years = int(match.group(1)) / {"D": 365.25, "W": 52.18, "M": 12.0}.get(match.group(2), 1.0)
            break
    if years is None:
        born = next((str(p["PatientBirthDate"]) for p in places if p.get("PatientBirthDate")), "")
        seen = next((str(p["StudyDate"]) for p in places if p.get("StudyDate")), "")
        if re.fullmatch(r"\d{8}", born) and re.fullmatch(r"\d{8}", seen):
            years = int(seen[:4]) - int(born[:4]) - (seen[4:] < born[4:])
    return years if years is not None and 0 <= years <= 150 else None


def _age_bin(years: float) -> str:
    low, high = next((low, high) for low, high in AGE_BINS if low <= years < high)
    return f"{low}+" if high >= 200 else f"{low}-{high - 1}"


def groups(
    fields: Sequence[str], examples: Sequence[Mapping[str, Any]], subjects: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, np.ndarray]]:
    """``{field: {group: boolean mask over examples}}`` for the fields with at least two groups."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for field in fields:
        members: dict[str, np.ndarray] = {}
        for i, example in enumerate(examples):
            for group in group_of(field, example, subjects.get(str(example.get("subject_id")))):
                members.setdefault(group, np.zeros(len(examples), bool))[i] = True
        if len(members) >= 2:
            out[field] = dict(sorted(members.items()))
    return out


# -- the evaluation --------------------------------------------------------------------------------


def evaluate(
    challenger: Mapping[str, Statistic],
    subjects: Sequence[Any],
    champion: Mapping[str, Statistic] | None = None,
    *,
    objective: str,
    direction: str = "max",
    subgroups: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """The paired bootstrap of every metric overall, and of the objective per subgroup.

    A subgroup of at least :data:`~.bootstrap.MIN_SUBJECTS` subjects is flagged when the challenger is worse
    than the champion there beyond the interval of their difference, Bonferroni-corrected for the number of
    subgroups compared (``m`` groups: the interval at level ``1 - (1 - level) / m``; its upper bound below 0 for
    a metric to maximise). Without the correction, 20 groups of two equally good runs would flag one of them in
    about a third of the runs. The table shows each group's ``level`` interval; ``flag_level`` is the one used.
    """
    out = paired_bootstrap(challenger, subjects, champion, resamples=resamples, seed=seed, level=level)
    out["objective"], out["direction"] = objective, direction
    names = np.asarray([str(s) for s in subjects], dtype=object)
    parts = [
        (field, group, where, len(set(names[where])))
        for field, members in (subgroups or {}).items()
        for group, where in members.items()
    ]
    compared = sum(size >= MIN_SUBJECTS for *_, size in parts) if champion and objective in champion else 0
    flag_level = 1 - (1 - level) / max(1, compared)
    rows = []
    for field, group, where, _ in parts:
        ours = {objective: challenger[objective].take(where)} if objective in challenger else {}
        theirs = {objective: champion[objective].take(where)} if champion and objective in champion else None
        part = paired_bootstrap(
            ours, list(names[where]), theirs, resamples=resamples, seed=seed, level=level, flag_level=flag_level
        )
        diff = part["difference"].get(objective)
        rows.append(
            {
                "field": field,
                "group": group,
                "subjects": part["subjects"],
                "examples": part["examples"],
                "enough": part["enough"],
                "metric": part["metrics"].get(objective),
                "champion": part["champion"].get(objective),
                "difference": diff,
                "flag": bool(part["enough"] and diff and _worse(diff, direction)),
            }
        )
    out["subgroups"] = rows
    out["subgroup_comparisons"], out["flag_level"] = compared, flag_level
    return out


def _worse(diff: Mapping[str, float | None], direction: str) -> bool:
    """Worse beyond the (corrected) interval: its upper bound below 0 (``max``), its lower bound above 0."""
    low, high = diff.get("flag_low", diff.get("low")), diff.get("flag_high", diff.get("high"))
    if low is None or high is None:
        return False
    return high < 0 if direction == "max" else low > 0


def describe(interval: Mapping[str, Any] | None, fmt: str = "+.4f") -> str:
    """``+0.0312 (95% CI +0.0041 to +0.0583)``, or the value alone without an interval."""
    if not interval or interval.get("value") is None:
        return "-"
    text = format(interval["value"], fmt)
    if interval.get("low") is None or interval.get("high") is None:
        return text
    return f"{text} (95% CI {format(interval['low'], fmt)} to {format(interval['high'], fmt)})"


def finite(value: Any) -> bool:
    """A real number (not a bool, NaN or infinite): what a crafted record may fail to hold."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
