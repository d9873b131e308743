"""The classical engine: scikit-image's random walker (Grady 2006) seeded by the prompts.

It needs no model and no torch: the edges and intensities of the image as the user sees it (its values
through the display window) decide where the object ends. To answer a click within about 150 ms on two
cores at any image size, it works on a region around the prompts brought down to at most ``work_size``
pixels a side: a coarse walk over a wide search region finds how far the object reaches, a finer one
over that reach draws it, and the probabilities go back at full size into a map of zeros.

Seeds: positive clicks and scribbles are the object; negative ones, the sides of the region that lie
inside the image (the object is taken to end within it) and everything outside a box are background.
A box without a positive prompt seeds a small disk at its centre.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker
from skimage.transform import resize

from .engine import Engine
from .prompts import Prompts

__all__ = ["ClassicalEngine"]

Region = tuple[int, int, int, int]  # rows r0:r1, columns c0:c1 of the image

OBJECT, BACKGROUND = 1, 2  # the random walker's seed labels
NEGATIVE = 3  # background the user marked: the walk sees BACKGROUND, the value models tell the two apart

CLICK_RADIUS = 1.5  # working pixels: a click seeds a small disk, a couple of pixels across
SMOOTH = 1.0  # working pixels: the Gaussian that keeps noise from reading as edges
LIKENESS_SPREAD = 0.05  # the least spread (of [0, 1] values) of the object's and background's value models
COARSE_SIZE = 96  # the coarse walk's longest side
MIN_MARGIN = 24.0  # image pixels the search region reaches past the positive prompts: at least this,
SEARCH_SHARE = 0.25  # this share of the image's long side,
SPREAD_MARGIN = 1.0  # and this many times the spread of the positive prompts
FINE_MIN_MARGIN = 4.0  # image pixels around the coarse object for the fine walk, plus
FINE_MARGIN = 0.25  # this share of its size
BOX_MARGIN = 0.1  # a box's region: the box and a background ring of this share of its size (2 pixels more)
BOX_CENTRE = 0.15  # a box without a positive prompt: a disk at its centre, this share of its short side


class ClassicalEngine(Engine):
    """Edge- and intensity-aware regions from clicks, a box and scribbles; any image, no model.

    ``beta`` is scikit-image's random-walker edge penalty on the region's windowed values scaled to
    [0, 1] (higher: boundaries stop the object sooner); ``work_size`` the longest side the fine walk
    brings its region down to (its cost grows with the cube of it).
    """

    name = "classical"
    label = "Classical (edges + intensity)"

    def __init__(self, *, beta: float = 1000.0, work_size: int = 128) -> None:
        self.beta = float(beta)
        self.work_size = int(work_size)

    def propose(self, image: np.ndarray, prompts: Prompts, *, window: dict[str, Any] | None = None) -> np.ndarray:
        """The probability that each pixel belongs to the prompted object: float32 (H, W) in [0, 1]."""
        image = np.asarray(image)
        shape = (int(image.shape[0]), int(image.shape[1]))
        out = np.zeros(shape, np.float32)
        if not _has_object(prompts):  # nothing says where the object is: no prompt, or only negative ones
            return out
        if prompts.box is not None:
            region = _box_region(prompts.box, shape)
        else:
            coarse = _Walk(image, prompts, window, _search_region(prompts, shape), COARSE_SIZE, self.beta)
            region = _object_region(coarse, shape)
        r0, r1, c0, c1 = region
        size = (r1 - r0, c1 - c0)
        walk = _Walk(image, prompts, window, region, self.work_size, self.beta)
        prob = np.clip(np.nan_to_num(walk.prob), 0.0, 1.0).astype(np.float32)
        if prob.shape != size:
            prob = resize(prob, size, order=1)
        # the pixel under each click, and each scribble, keep the user's word at full resolution
        local = prompts.transformed(1.0, 1.0, r0, c0)
        marked = local.seed_map(size, radius=0.5)
        prob[marked == OBJECT] = 1.0
        prob[marked == BACKGROUND] = 0.0
        if local.box is not None:
            prob[~_inside_box(local.box, size)] = 0.0
        out[r0:r1, c0:c1] = prob
        return out


class _Walk:
    """The random walk over ``region`` brought down to at most ``size`` pixels a side: ``seeds`` and ``prob``
    in working pixels, ``scale`` the working pixels per image pixel (rows, columns).
    """

    def __init__(
        self,
        image: np.ndarray,
        prompts: Prompts,
        window: Mapping[str, Any] | None,
        region: Region,
        size: int,
        beta: float,
    ) -> None:
        h, w = image.shape[:2]
        r0, r1, c0, c1 = self.region = region
        long_side = max(r1 - r0, c1 - c0)
        step = max(1, long_side // (2 * size))  # huge regions: every step-th pixel before the smooth resize
        data = _normalised(image[r0:r1:step, c0:c1:step], window)
        scale = min(1.0, size / long_side)
        shape = (max(1, round((r1 - r0) * scale)), max(1, round((c1 - c0) * scale)))
        if data.shape[:2] != shape:
            data = resize(data, shape, order=1, anti_aliasing=True, preserve_range=True)
        data = ndimage.gaussian_filter(data, (SMOOTH, SMOOTH, 0))
        self.scale = sy, sx = shape[0] / (r1 - r0), shape[1] / (c1 - c0)
        # image row r's centre lies at (r - r0 + 0.5) * sy - 0.5 in the working grid, and so for columns
        local = prompts.transformed(sy, sx, r0 - 0.5 + 0.5 / sy, c0 - 0.5 + 0.5 / sx)
        sides = (r0 > 0, r1 < h, c0 > 0, c1 < w)  # top, bottom, left, right: inside the image
        self.seeds = _seeds(local, shape, sides)
        self.prob = _random_walk(data, self.seeds, beta)


def _has_object(prompts: Prompts) -> bool:
    return bool(prompts.positives) or prompts.box is not None or any(s.positive for s in prompts.scribbles)


def _grown(extent: tuple[float, float, float, float], margin: float, shape: tuple[int, int]) -> Region:
    """The region around ``extent`` (x0, y0, x1, y1) grown by ``margin`` pixels, inside the image."""
    x0, y0, x1, y1 = extent
    h, w = shape
    r0, r1 = max(0, math.floor(y0 - margin)), min(h, math.ceil(y1 + margin) + 1)
    c0, c1 = max(0, math.floor(x0 - margin)), min(w, math.ceil(x1 + margin) + 1)
    return r0, r1, c0, c1


def _box_region(box: tuple[float, float, float, float], shape: tuple[int, int]) -> Region:
    """The box and a ring of background around it."""
    x0, y0, x1, y1 = box
    return _grown(box, 2.0 + BOX_MARGIN * max(x1 - x0, y1 - y0), shape)


def _search_region(prompts: Prompts, shape: tuple[int, int]) -> Region:
    """Where the coarse walk looks: around the positive prompts, by a share of the image and more as the
    prompts spread (a lone click still gets room for a typical object).
    """
    points = prompts.positives + [q for s in prompts.scribbles if s.positive for q in s.points]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    spread = max(max(xs) - min(xs), max(ys) - min(ys))
    margin = max(MIN_MARGIN, SEARCH_SHARE * max(shape), SPREAD_MARGIN * spread)
    return _grown((min(xs), min(ys), max(xs), max(ys)), margin, shape)


def _object_region(coarse: _Walk, shape: tuple[int, int]) -> Region:
    """The fine walk's region: the coarse object (the positive seeds and the parts that hold one), grown by
    a share of its size; the whole search region when no positive seed is left at the coarse scale.
    """
    parts, _ = ndimage.label(coarse.prob >= 0.5)
    seeded = coarse.seeds == OBJECT
    found = seeded | np.isin(parts, parts[seeded & (parts > 0)])
    if not found.any():  # a later negative click took the positive ones' working pixels
        return coarse.region
    rows, cols = np.flatnonzero(found.any(axis=1)), np.flatnonzero(found.any(axis=0))
    (sy, sx), (r0, _, c0, _) = coarse.scale, coarse.region
    # working pixel i covers image rows r0 + i / sy - 0.5 to r0 + (i + 1) / sy - 0.5
    y0, y1 = r0 + rows[0] / sy - 0.5, r0 + (rows[-1] + 1) / sy - 0.5
    x0, x1 = c0 + cols[0] / sx - 0.5, c0 + (cols[-1] + 1) / sx - 0.5
    return _grown((x0, y0, x1, y1), FINE_MIN_MARGIN + FINE_MARGIN * max(x1 - x0, y1 - y0), shape)


def _normalised(values: np.ndarray, window: Mapping[str, Any] | None) -> np.ndarray:
    """float64 (h, w, C) in [0, 1]: the values through the display window, or through their own 1st-99th
    percentiles when there is none or when it leaves the region flat (all of it below or above).
    """
    x = values.astype(np.float64)
    x = x.reshape(*x.shape[:2], -1)
    finite = np.isfinite(x)
    if not finite.all():  # NaN and infinite pixels carry no value: they count as the region's lowest
        x[~finite] = x[finite].min() if finite.any() else 0.0
    bounds = _window_bounds(window)
    if bounds is not None:
        lo, hi = bounds
        scaled = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        if scaled.max() > scaled.min():
            return scaled
    lo, hi = (float(v) for v in np.percentile(x, [1, 99]))
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _window_bounds(window: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(low, high) of a display window {"center", "width"}; None without a usable one."""
    if not window:
        return None
    try:
        center, width = float(window["center"]), float(window["width"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        return None
    return center - width / 2, center + width / 2


def _seeds(prompts: Prompts, shape: tuple[int, int], sides: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """int32 seed labels in working pixels: background on the region's sides inside the image and outside
    the box, the box's centre (without a positive prompt), then the user's own prompts over them (their
    negative ones NEGATIVE).
    """
    seeds = np.zeros(shape, np.int32)
    top, bottom, left, right = sides
    for inside, edge in ((top, np.s_[0, :]), (bottom, np.s_[-1, :]), (left, np.s_[:, 0]), (right, np.s_[:, -1])):
        if inside:
            seeds[edge] = BACKGROUND
    if prompts.box is not None:
        seeds[~_inside_box(prompts.box, shape)] = BACKGROUND
        if not prompts.positives and not any(s.positive for s in prompts.scribbles):
            x0, y0, x1, y1 = prompts.box
            radius = max(CLICK_RADIUS, BOX_CENTRE * min(x1 - x0, y1 - y0))
            centre = Prompts((((x0 + x1) / 2, (y0 + y1) / 2, True),)).seed_map(shape, radius)
            seeds[centre == OBJECT] = OBJECT
    # each click keeps at least the pixel under it where a later click's disk covers its own
    for marked in (prompts.seed_map(shape, CLICK_RADIUS), prompts.seed_map(shape, 0.5)):
        seeds[marked == OBJECT] = OBJECT
        seeds[marked == BACKGROUND] = NEGATIVE
    if not (seeds > OBJECT).any():  # the region is the whole image and nothing bounds the object:
        border = np.ones(shape, bool)  # the image's border does
        border[1:-1, 1:-1] = False
        seeds[border & (seeds == 0)] = BACKGROUND
    return seeds


def _inside_box(box: tuple[float, float, float, float], shape: tuple[int, int]) -> np.ndarray:
    """The pixels the box covers, bool (H, W) (at least the pixel under its centre)."""
    x0, y0, x1, y1 = box
    h, w = shape
    rows, cols = np.arange(h), np.arange(w)
    inside = ((rows >= y0 - 0.5) & (rows <= y1 + 0.5))[:, None] & ((cols >= x0 - 0.5) & (cols <= x1 + 0.5))[None, :]
    if not inside.any():
        inside[min(max(round((y0 + y1) / 2), 0), h - 1), min(max(round((x0 + x1) / 2), 0), w - 1)] = True
    return inside


def _random_walk(data: np.ndarray, seeds: np.ndarray, beta: float) -> np.ndarray:
    """The probability that a walker from each pixel reaches an object seed before a background one.

    The walk sees the values and how much more each looks like the object's seeds than the background's,
    so that a change of intensity class stops it as an edge does. Mode "bf" (a sparse direct solve) costs
    the same at any beta; "cg_j" took 0.4 to 10 s on some 160-pixel regions at the betas real images want.
    """
    labels = np.minimum(seeds, BACKGROUND)
    found = set(np.unique(labels).tolist())
    if OBJECT not in found:
        return np.zeros(seeds.shape)
    if BACKGROUND not in found or 0 not in found:  # nothing left to walk: the seeds are the answer
        return (labels == OBJECT).astype(np.float64)
    data = np.concatenate([data, _likeness(data, seeds)[..., None]], axis=-1)
    if not data.std() > 0:
        # a flat region has no edges: every step is as easy (beta 0 makes every weight 1); scikit-image
        # divides beta by the data's spread, so it is handed a stand-in that has one
        data, beta = np.indices(seeds.shape).sum(axis=0)[..., None].astype(np.float64), 0.0
    with warnings.catch_warnings():  # notes on isolated pixels and conditioning: the map is still usable
        warnings.simplefilter("ignore")
        prob = random_walker(data, labels, beta=beta, mode="bf", return_full_prob=True, channel_axis=-1)
    return np.asarray(prob[0], np.float64)


def _likeness(data: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """P(object | value) per pixel: a Gaussian model of the object seeds' values against one of the region's
    background (its sides, outside the box) and one of what the user marked background, where there are
    such seeds (each model spread at least LIKENESS_SPREAD).
    """
    log_likelihoods = []
    for label in (OBJECT, BACKGROUND, NEGATIVE):
        values = data[seeds == label]
        if len(values):
            spread = max(LIKENESS_SPREAD, float(values.std()))
            distance = ((data - values.mean(axis=0)) ** 2).sum(axis=-1)
            log_likelihoods.append(-distance / (2 * spread**2) - data.shape[-1] * math.log(spread))
    obj, background = log_likelihoods[0], np.logaddexp.reduce(log_likelihoods[1:], axis=0)
    return 1.0 / (1.0 + np.exp(np.clip(background - obj, -50.0, 50.0)))
