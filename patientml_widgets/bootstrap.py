"""Paired bootstrap confidence intervals over test subjects (numpy only).

The unit of independence is the patient: a resample draws subjects with replacement and takes every example
(slice, image) of each drawn subject as many times as the subject was drawn, so the slices of one patient are
never split across a resample. The challenger and the champion are resampled with the same draws (paired), so
the interval of their difference is narrower than the two intervals side by side suggest.

A metric is a :class:`Statistic`: the value of a test set whose examples carry weights (how often each was
drawn). Most metrics are a function of per-example sums (:class:`Pooled`: the mean of a per-example value,
Dice from summed confusion counts, balanced accuracy from a summed confusion matrix...), so every resample is
one matrix product of the (resamples x subjects) draw counts with the per-subject sums; AUROC is a weighted
rank statistic (:class:`Auroc`). 2,000 resamples of 500 subjects for 6 metrics take a fraction of a second.
"""

from __future__ import annotations

import functools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from .errors import ValidationError

__all__ = [
    "MIN_SUBJECTS",
    "Auroc",
    "Pooled",
    "Statistic",
    "mean",
    "paired_bootstrap",
    "resample_counts",
    "subject_index",
]

#: fewer test subjects than this give no meaningful interval: say so, and decide as without one
MIN_SUBJECTS = 10
#: resamples evaluated at once (bounds the memory of an example-weighted statistic)
_CHUNK = 256


class Bound:
    """A statistic bound to the examples' subjects: called with (m, subjects) draw counts, its m values (NaN:
    undefined); :meth:`left_out` its value without each subject in turn (the jackknife BCa uses).
    """

    def __init__(self, evaluate: Callable[[np.ndarray], np.ndarray], subjects: int) -> None:
        self._evaluate, self.subjects = evaluate, subjects

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        return self._evaluate(counts)

    def left_out(self) -> np.ndarray:
        """Every subject left out once, a few at a time (never a subjects x subjects matrix at once)."""
        out = np.empty(self.subjects)
        for start in range(0, self.subjects, _CHUNK):
            rows = np.arange(start, min(start + _CHUNK, self.subjects))
            counts = np.ones((len(rows), self.subjects))
            counts[np.arange(len(rows)), rows] = 0
            out[rows] = self._evaluate(counts)
        return out


class Statistic(ABC):
    """A metric of a test set of ``n`` examples, each taken with a weight. Subclasses say how."""

    n: int

    @abstractmethod
    def bind(self, index: np.ndarray, subjects: int) -> Bound:
        """The metric of the test sets given by draw counts of the ``subjects`` (``index``: each example's)."""

    @abstractmethod
    def take(self, rows: np.ndarray) -> Statistic:
        """The same metric of the examples ``rows`` (a boolean mask): a subgroup."""


class Pooled(Statistic):
    """``fn`` of the weighted sums of per-example statistics ``stats`` (n, d); ``fn`` maps (m, d) to (m,)."""

    def __init__(self, stats: Any, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.stats = np.asarray(stats, np.float64).reshape(len(stats), -1)
        self.fn, self.n = fn, len(self.stats)
        if not np.isfinite(self.stats).all():
            raise ValidationError("a metric's per-example statistics hold a NaN or an infinite value")

    def bind(self, index: np.ndarray, subjects: int) -> Bound:
        per_subject = np.zeros((subjects, self.stats.shape[1]))
        np.add.at(per_subject, index, self.stats)
        return _PooledBound(self.fn, per_subject)

    def take(self, rows: np.ndarray) -> Pooled:
        return Pooled(self.stats[rows], self.fn)


class _PooledBound(Bound):
    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], per_subject: np.ndarray) -> None:
        self.fn, self.per_subject, self.subjects = fn, per_subject, len(per_subject)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        return self._sums(counts @ self.per_subject)

    def left_out(self) -> np.ndarray:
        return self._sums(self.per_subject.sum(axis=0) - self.per_subject)  # the totals without each subject

    def _sums(self, sums: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.fn(sums), np.float64)


def mean(values: Sequence[float] | np.ndarray) -> Pooled:
    """The mean of a per-example value; a NaN value leaves its example out (a class absent from it, say)."""
    values = np.asarray(values, np.float64).ravel()
    if np.isinf(values).any():
        raise ValidationError("a metric holds an infinite value")
    known = ~np.isnan(values)
    return Pooled(np.stack([np.where(known, values, 0.0), known], axis=1), lambda s: s[:, 0] / s[:, 1])


