"""Click guidance for the built-in U-Net (DeepGrow / RITM): clicks simulated from the labels, and clicks drawn
as the network's two extra inputs.

A guided training step picks, for about half of its samples, one object (a connected component of one class
above the background, :func:`~..interactive.clicker.objects`) and clicks it as a person would: the first
positive click near its centre (near the maximum of the distance to its edge, as the standard clicker does),
maybe a few more inside it, maybe a few negative ones beside it (in a band around it, often in a neighbouring
object there: where a proposal would leak);
on some steps one more click goes where the network's own proposal is most wrong (RITM's iterative training).
Half the time the object is drawn in proportion to its area, else uniformly: the large ones are what a person
clicks rather than paints and what a small network learns last (drawn uniformly only, the MRI slices' many specks
taught it that an object is the click's disk), the small ones need their share too (drawn by area only, small
nuclei were proposed worse). The other samples get no clicks and no object loss. Clicks are disks of
:func:`click_radius` working pixels (one radius for every image of a run: a share of the canvas), positive ones
in the first map, negative ones in the second; padding (``IGNORE``) never gets a click and never counts in the loss.

A proposal (:func:`proposal`, in training and prediction) is the object map, extended by the class head: where the
object map is not sure the pixel is outside (>= ``EXTEND_FLOOR``), a pixel the class head gives to the clicked
class (the class it sees under the positive clicks) counts with the class probability. The class head learns from
every pixel of every sample, so it knows how far a large object reaches; the object map knows where touching
objects of one class part, and what a negative click removed. Then only the parts connected to a positive click
are kept (:func:`keep_clicked`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from ..interactive.clicker import MIN_OBJECT_PIXELS, next_click, objects
from ..interactive.prompts import Prompts, Scribble
from .data import IGNORE

__all__ = [
    "GuidedBatch",
    "canvas_prompts",
    "click_maps",
    "click_radius",
    "keep_clicked",
    "object_loss",
    "proposal",
    "simulate",
]

GUIDED_SHARE = 0.5  # samples of a batch that are clicked
CORRECTION_SHARE = 0.25  # steps that add one click at the network's largest error (RITM)
EXTRA_POSITIVE = (0.5, 0.3, 0.2)  # chances of 0, 1, 2 more positive clicks after the first
NEGATIVE = (0.3, 0.3, 0.25, 0.15)  # chances of 0-3 negative clicks
NEIGHBOUR = 0.5  # a negative click's chance to go into a neighbouring object (when one is within reach)
CENTRE = 0.6  # the first click: a pixel at least this share of the object's greatest depth inside
BAND = 0.5  # negative clicks: within this share of the object's size (sqrt of its area) of it, at least 2 px off
AREA_SHARE = 0.5  # the object clicked: drawn in proportion to its area this often, else uniformly
EXTEND_FLOOR = 0.2  # proposal: the object map's least probability where the clicked class may extend the object


def click_radius(canvas: list[int] | tuple[int, int]) -> float:
    """The radius of a click's disk in working pixels: 1/50 of the canvas's shorter side, at least 3."""
    return max(3.0, min(int(canvas[0]), int(canvas[1])) / 50)


def click_maps(prompts: list[Prompts], shape: tuple[int, int], radius: float) -> torch.Tensor:
    """(B, 2, H, W) float32: each sample's positive clicks (and scribbles) as disks, then its negative ones."""
    seeds = np.stack([p.seed_map(shape, radius) for p in prompts])
    return torch.from_numpy(np.stack([seeds == 1, seeds == 2], axis=1).astype(np.float32))  # numpy: no thread pool


def canvas_prompts(prompts: Prompts, shape: tuple[int, int], size: tuple[int, int], radius: float) -> Prompts:
    """A person's prompts on an image of ``shape`` as clicks on the canvas, where the image occupies ``size``.

    Pixel centres map to pixel centres; a box without a positive prompt gets a positive click at its centre;
    scribbles become chains of clicks (the click's disk drawn along them).
    """
    if prompts.box is not None and not prompts.positives and not any(s.positive for s in prompts.scribbles):
        x0, y0, x1, y1 = prompts.box
        prompts = prompts.with_click((x0 + x1) / 2, (y0 + y1) / 2, True)
    sy, sx = size[0] / shape[0], size[1] / shape[1]
    moved = prompts.transformed(sy, sx, top=0.5 / sy - 0.5, left=0.5 / sx - 0.5)  # (x + 0.5) * s - 0.5
    return Prompts(moved.points, moved.box, tuple(Scribble(s.positive, s.points, 2 * radius) for s in moved.scribbles))


@dataclass
class GuidedBatch:
    """The clicks of each sample of a batch (none: not guided), its object, and which samples are guided."""

    prompts: list[Prompts]
    objects: np.ndarray  # (B, H, W) bool: the clicked object (all False where not guided)

    @property
    def guided(self) -> np.ndarray:
        return np.array([not p.empty for p in self.prompts], dtype=bool)

    def corrected(self, rows: np.ndarray, proposed: np.ndarray, valid: np.ndarray) -> GuidedBatch:
        """One more click for each sample of ``rows``: at the centre of the largest error of its ``proposed``
        object (boolean, one per row), as the standard clicker would place it (none where nothing is wrong).
        """
        prompts = list(self.prompts)
        for row, mask in zip(rows.tolist(), proposed):
            click = next_click(self.objects[row], mask & valid[row])
            if click is not None:
                prompts[row] = prompts[row].with_click(*click)
        return GuidedBatch(prompts, self.objects)


