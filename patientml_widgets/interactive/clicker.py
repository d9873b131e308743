"""The standard simulated clicker, to score interactive engines without a person.

Each click goes to the centre of the largest error region: the pixel farthest from the region's edge,
in the missed part of the object (a positive click) or in the wrongly included part (a negative one),
whichever reaches farther (Xu et al. 2016; RITM's protocol). NoC@t is the number of clicks until the
Dice reaches ``t``, the cap (20) when it never does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .prompts import Prompts

__all__ = ["MAX_CLICKS", "Trial", "dice", "next_click", "noc", "simulate"]

MAX_CLICKS = 20


def dice(target: np.ndarray, predicted: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    t, p = np.asarray(target, bool), np.asarray(predicted, bool)
    total = int(t.sum()) + int(p.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(t, p).sum()) / total


def next_click(target: np.ndarray, predicted: np.ndarray) -> tuple[float, float, bool] | None:
    """(x, y, positive) at the centre of the largest error region; None when there is no error."""
    t, p = np.asarray(target, bool), np.asarray(predicted, bool)
    missed, extra = t & ~p, p & ~t
    best: tuple[float, float, bool] | None = None
    reach = 0.0
    for region, positive in ((missed, True), (extra, False)):
        if not region.any():
            continue
        # distance to the region's edge, the image border counting as an edge
        dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        if dist[r, c] > reach:
            reach, best = float(dist[r, c]), (float(c), float(r), positive)
    return best


@dataclass
class Trial:
    """One object clicked ``len(dices)`` times: the Dice after each click, and each click's seconds."""

    dices: list[float]
    seconds: list[float]

    def dice_after(self, clicks: int) -> float:
        """The Dice after ``clicks`` clicks (the last one reached if the trial stopped earlier)."""
        return self.dices[min(clicks, len(self.dices)) - 1]

    def noc(self, threshold: float, cap: int = MAX_CLICKS) -> int:
        return noc(self.dices, threshold, cap)


def noc(dices: list[float], threshold: float, cap: int = MAX_CLICKS) -> int:
    """Clicks until the Dice first reaches ``threshold``; ``cap`` when it never does."""
    for i, d in enumerate(dices[:cap]):
        if d >= threshold:
            return i + 1
    return cap


def simulate(
    propose: Callable[[Prompts], np.ndarray],
    target: np.ndarray,
    *,
    clicks: int = MAX_CLICKS,
    stop_at: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Trial:
    """Click ``clicks`` times (or until the Dice reaches ``stop_at``): ``propose(prompts)`` gives the
    probability map after each click; the mask is ``map >= 0.5``.
    """
    import time

    clock = clock or time.perf_counter
    target = np.asarray(target, bool)
    prompts = Prompts()
    predicted = np.zeros_like(target)
    dices: list[float] = []
    seconds: list[float] = []
    for _ in range(clicks):
        click = next_click(target, predicted)
        if click is None:  # perfect already: every further click keeps it
            dices.append(1.0)
            seconds.append(0.0)
            break
        prompts = prompts.with_click(*click)
        t0 = clock()
        predicted = np.asarray(propose(prompts)) >= 0.5
        seconds.append(clock() - t0)
        dices.append(dice(target, predicted))
        if stop_at is not None and dices[-1] >= stop_at:
            break
    return Trial(dices, seconds)
