"""Agreement between readers, and a consensus of their labels (numpy only).

Classes: Cohen's kappa for two readers, Fleiss' kappa for more, a majority vote per example.
Masks (class indices): Dice and IoU per reader pair, a per-pixel majority, and STAPLE (Warfield, Zou
and Wells 2004), which weighs each reader by the sensitivity and specificity it shows against the
others. Checked against scikit-learn and statsmodels in ``tests/test_agreement.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from .errors import ValidationError

__all__ = [
    "cohen_kappa",
    "fleiss_kappa",
    "majority_class",
    "majority_mask",
    "mask_agreement",
    "pairwise_mask_agreement",
    "staple",
]


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float:
    """Cohen's kappa of two readers' classes over the same examples (1: full agreement, 0: chance).

    Both readers always choosing one and the same class agree fully: 1.0 (scikit-learn says nan).
    """
    first, second = np.asarray(a), np.asarray(b)
    if first.shape != second.shape or first.ndim != 1 or not len(first):
        raise ValidationError("Cohen's kappa needs two readers' classes for the same examples")
    values, coded = np.unique(np.concatenate([first, second]), return_inverse=True)
    x, y = coded[: len(first)], coded[len(first) :]
    k = len(values)
    table = np.bincount(x * k + y, minlength=k * k).reshape(k, k).astype(np.float64)
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(0) * table.sum(1)).sum()) / n**2
    return 1.0 if expected == 1 else float((observed - expected) / (1 - expected))


def fleiss_kappa(ratings: np.ndarray) -> float:
    """Fleiss' kappa of (examples, readers) classes: every example read by the same number of readers."""
    ratings = np.asarray(ratings)
    if ratings.ndim != 2 or ratings.shape[1] < 2 or not len(ratings):
        raise ValidationError("Fleiss' kappa needs classes shaped (examples, readers), with 2 or more readers")
    _, coded = np.unique(ratings, return_inverse=True)
    coded = coded.reshape(ratings.shape)
    k = int(coded.max()) + 1
    counts = np.stack([(coded == c).sum(1) for c in range(k)], axis=1).astype(np.float64)  # (examples, classes)
    n, r = counts.shape[0], ratings.shape[1]
    p_class = counts.sum(0) / (n * r)
    p_example = ((counts * (counts - 1)).sum(1)) / (r * (r - 1))
    observed, expected = p_example.mean(), float((p_class**2).sum())
    return 1.0 if expected == 1 else float((observed - expected) / (1 - expected))


def majority_class(classes: Sequence[int]) -> int | None:
    """The class most readers chose; None on a tie (the example goes to adjudication)."""
    values, counts = np.unique(np.asarray(classes), return_counts=True)
    if not len(values):
        return None
    top = counts.max()
    return int(values[counts == top][0]) if (counts == top).sum() == 1 else None


