"""The standard simulated clicker, to score interactive engines without a person.

Each click goes to the centre of the largest error region: the pixel farthest from the region's edge,
in the missed part of the object (a positive click) or in the wrongly included part (a negative one),
whichever reaches farther (Xu et al. 2016; RITM's protocol). NoC@t is the number of clicks until the
Dice reaches ``t``, the cap (20) when it never does. :func:`click_scores` scores an engine on the objects of
labelled images (each connected component of each class above the background, :func:`objects`), several
objects clicked in lockstep (:func:`simulate_many`) so that a network proposes for all of them in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .prompts import Prompts

__all__ = [
    "MAX_CLICKS",
    "MIN_OBJECT_PIXELS",
    "Trial",
    "click_scores",
    "dice",
    "next_click",
    "noc",
    "objects",
    "simulate",
    "simulate_many",
]

MAX_CLICKS = 20
MIN_OBJECT_PIXELS = 10  # a smaller connected component is a speck, not an object to click
PER_IMAGE, MAX_OBJECTS = 8, 50  # click_scores: the largest objects of each image, and of all images
LOCKSTEP = 32  # click_scores: objects clicked together (one call of the engine per round of clicks)
DICE_AFTER = (1, 3, 5)  # click_scores: the mean Dice after this many clicks
NOC_AT = (0.85, 0.90)  # click_scores: the mean number of clicks to reach this Dice


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
    min_clicks: int = 1,
    clock: Callable[[], float] | None = None,
) -> Trial:
    """Click ``clicks`` times (or until the Dice reaches ``stop_at``, after at least ``min_clicks`` clicks):
    ``propose(prompts)`` gives the probability map after each click; the mask is ``map >= 0.5``.
    """

    def one_by_one(rows: list[int], prompts: list[Prompts]) -> list[np.ndarray]:
        return [propose(p) for p in prompts]

    return simulate_many(one_by_one, [target], clicks=clicks, stop_at=stop_at, min_clicks=min_clicks, clock=clock)[0]


def simulate_many(
    propose: Callable[[list[int], list[Prompts]], list[np.ndarray]],
    targets: list[np.ndarray],
    *,
    clicks: int = MAX_CLICKS,
    stop_at: float | None = None,
    min_clicks: int = 1,
    clock: Callable[[], float] | None = None,
) -> list[Trial]:
    """:func:`simulate` for several objects in lockstep: in each round of clicks, ``propose(rows, prompts)``
    gives the maps of the objects still clicked (``rows``: their positions in ``targets``) in one call.
    A trial's seconds are its share of each call.
    """
    import time

    clock = clock or time.perf_counter
    masks = [np.asarray(t, bool) for t in targets]
    prompts = [Prompts() for _ in masks]
    predicted = [np.zeros_like(m) for m in masks]
    trials = [Trial([], []) for _ in masks]
    going = list(range(len(masks)))
    for _ in range(clicks):
        asked = []
        for i in going:
            click = next_click(masks[i], predicted[i])
            if click is None:  # perfect already: every further click keeps it
                trials[i].dices.append(1.0)
                trials[i].seconds.append(0.0)
            else:
                prompts[i] = prompts[i].with_click(*click)
                asked.append(i)
        if not asked:
            break
        t0 = clock()
        maps = propose(asked, [prompts[i] for i in asked])
        share = (clock() - t0) / len(asked)
        going = []
        for i, proba in zip(asked, maps, strict=True):
            predicted[i] = np.asarray(proba) >= 0.5
            trials[i].seconds.append(share)
            trials[i].dices.append(dice(masks[i], predicted[i]))
            if stop_at is None or trials[i].dices[-1] < stop_at or len(trials[i].dices) < min_clicks:
                going.append(i)
    return trials


def objects(mask: np.ndarray, *, min_pixels: int = MIN_OBJECT_PIXELS, largest: int | None = None) -> list[np.ndarray]:
    """The objects of a label map of class positions: boolean masks of each connected component (4-connected)
    of each class above 0, of at least ``min_pixels`` pixels, largest first (the ``largest`` first only).
    Negative values (padding) are never part of one.
    """
    mask = np.asarray(mask).astype(np.int64, copy=False)
    found: list[tuple[int, int, int, np.ndarray]] = []
    for c in np.flatnonzero(np.bincount(np.clip(mask, 0, None).ravel())[1:]) + 1:
        components, n = ndimage.label(mask == c)
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        found += [(-int(sizes[k]), int(c), k, components) for k in range(1, n + 1) if sizes[k] >= min_pixels]
    found.sort(key=lambda f: f[:3])
    return [components == k for _, _, k, components in found[:largest]]


def click_scores(
    propose: Callable[[list[tuple[int, Prompts]]], list[np.ndarray]],
    masks: list[np.ndarray],
    *,
    per_image: int = PER_IMAGE,
    limit: int = MAX_OBJECTS,
) -> dict[str, float]:
    """An engine's interactive scores on labelled images, clicked by the standard clicker on the objects of
    their ``masks`` (class positions): the largest ``per_image`` of each image, taken in turns (every image's
    largest first) up to ``limit`` in all, each until its Dice reaches 0.9 (at least 5 clicks).
    ``propose([(image number, prompts), ...])`` gives the probability maps of several objects at once.

    Returns the mean Dice after 1, 3 and 5 clicks (``click_dice_1`` ...), the mean NoC@85 and NoC@90
    (``noc_85``, ``noc_90``; lower is better) and the objects clicked (``click_objects``); {} without objects.
    """
    counts = [len(objects(m, largest=per_image)) for m in masks]
    turns = [(i, rank) for rank in range(per_image) for i, n in enumerate(counts) if rank < n][:limit]
    trials: list[Trial] = []
    pending: list[tuple[int, np.ndarray]] = []  # (image number, object): a few images' objects in memory

    def click_pending() -> None:
        def on_images(rows: list[int], prompts: list[Prompts]) -> list[np.ndarray]:
            return propose([(pending[r][0], p) for r, p in zip(rows, prompts, strict=True)])

        targets = [obj for _, obj in pending]
        trials.extend(simulate_many(on_images, targets, stop_at=max(NOC_AT), min_clicks=max(DICE_AFTER)))
        pending.clear()

    for i, mask in enumerate(masks):
        ranks = sorted(r for j, r in turns if j == i)
        if ranks:
            found = objects(mask, largest=per_image)
            pending += [(i, found[r]) for r in ranks]
        if len(pending) >= LOCKSTEP or (pending and i == len(masks) - 1):
            click_pending()
    if not trials:
        return {}
    scores = {f"click_dice_{k}": float(np.mean([t.dice_after(k) for t in trials])) for k in DICE_AFTER}
    scores |= {f"noc_{round(100 * t)}": float(np.mean([trial.noc(t) for trial in trials])) for t in NOC_AT}
    return scores | {"click_objects": len(trials)}