class Auroc(Statistic):
    """The area under the ROC curve (ties half), the mean over the columns of ``truth`` (n, k) and
    ``score`` (n, k) (one-vs-rest macro AUROC; a column with one kind of truth in a test set is left out).
    """

    def __init__(self, truth: Any, score: Any) -> None:
        self.truth = np.asarray(truth, bool).reshape(len(truth), -1)
        self.score = np.asarray(score, np.float64).reshape(self.truth.shape)
        self.n = len(self.truth)

    def take(self, rows: np.ndarray) -> Auroc:
        return Auroc(self.truth[rows], self.score[rows])

    def bind(self, index: np.ndarray, subjects: int) -> Bound:
        columns = []  # per class: each example's subject in score order, where each tie group starts, truth
        for c in range(self.truth.shape[1]):
            order = np.argsort(self.score[:, c], kind="mergesort")
            _, starts = np.unique(self.score[order, c], return_index=True)
            columns.append((index[order], starts, self.truth[order, c].astype(np.float32)))

        def evaluate(counts: np.ndarray) -> np.ndarray:
            counts = counts.astype(np.float32)
            out = np.empty(len(counts))
            for start in range(0, len(counts), _CHUNK):
                part = counts[start : start + _CHUNK]
                per_column = [_weighted_auc(part[:, where], starts, truth) for where, starts, truth in columns]
                with warnings.catch_warnings():  # a resample where no column is defined: NaN, quietly
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[start : start + _CHUNK] = np.nanmean(np.stack(per_column), axis=0)
            return out

        return Bound(evaluate, subjects)


