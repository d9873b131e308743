"""Metrics from predictions, in numpy (no torch): what runs record and compare.

Classification: accuracy, balanced accuracy, macro F1, per-class precision and recall,
one-vs-rest AUROC (macro), confusion matrix. Multi-label: per-class and macro F1,
subset accuracy, macro AUROC. Segmentation: pixel accuracy, Dice and IoU per class and
their means over the foreground classes (class position 0 is the background).
Verified against scikit-learn in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "OBJECTIVES",
    "OBJECTIVE_CHOICES",
    "auroc",
    "classification_metrics",
    "multilabel_metrics",
    "segmentation_metrics",
    "segmentation_metrics_from_counts",
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
