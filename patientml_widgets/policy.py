"""The rules that decide about runs: may a snapshot train, is a retrain due, does a run beat the champion."""

from __future__ import annotations

from typing import Any

from .errors import ValidationError

__all__ = ["RULES", "check_precision", "check_trainable", "new_labels_since_last_run", "promotion_decision"]


#: how a run is judged against the champion: the point estimates with a margin, or the interval of the
#: paired difference (its lower bound above the margin, or above minus the margin)
RULES = ("margin", "superiority", "non-inferiority")


def promotion_decision(
    objective: str,
    direction: str,
    min_margin: float,
    challenger: float | None,
    champion: float | None,
    *,
    rule: str = "margin",
    evaluation: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """``("approve" | "reject", reason)`` by the model's explicit rule.

    ``rule``: ``"margin"`` (the challenger's test objective beats the champion's by at least ``min_margin``),
    ``"superiority"`` (the paired 95% interval of the improvement lies above ``min_margin``) or
    ``"non-inferiority"`` (it lies above ``-min_margin``). Without a meaningful interval (too few test
    subjects) the interval rules fall back to the margin rule and say so. A subgroup where the challenger is
    worse beyond its interval (``evaluation["subgroups"]``) rejects the run under every rule.
    """
    if challenger is None:
        return "reject", f"the run has no test {objective} (is the test split empty?)"
    evaluation = evaluation or {}
    overall = (evaluation.get("metrics") or {}).get(objective)
    if champion is None:
        return "approve", f"first run: no champion to beat (test {objective} {_quote(overall, challenger, '.4f')})"
    sign = 1 if direction == "max" else -1
    better = sign * (challenger - champion)
    comparison = f"test {objective} {challenger:.4f} vs champion {champion:.4f}, margin {min_margin:g}"
    flagged = [g for g in evaluation.get("subgroups") or [] if g.get("flag")]
    worse = "; ".join(
        f"{g['field']} {g['group']}: difference {_quote(g.get('difference'), None, '+.4f')}" for g in flagged
    )
    if rule != "margin":
        diff = (evaluation.get("difference") or {}).get(objective) or {}
        low, high = diff.get("low"), diff.get("high")
        if low is None or high is None:
            note = evaluation.get("note") or "no interval of the difference"
            decision, reason = promotion_decision(objective, direction, min_margin, challenger, champion)
            reason = f"{note}; decided by the margin rule instead of {rule}: {reason}"
        else:
            bound = low if sign > 0 else -high  # the improvement's lower bound
            needed = min_margin if rule == "superiority" else -min_margin
            quoted = f"difference {_quote(diff, None, '+.4f')}, {rule} margin {min_margin:g}"
            if bound > needed:
                decision, reason = "approve", f"{rule} shown on test {objective}: {quoted}"
            else:
                decision, reason = "reject", f"{rule} not shown on test {objective}: {quoted}"
    elif better >= min_margin and better > 0:
        decision, reason = "approve", f"better than the champion: {comparison}"
    else:
        decision, reason = "reject", f"not better than the champion by the margin: {comparison}"
    if flagged and decision == "approve":
        return "reject", f"{reason}; but worse than the champion beyond the interval in {worse}"
    if flagged:
        return decision, f"{reason}; worse beyond the interval in {worse}"
    return decision, reason


def _quote(interval: dict[str, Any] | None, value: float | None, fmt: str) -> str:
    """A value with its 95% interval where there is one."""
    interval = interval or {}
    value = interval.get("value", value)
    if value is None:
        return "-"
    low, high = interval.get("low"), interval.get("high")
    text = format(value, fmt)
    return text if low is None or high is None else f"{text}, 95% CI {format(low, fmt)} to {format(high, fmt)}"


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