def simulate(targets: np.ndarray, rng: np.random.Generator, share: float = GUIDED_SHARE) -> GuidedBatch:
    """Clicks for a batch of label maps (B, H, W) of class positions, padding ``IGNORE``: each sample is
    clicked with chance ``share``, on one of its objects drawn at random (samples without one are not).
    """
    prompts, masks = [], np.zeros(targets.shape, dtype=bool)
    for i, target in enumerate(targets):
        clicked = _click_one(target, rng) if rng.random() < share else None
        if clicked is None:
            prompts.append(Prompts())
        else:
            prompts.append(clicked[0])
            masks[i] = clicked[1]
    return GuidedBatch(prompts, masks)


def _click_one(target: np.ndarray, rng: np.random.Generator) -> tuple[Prompts, np.ndarray] | None:
    """Clicks on one object of ``target`` drawn at random (None when it has none of MIN_OBJECT_PIXELS).

    Distances are taken in windows around the object (exact: no pixel outside is nearer), which keeps
    a step's clicks cheap when the objects are small.
    """
    found = objects(target, min_pixels=MIN_OBJECT_PIXELS)
    if not found:
        return None
    areas = np.array([float(m.sum()) for m in found])
    chances = AREA_SHARE * areas / areas.sum() + (1 - AREA_SHARE) / len(found)
    obj = found[int(rng.choice(len(found), p=chances / chances.sum()))]
    box = _window(obj, 0)
    depth = np.zeros(obj.shape)
    depth[box] = ndimage.distance_transform_edt(np.pad(obj[box], 1))[1:-1, 1:-1]  # the map's edge counts as one
    points = [(*_pick(depth >= CENTRE * depth.max(), rng), True)]
    inside = depth >= min(2.0, float(depth.max()))
    points += [(*_pick(inside, rng), True) for _ in range(rng.choice(len(EXTRA_POSITIVE), p=EXTRA_POSITIVE))]
    negatives = int(rng.choice(len(NEGATIVE), p=NEGATIVE))
    if negatives:
        reach = max(2.0, BAND * np.sqrt(obj.sum()))
        near = _window(obj, int(np.ceil(reach)) + 1)
        around = np.zeros(obj.shape, dtype=bool)  # within reach of the object, 2 px off it, never padding
        away = ndimage.distance_transform_edt(~obj[near])
        around[near] = (away >= 2) & (away <= reach) & (target[near] != IGNORE)
        neighbours = around & (target > 0)  # the part of another object a proposal would most likely take
        for _ in range(negatives):
            where = neighbours if neighbours.any() and rng.random() < NEIGHBOUR else around
            if where.any():
                points.append((*_pick(where, rng), False))
    return Prompts(tuple(points)), obj


def _window(obj: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The object's bounding box grown by ``margin`` pixels, inside the map."""
    rows, cols = np.nonzero(obj.any(axis=1))[0], np.nonzero(obj.any(axis=0))[0]
    h, w = obj.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)),
    )


def _pick(where: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """(x, y) of a pixel of ``where`` drawn at random."""
    rows, cols = np.nonzero(where)
    k = int(rng.integers(len(rows)))
    return float(cols[k]), float(rows[k])


def keep_clicked(inside: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The parts of a proposal (boolean (H, W)) that a positive click's disk (``positive``) touches: an object is
    connected, so a part apart from every positive click is another object; all of it when no click touches any.
    """
    components, _ = ndimage.label(inside)
    touched = np.unique(components[positive & inside])
    return np.isin(components, touched) if len(touched) else inside


def proposal(logits: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The probability (H, W) float32 of the clicked object from a guided network's logits (C + 1, H, W): the
    object map, raised to the clicked class's probability where it is at least ``EXTEND_FLOOR``, then cut to the
    parts a positive click's disk (``positive``) touches. The clicked class is the class head's (softmax) choice
    under the positive clicks; the background extends nothing.
    """
    logits = np.asarray(logits, np.float32)
    obj = 1 / (1 + np.exp(-np.clip(logits[-1], -60, 60)))
    classes = logits[:-1] - logits[:-1].max(axis=0)
    proba = np.exp(classes)
    proba /= proba.sum(axis=0)
    out = obj.astype(np.float32)
    if positive.any() and len(proba) > 1:
        clicked = int(proba[:, positive].mean(axis=1).argmax())
        if clicked > 0:
            reach = obj >= EXTEND_FLOOR
            out[reach] = np.maximum(obj[reach], proba[clicked][reach])
    inside = out >= 0.5
    out[inside & ~keep_clicked(inside, positive)] = 0  # parts apart from every positive click
    return out


def object_loss(logits: torch.Tensor, objects: torch.Tensor, valid: torch.Tensor, guided: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of the object logits (B, H, W) on the guided samples, padding left out (0 if none)."""
    if not bool(guided.any()):
        return logits.new_zeros(())
    z, t, v = logits[guided].float(), objects[guided].float(), valid[guided].float()
    bce = (F.binary_cross_entropy_with_logits(z, t, reduction="none") * v).sum() / v.sum().clamp_min(1.0)
    p = z.sigmoid() * v
    dice = (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + (t * v).sum((1, 2)) + 1)
    return bce + (1 - dice).mean()
