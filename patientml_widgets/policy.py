"""The rules that decide about runs: may a snapshot train, is a retrain due, does a run beat the champion."""

from __future__ import annotations

from typing import Any

from .errors import ValidationError

__all__ = ["check_precision", "check_trainable", "new_labels_since_last_run", "promotion_decision"]


def promotion_decision(
    objective: str, direction: str, min_margin: float, challenger: float | None, champion: float | None
) -> tuple[str, str]:
    """``("approve" | "reject", reason)`` by the model's explicit rule."""
    if challenger is None:
        return "reject", f"the run has no test {objective} (is the test split empty?)"
    if champion is None:
        return "approve", f"first run: no champion to beat (test {objective} {challenger:.4f})"
    better = challenger - champion if direction == "max" else champion - challenger
    comparison = f"test {objective} {challenger:.4f} vs champion {champion:.4f}, margin {min_margin:g}"
    if better >= min_margin and better > 0:
        return "approve", f"better than the champion: {comparison}"
    return "reject", f"not better than the champion by the margin: {comparison}"


def check_trainable(snapshot: dict[str, list]) -> None:
    """Refuse a run whose snapshot has nothing to train or validate on, saying what to do."""
    if not snapshot.get("train"):
        raise ValidationError("there are no submitted labels in the train split yet; submit some labels first")
    if not snapshot.get("val"):
        raise ValidationError("the validation split has no submitted labels yet; label more patients' images")


def check_volume_model(problem_type: str, volumes: int, images: int) -> None:
    """Refuse a run whose labeled examples mix volumes and 2-D images (``problem_type``: either kind).

    Volumes train 2.5-D (each slice with its neighbours as channels, normalised per volume, at a pixel
    size in mm); 2-D images have no neighbours nor spacing, so one network for both would be trained
    on two different inputs: keep them in two models.
    """
    if volumes and images:
        raise ValidationError(
            f"{volumes} of the labeled examples are volumes and {images} are 2-D images; a model trains on one "
            "kind (volumes slice by slice with their neighbouring slices, 2-D images alone): keep volumes in a "
            "model of their own, or delete the labels of one kind"
        )


def check_precision(model: dict[str, Any], hyperparameters: dict[str, Any] | None) -> None:
    """Refuse, before a run is recorded, a precision this machine cannot train in (fp16 without CUDA)."""
    from .training import hardware

    configured = (model.get("training") or {}).get("hyperparameters") or {}
    precision = {**configured, **(hyperparameters or {})}.get("precision", "auto")
    try:
        hardware.detect(str(precision))
    except ValueError as e:
        raise ValidationError(str(e)) from None


def new_labels_since_last_run(runs: list[dict[str, Any]], snapshot: dict[str, list]) -> int | None:
    """How many submitted labels the last run did not see; None while a run is queued or running."""
    if any(r["status"] in ("queued", "running") for r in runs):
        return None
    used = {tuple(item) for r in runs[-1:] for items in r["snapshot"].values() for item in items}
    return sum(1 for items in snapshot.values() for item in items if tuple(item) not in used)