def _weighted_auc(weights: np.ndarray, starts: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AUROC of examples sorted by score, weighted per row: each positive scores one per negative below it and
    a half per negative tied with it (``starts``: where each tie group begins; the groups are contiguous).
    """
    pos = np.add.reduceat(weights * truth, starts, axis=1)
    neg = np.add.reduceat(weights, starts, axis=1) - pos
    below = np.cumsum(neg, axis=1, dtype=np.float64) - neg  # negatives scored strictly lower
    credit = (pos * (below + 0.5 * neg)).sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return credit / (pos.sum(axis=1, dtype=np.float64) * neg.sum(axis=1, dtype=np.float64))


def subject_index(subjects: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Each example's subject as a position 0..S-1 (in order of first appearance), and S."""
    positions: dict[Any, int] = {}
    index = np.array([positions.setdefault(s, len(positions)) for s in subjects], np.intp)
    return index, len(positions)


def resample_counts(subjects: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, subjects) int32: how often each subject is drawn in each resample (each row sums to S)."""
    draws = rng.integers(0, subjects, size=(resamples, subjects))
    counts = np.zeros((resamples, subjects), np.int32)
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
    return counts


def paired_bootstrap(
    challenger: Mapping[str, Statistic | Sequence[float]],
    subjects: Sequence[Any],
    champion: Mapping[str, Statistic | Sequence[float]] | None = None,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    flag_level: float | None = None,
) -> dict[str, Any]:
    """Intervals of each metric over subject resamples, and of the challenger - champion difference for the
    metrics both have (the same draws for both: paired).

    ``method``: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated, the acceleration from leaving
    out one subject at a time). Percentile is the default: on clustered test sets of 15-200 patients it covered
    as well as or better than BCa in our simulations (the AUROC difference at 40 patients: 92.5% against 90%).
    ``flag_level`` adds ``flag_low`` / ``flag_high`` to each difference: its interval at that (higher) level,
    from the same draws (a Bonferroni-corrected test over several subgroups).

    ``challenger`` / ``champion``: metric -> a :class:`Statistic` of the examples, or one value per example
    (their :func:`mean`), in the order of ``subjects`` (the subject of each example). Returns ``{"subjects",
    "examples", "resamples", "level", "enough", "metrics": {name: {"value", "low", "high"}}, "champion": {...},
    "difference": {...}}``; ``enough`` is False below :data:`MIN_SUBJECTS` subjects (the intervals are then
    None, and the reason is in ``"note"``). A resample where a metric is undefined (AUROC without a positive,
    say) is left out of that metric's interval.
    """
    if not 0 < level < 1:
        raise ValidationError(f"level is a share between 0 and 1, not {level!r}")
    if flag_level is not None and not level <= flag_level < 1:
        raise ValidationError(f"flag_level is a share between level and 1, not {flag_level!r}")
    if method not in ("bca", "percentile"):
        raise ValidationError(f"method is 'bca' or 'percentile', not {method!r}")
    if not isinstance(resamples, int) or resamples < 100:
        raise ValidationError(f"resamples is a whole number of at least 100, not {resamples!r}")
    index, n_subjects = subject_index(subjects)
    n = len(index)
    ours = {k: _statistic(v, n, k) for k, v in challenger.items()}
    theirs = {k: _statistic(v, n, k) for k, v in (champion or {}).items()}
    out: dict[str, Any] = {
        "subjects": n_subjects,
        "examples": n,
        "resamples": resamples,
        "level": level,
        "method": method,
        "enough": n_subjects >= MIN_SUBJECTS,
        "metrics": {},
        "champion": {},
        "difference": {},
    }
    if not n_subjects:
        out["note"] = "no test examples"
        return out
    counts = None
    if out["enough"]:
        counts = resample_counts(n_subjects, resamples, np.random.default_rng(seed)).astype(np.float64)
    else:
        out["note"] = (
            f"{n_subjects} test subject(s): too few for a meaningful interval (at least {MIN_SUBJECTS}); "
            "the point estimates are shown without one"
        )
    ours_of = {k: _Draws.of(v.bind(index, n_subjects), n_subjects, counts) for k, v in ours.items()}
    theirs_of = {k: _Draws.of(v.bind(index, n_subjects), n_subjects, counts) for k, v in theirs.items()}
    for name, draws in ours_of.items():
        out["metrics"][name] = _interval(draws, level, method)
    for name, draws in theirs_of.items():
        out["champion"][name] = _interval(draws, level, method)
        if name in ours_of:
            diff = ours_of[name] - draws
            out["difference"][name] = _interval(diff, level, method)
            if flag_level is not None:
                wider = _interval(diff, flag_level, method)
                out["difference"][name].update(flag_low=wider["low"], flag_high=wider["high"], flag_level=flag_level)
    return out


@dataclass
class _Draws:
    """A metric's value on the whole test set, on every resample, and (for BCa's acceleration, on demand) on
    every leave-one-subject-out set: each computed once; the difference of two metrics is that of their draws.
    """

    value: float
    resampled: np.ndarray | None
    left_out: Callable[[], np.ndarray]

    @classmethod
    def of(cls, bound: Bound, n_subjects: int, counts: np.ndarray | None) -> _Draws:
        value = float(bound(np.ones((1, n_subjects)))[0])
        return cls(value, None if counts is None else bound(counts), functools.cache(bound.left_out))

    def __sub__(self, other: _Draws) -> _Draws:
        resampled = None if self.resampled is None or other.resampled is None else self.resampled - other.resampled
        return _Draws(self.value - other.value, resampled, lambda: self.left_out() - other.left_out())


def _statistic(values: Statistic | Sequence[float], n: int, name: str) -> Statistic:
    try:
        statistic = values if isinstance(values, Statistic) else mean(values)
    except ValidationError as e:
        raise ValidationError(f"metric {name!r}: {e}") from None
    if statistic.n != n:
        raise ValidationError(f"metric {name!r} has {statistic.n} values for {n} examples")
    return statistic


def _interval(draws: _Draws, level: float, method: str) -> dict[str, float | None]:
    """The metric of the whole test set, and its interval over the resamples (None without them)."""
    value = draws.value
    if not np.isfinite(value):
        return {"value": None, "low": None, "high": None}
    if draws.resampled is None:
        return {"value": value, "low": None, "high": None}
    values = draws.resampled[np.isfinite(draws.resampled)]  # a resample where the metric is undefined: left out
    if len(values) < 2:
        return {"value": value, "low": None, "high": None}
    tails = np.array([(1 - level) / 2, 1 - (1 - level) / 2])
    if method == "bca":
        tails = _bca_tails(values, value, draws, tails)
    low, high = np.percentile(values, 100 * tails)
    return {"value": value, "low": float(low), "high": float(high)}


def _bca_tails(values: np.ndarray, value: float, draws: _Draws, tails: np.ndarray) -> np.ndarray:
    """The percentiles BCa takes instead of ``tails`` (Efron 1987): the bias from the share of resamples
    below the estimate, the acceleration from the jackknife over subjects (each left out once).
    """
    below = (np.count_nonzero(values < value) + 0.5 * np.count_nonzero(values == value)) / len(values)
    if not 0 < below < 1:
        return tails  # every resample on one side: no correction can be estimated
    z0 = ndtri(below)
    leave_one_out = draws.left_out()
    leave_one_out = leave_one_out[np.isfinite(leave_one_out)]
    if len(leave_one_out) < 2:
        return tails
    spread = leave_one_out.mean() - leave_one_out
    denominator = 6 * float((spread**2).sum()) ** 1.5
    accel = float((spread**3).sum()) / denominator if denominator > 0 else 0.0
    z = ndtri(tails)
    return np.clip(ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z))), 0.0, 1.0)
