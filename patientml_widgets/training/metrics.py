"""Metrics from predictions, in numpy (no torch): what runs record and compare.

Classification: accuracy, balanced accuracy, macro F1, per-class precision and recall,
one-vs-rest AUROC (macro), confusion matrix. Multi-label: per-class and macro F1,
subset accuracy, macro AUROC. Segmentation: pixel accuracy, Dice and IoU per class and
their means over the foreground classes (class position 0 is the background). Volumes: the
same over every voxel (3-D, not slice by slice), and the 95th-percentile Hausdorff distance in
mm per class (:func:`hausdorff`). Verified against scikit-learn and a brute-force reference in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "OBJECTIVES",
    "OBJECTIVE_CHOICES",
    "auroc",
    "classification_metrics",
    "hausdorff",
    "multilabel_metrics",
    "segmentation_metrics",
    "segmentation_metrics_from_counts",
    "volume_metrics",
]

#: default objective metric per problem type (all of them: higher is better)
OBJECTIVES = {"classification": "balanced_accuracy", "segmentation": "dice_mean"}
#: metrics a run can be judged on (promotion rule, early stopping, search), per problem type
OBJECTIVE_CHOICES = {
    "classification": ("balanced_accuracy", "auroc", "accuracy", "f1_macro", "loss"),
    "multi-label classification": ("balanced_accuracy", "auroc", "subset_accuracy", "f1_macro", "loss"),
    "segmentation": ("dice_mean", "iou_mean", "pixel_accuracy", "loss"),
}


def auroc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve of binary labels (ties get half credit); None with one class only."""
    y_true = np.asarray(y_true).astype(bool)
    pos, neg = int(y_true.sum()), int((~y_true).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = np.asarray(score)[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y_true].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, loss: float | None = None) -> dict[str, Any]:
    """Single-label metrics. ``y_true``: class positions (n,); ``proba``: probabilities (n, k)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    precision, recall, f1 = _precision_recall_f1(cm)
    present = cm.sum(axis=1) > 0
    aucs = [auroc(y_true == c, proba[:, c]) for c in range(k)]
    valid = [a for a in aucs if a is not None]
    out: dict[str, Any] = {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1.mean()),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "auroc": float(np.mean(valid)) if valid else None,
        "confusion_matrix": cm.tolist(),
        "n": len(y_true),
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out


def multilabel_metrics(y_true: np.ndarray, proba: np.ndarray, loss: float | None = None) -> dict[str, Any]:
    """Multi-label metrics. ``y_true``: 0/1 matrix (n, k); ``proba``: per-class probabilities (n, k)."""
    y_true = np.asarray(y_true).astype(bool)
    proba = np.asarray(proba, dtype=np.float64)
    y_pred = proba >= 0.5
    tp = (y_true & y_pred).sum(axis=0).astype(np.float64)
    fp = (~y_true & y_pred).sum(axis=0)
    fn = (y_true & ~y_pred).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    aucs = [auroc(y_true[:, c], proba[:, c]) for c in range(proba.shape[1])]
    valid = [a for a in aucs if a is not None]
    out: dict[str, Any] = {
        "subset_accuracy": float((y_true == y_pred).all(axis=1).mean()) if len(y_true) else 0.0,
        "f1_macro": float(f1.mean()),
        "balanced_accuracy": float(
            np.mean(
                [
                    (recall[c] + ((~y_true[:, c] & ~y_pred[:, c]).sum() / max(1, (~y_true[:, c]).sum()))) / 2
                    for c in range(proba.shape[1])
                ]
            )
        ),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "auroc": float(np.mean(valid)) if valid else None,
        "n": len(y_true),
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out


def segmentation_metrics(y_true: np.ndarray, y_pred: np.ndarray, k: int, loss: float | None = None) -> dict[str, Any]:
    """Pixel metrics over a batch of masks of class positions (0 = background).

    Dice and IoU are computed over all pixels of the set (not averaged per image);
    a class absent from both truth and prediction counts as 1.0.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    out = segmentation_metrics_from_counts(cm, loss)
    out["n"] = int(np.asarray(y_true).shape[0]) if np.asarray(y_true).ndim == 3 else 1
    return out


