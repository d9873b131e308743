"""Several readers per example: the reading plan of a model, who reads what, and the consensus of their labels.

A model's ``reading`` config asks for ``readers`` labels per example (1: one label, as without a config).
With two or more, each assigned reader's label is a *reading* of its own (its own versions and audit
events), and the example's label - the one training uses - is their consensus, or what a reviewer
adjudicated. Pure functions over records and arrays; the session layer stores what they decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from . import agreement
from .errors import ValidationError
from .records import clean_name

__all__ = [
    "ASSIGNMENTS",
    "CONSENSUS",
    "DEFAULTS",
    "QUEUE_STATES",
    "TRAIN_ON",
    "consensus_classes",
    "consensus_mask",
    "example_agreement",
    "plan",
    "queue_state",
    "round_robin",
]

ASSIGNMENTS = ("round_robin", "list")
CONSENSUS = ("majority", "staple")
#: what trains: the example's label whatever made it, only what a reviewer adjudicated, or only accepted labels
TRAIN_ON = ("consensus", "adjudicated", "reviewed")
DEFAULTS: dict[str, Any] = {
    "readers": 1,
    "assign": "round_robin",
    "pool": [],
    "blind": True,
    "consensus": "majority",
    "train_on": "consensus",
}
#: where an example stands in one reader's queue
QUEUE_STATES = ("to do", "draft", "returned", "submitted", "accepted")
MAX_READERS = 16


def plan(current: dict[str, Any] | None, updates: dict[str, Any]) -> dict[str, Any]:
    """The reading config ``current`` becomes with ``updates`` (None = unchanged), checked."""
    config = {**DEFAULTS, **(current or {})}
    unknown = sorted(set(updates) - set(DEFAULTS))
    if unknown:
        raise ValidationError(f"unknown reading setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    config.update({k: v for k, v in updates.items() if v is not None})
    readers = config["readers"]
    if not isinstance(readers, int) or isinstance(readers, bool) or not 1 <= readers <= MAX_READERS:
        raise ValidationError(f"readers is a whole number from 1 to {MAX_READERS}, not {readers!r}")
    for name, allowed in (("assign", ASSIGNMENTS), ("consensus", CONSENSUS), ("train_on", TRAIN_ON)):
        if config[name] not in allowed:
            raise ValidationError(f"{name} is one of {list(allowed)}, not {config[name]!r}")
    if config["train_on"] == "adjudicated" and readers == 1:
        raise ValidationError("train_on='adjudicated' needs several readers per example (readers >= 2)")
    if not isinstance(config["blind"], bool):
        raise ValidationError(f"blind is True or False, not {config['blind']!r}")
    pool = config["pool"]
    if isinstance(pool, str) or not isinstance(pool, Sequence):
        raise ValidationError(f"pool is a list of user names, not {pool!r}")
    pool = [clean_name(p, "reader") for p in pool]
    if len(set(pool)) != len(pool):
        raise ValidationError(f"pool names a reader twice: {pool}")
    config["pool"] = pool
    if config["assign"] == "round_robin" and readers > 1 and len(pool) < readers:
        raise ValidationError(
            f"round-robin assignment of {readers} readers per example needs a pool of at least {readers} "
            f"readers (pool={pool})"
        )
    return config


def round_robin(position: int, pool: Sequence[str], readers: int) -> list[str]:
    """The readers of the example at ``position`` (0, 1, ...): ``readers`` consecutive pool members, each
    example starting where the last one ended, so every reader gets the same share.
    """
    if not pool:
        return []
    start = position * readers
    return [pool[(start + j) % len(pool)] for j in range(min(readers, len(pool)))]


def consensus_classes(readings: Sequence[Sequence[int]], multi_label: bool) -> list[int] | None:
    """The classes most readers chose (multi-label: each class more than half the readers chose); None on a tie."""
    if multi_label:
        counts: dict[int, int] = {}
        for chosen in readings:
            for c in set(chosen):
                counts[c] = counts.get(c, 0) + 1
        return sorted(c for c, n in counts.items() if 2 * n > len(readings))
    if any(len(chosen) != 1 for chosen in readings):
        raise ValidationError("a single-label reading holds one class")
    winner = agreement.majority_class([chosen[0] for chosen in readings])
    return None if winner is None else [winner]


def consensus_mask(masks: Sequence[np.ndarray], method: str) -> np.ndarray:
    """The readers' masks (class indices) merged: the per-pixel majority (ties to the lowest class, the
    background where it is tied), or STAPLE per foreground class (a pixel takes the most probable class at
    or above 0.5, else the background).
    """
    if method == "majority":
        return agreement.majority_mask(masks)[0]
    stack = np.stack([np.asarray(m) for m in masks])
    out = np.zeros(stack.shape[1:], np.uint8)
    best = np.full(stack.shape[1:], 0.5, np.float32)
    for c in np.unique(stack).tolist():
        if c == 0:
            continue
        p = agreement.staple(list(stack == c))
        take = p >= best
        out[take], best[take] = c, p[take]
    return out


def example_agreement(contents: Sequence[Any]) -> dict[str, Any]:
    """How well one example's readers agree: the mean over reader pairs of Dice (masks) or of agreeing
    (class sets equal), and each pair's figures (by position).
    """
    if len(contents) < 2:
        return {"mean": 1.0, "pairs": {}}
    if isinstance(contents[0], np.ndarray):
        pairs = {f"{i}-{j}": v for (i, j), v in agreement.pairwise_mask_agreement(contents).items()}
        mean = float(np.mean([v["dice"] for v in pairs.values()]))
    else:
        pairs = {
            f"{i}-{j}": {"agree": float(sorted(contents[i]) == sorted(contents[j]))}
            for i, j in combinations(range(len(contents)), 2)
        }
        mean = float(np.mean([v["agree"] for v in pairs.values()]))
    return {"mean": mean, "pairs": pairs}


def queue_state(reading: dict[str, Any] | None) -> str:
    """Where a reading stands for its reader (one of ``QUEUE_STATES``)."""
    if reading is None or reading["status"] in ("assigned", "deleted"):
        return "to do"
    verdict = reading.get("review")
    review = verdict.get("state") if isinstance(verdict, dict) else None
    if reading["status"] == "draft":
        return "returned" if review == "returned" else "draft"
    if reading["status"] != "submitted":
        raise ValueError(f"a reading's status is assigned, draft, submitted or deleted, not {reading['status']!r}")
    return "accepted" if review == "accepted" else "submitted"