def majority_mask(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel majority of readers' masks (class indices, one shape): ``(consensus, tied)``; a tied pixel
    takes the lowest of the tied classes (the background, where it is one of them) and is marked in ``tied``.
    """
    stack = _stack(masks)
    if len(stack) == 3:  # the common case, without counting: two that agree win
        a, b, c = stack
        ab, ac, bc = a == b, a == c, b == c
        out = np.where(ab | ac, a, np.where(bc, b, np.minimum(np.minimum(a, b), c)))
        return out.astype(np.uint8), ~(ab | ac | bc)
    counts = np.stack([(stack == v).sum(0) for v in range(int(stack.max()) + 1)])
    top = counts.max(0)
    return counts.argmax(0).astype(np.uint8), (counts == top).sum(0) > 1


def mask_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Dice and IoU of two masks (class indices 0-255) over the foreground classes either holds, as the mean
    over those classes; 1.0 when neither holds any.
    """
    return pairwise_mask_agreement([a, b])[(0, 1)]


def pairwise_mask_agreement(masks: Sequence[np.ndarray]) -> dict[tuple[int, int], dict[str, float]]:
    """:func:`mask_agreement` of every pair of readers (reader positions in ``masks``).

    Each reader's class counts and each class's pixels are found once, and shared by the pairs.
    """
    stack = _stack(masks)
    whole = stack.dtype.kind in "iub" or (
        stack.dtype.kind == "f" and bool(np.all(np.isfinite(stack) & (stack % 1 == 0)))
    )
    if not whole or (stack.size and (stack.min() < 0 or stack.max() > 255)):
        raise ValidationError("masks hold class indices 0-255")
    flat = stack.reshape(len(stack), -1).astype(np.uint8, copy=False)
    counts = [np.bincount(m, minlength=256) for m in flat]
    held = [set((np.flatnonzero(c[1:]) + 1).tolist()) for c in counts]
    where: dict[tuple[int, int], np.ndarray] = {}

    def pixels(reader: int, c: int) -> np.ndarray:
        if (reader, c) not in where:
            where[reader, c] = flat[reader] == c
        return where[reader, c]

    out = {}
    for i, j in combinations(range(len(stack)), 2):
        classes = sorted(held[i] | held[j])
        if not classes:
            out[i, j] = {"dice": 1.0, "iou": 1.0}
            continue
        dice, iou = [], []
        for c in classes:
            both = np.count_nonzero(pixels(i, c) & pixels(j, c)) if c in held[i] and c in held[j] else 0
            total = int(counts[i][c] + counts[j][c])
            dice.append(2 * both / total)
            iou.append(both / (total - both))
        out[i, j] = {"dice": float(np.mean(dice)), "iou": float(np.mean(iou))}
    return out


def staple(masks: Sequence[np.ndarray], *, iterations: int = 50, tolerance: float = 1e-6) -> np.ndarray:
    """STAPLE's probability (H, W) float32 that each pixel is foreground, from readers' binary masks.

    Expectation-maximisation of each reader's sensitivity p and specificity q (starting at 0.99) and of the
    true segmentation, with the prior the readers' mean foreground share; stops when no p or q moves by more
    than ``tolerance``. A consensus mask is ``staple(masks) >= 0.5``; for several classes run it per class.
    """
    d = _stack(masks).reshape(len(masks), -1) > 0
    prior = float(d.mean())
    if prior in (0.0, 1.0):
        return np.full(np.asarray(masks[0]).shape, prior, np.float32)
    p = np.full(len(d), 0.99)
    q = np.full(len(d), 0.99)
    on = d.astype(np.float32)  # (readers, pixels): the sums over readers are matrix products
    ones = on.sum(1).astype(np.float64)
    w = on.mean(0)
    for _ in range(iterations):
        # log P(votes | foreground) - log P(votes | background), per pixel
        weights = (np.log(p) - np.log1p(-q)) - (np.log1p(-p) - np.log(q))
        offset = np.log(prior) - np.log1p(-prior) + float((np.log1p(-p) - np.log(q)).sum())
        logit = on.T @ weights.astype(np.float32) + np.float32(offset)
        w = 1 / (1 + np.exp(-np.clip(logit, -60, 60)))
        total = float(w.sum())
        hits = (on @ w).astype(np.float64)  # per reader: foreground votes where the truth is foreground
        new_p = np.clip(hits / max(total, 1e-12), 1e-6, 1 - 1e-6)
        new_q = np.clip((len(w) - total - (ones - hits)) / max(len(w) - total, 1e-12), 1e-6, 1 - 1e-6)
        moved = max(np.abs(new_p - p).max(), np.abs(new_q - q).max())
        p, q = new_p, new_q
        if moved < tolerance:
            break
    return w.reshape(np.asarray(masks[0]).shape).astype(np.float32)


def _stack(masks: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(m) for m in masks]
    if len(arrays) < 2:
        raise ValidationError("agreement needs at least two readers' masks")
    if len({a.shape for a in arrays}) != 1:
        raise ValidationError(f"readers' masks differ in shape: {sorted({a.shape for a in arrays})}")
    return np.stack(arrays)