def segmentation_metrics_from_counts(cm: np.ndarray, loss: float | None = None) -> dict[str, Any]:
    """The same metrics from a (k, k) confusion matrix of pixel counts (rows: truth)."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    tp = np.diag(cm)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
    fg = slice(1, None) if k > 1 else slice(None)
    out: dict[str, Any] = {
        "pixel_accuracy": float(tp.sum() / max(1.0, cm.sum())),
        "dice": dice.tolist(),
        "iou": iou.tolist(),
        "dice_mean": float(dice[fg].mean()),
        "iou_mean": float(iou[fg].mean()),
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out


# -- volumes ---------------------------------------------------------------------------------


def _surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` with a 6-neighbour outside it (the array's border counts as outside)."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def hausdorff(
    truth: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...] | list[float], percentile: float = 95.0
) -> float:
    """The ``percentile``-th percentile of the symmetric surface distances between two binary masks, in mm.

    The surface of a mask is its voxels with a 6-neighbour outside it; the distances are those from
    every surface voxel of each mask to the nearest surface voxel of the other (Euclidean, with the
    voxel ``spacing`` in mm per axis), pooled (both directions together), as MedPy's ``hd95``.
    ``percentile=100`` is the Hausdorff distance. Edge cases:

    - both masks empty: 0.0 (they agree; as Dice counts it 1.0);
    - one empty, the other not: the length of the array's diagonal in mm, the largest distance two of
      its voxels can have (a missed or invented structure costs the most, and means stay finite).

    Surfaces are found inside the bounding box of both masks (plus a voxel of margin), distances with
    k-d trees: exact, and a few seconds for a body-sized structure of a 512 x 512 x 300 CT.
    """
    from scipy.spatial import cKDTree

    t, p = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"the masks differ in shape: {t.shape} and {p.shape}")
    sampling = np.asarray(spacing, dtype=np.float64)
    if sampling.shape != (t.ndim,):
        raise ValueError(f"spacing has {sampling.size} values for {t.ndim}-D masks")
    has_t, has_p = bool(t.any()), bool(p.any())
    if not has_t and not has_p:
        return 0.0
    if not has_t or not has_p:
        return float(np.sqrt((((np.asarray(t.shape) - 1) * sampling) ** 2).sum()))
    both = t | p
    box = []
    for axis in range(t.ndim):
        other = tuple(a for a in range(t.ndim) if a != axis)
        idx = np.flatnonzero(both.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    # a voxel of background all round: the array's border counts as outside, as in the whole array
    st, sp = _surface(np.pad(t[tuple(box)], 1)), _surface(np.pad(p[tuple(box)], 1))
    a, b = np.argwhere(st) * sampling, np.argwhere(sp) * sampling
    # the nearest surface voxel of the other mask: a k-d tree over the surfaces (exact, as a distance
    # transform of the box, and ~10x faster on a body-sized structure of a CT)
    to_t, _ = cKDTree(a).query(b)
    to_p, _ = cKDTree(b).query(a)
    return float(np.percentile(np.concatenate([to_t, to_p]), percentile))


def volume_metrics(
    truths: list[np.ndarray],
    preds: list[np.ndarray],
    spacings: list[tuple[float, ...] | list[float]],
    k: int,
    loss: float | None = None,
) -> dict[str, Any]:
    """Metrics of predicted label volumes (class positions, 0 = background) against the truth.

    ``dice``, ``iou``, their means over the foreground classes and ``pixel_accuracy`` (of voxels) come
    from the confusion matrix of every voxel of every volume (3-D, as the 2-D metrics pool pixels);
    ``hd95`` per class is the mean over the volumes of :func:`hausdorff` (mm, each volume with its
    own spacing; see there for absent classes), None for the background, ``hd95_mean`` its mean over
    the foreground classes.
    ``dice_per_volume`` / ``hd95_per_volume``: each volume's foreground mean Dice / HD95, in order.
    """
    counts = np.zeros(k * k, dtype=np.int64)
    first = 1 if k > 1 else 0  # the background's distance is not measured (its surface is the others')
    hd = np.zeros((len(truths), k), dtype=np.float64)
    per_volume = []
    for i, (t, p, spacing) in enumerate(zip(truths, preds, spacings, strict=True)):
        t, p = np.asarray(t), np.asarray(p)
        cm = np.zeros(k * k, dtype=np.int64)
        for start in range(0, len(t), 16):  # a few slices at a time: a CT's int64 copies would be GBs
            part = t[start : start + 16].astype(np.int64) * k + p[start : start + 16]
            cm += np.bincount(part.ravel(), minlength=k * k)
        counts += cm
        per_volume.append(segmentation_metrics_from_counts(cm.reshape(k, k))["dice_mean"])
        for c in range(first, k):
            hd[i, c] = hausdorff(t == c, p == c, spacing)
    out = segmentation_metrics_from_counts(counts.reshape(k, k), loss)
    hd95 = hd.mean(axis=0) if len(truths) else np.zeros(k)
    out["hd95"] = [None if c < first else round(float(v), 4) for c, v in enumerate(hd95)]
    out["hd95_mean"] = float(hd95[first:].mean())
    out["dice_per_volume"] = [float(v) for v in per_volume]
    out["hd95_per_volume"] = [float(v) for v in hd[:, first:].mean(axis=1)] if k > first else []
    out["n"] = len(truths)
    return out
