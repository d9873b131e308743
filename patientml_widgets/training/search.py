"""Hyperparameter search spaces: validation and (seeded, random) sampling. No torch here."""

from __future__ import annotations

import math
import random
from typing import Any

from ..errors import ValidationError

__all__ = ["sample_trials", "validate_space"]


def validate_space(space: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check a search space and return it normalized.

    Each entry is one of::

        {"type": "categorical", "choices": [...]}
        {"type": "float", "low": a, "high": b, "log": False}
        {"type": "int", "low": a, "high": b, "log": False}
    """
    if not isinstance(space, dict):
        raise ValidationError("a search space is a dict of hyperparameter name -> distribution")
    out = {}
    for name, dist in space.items():
        if not isinstance(dist, dict) or dist.get("type") not in ("categorical", "float", "int"):
            raise ValidationError(f"search space entry {name!r} needs type categorical, float or int")
        kind = dist["type"]
        if kind == "categorical":
            choices = dist.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValidationError(f"search space entry {name!r} needs a non-empty list of choices")
            out[name] = {"type": kind, "choices": list(choices)}
            continue
        try:
            low, high = float(dist["low"]), float(dist["high"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"search space entry {name!r} needs numeric low and high") from None
        log = bool(dist.get("log", False))
        if not low <= high or (log and low <= 0):
            raise ValidationError(f"search space entry {name!r}: need low <= high (and low > 0 on a log scale)")
        if kind == "int":
            low, high = int(low), int(high)
        out[name] = {"type": kind, "low": low, "high": high, "log": log}
    return out


def sample_trials(space: dict[str, Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` random draws from the space (the same ones for the same seed)."""
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        trial = {}
        for name, dist in sorted(space.items()):
            if dist["type"] == "categorical":
                trial[name] = rng.choice(dist["choices"])
                continue
            low, high = dist["low"], dist["high"]
            value = math.exp(rng.uniform(math.log(low), math.log(high))) if dist["log"] else rng.uniform(low, high)
            trial[name] = round(value) if dist["type"] == "int" else value
        trials.append(trial)
    return trials
