"""Propagate to the next slice: the mask accepted on one slice of a volume becomes the prompts for the next.

Neighbouring slices show nearly the same object, a little moved or resized: a box around the mask, grown
so the object still fits, bounds it, and a positive click at the interior point of each of its larger
parts (the pixel farthest from the part's edge, which stays inside when the edge moves) says what it is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import ValidationError
from .prompts import Prompts

__all__ = ["prompts_from_mask"]

MAX_PARTS = 5  # clicks for at most this many parts, the largest
SPECK = 0.02  # parts smaller than this share of the largest (or under MIN_PART pixels) get no click
MIN_PART = 4
BOX_GROWTH = 0.15  # the box grows by this share of its size (half on each side) ...
MIN_BOX_MARGIN = 3.0  # ... and by at least this many pixels on each side


def prompts_from_mask(mask2d: np.ndarray) -> Prompts:
    """Prompts for the next slice from a slice's boolean (H, W) mask: a grown box around it and a positive
    click inside each of its (up to MAX_PARTS) largest parts, specks skipped.
    """
    mask = np.asarray(mask2d).astype(bool)
    if mask.ndim != 2:
        raise ValidationError(f"propagating takes one slice's 2-D mask, not an array of shape {mask.shape}")
    if not mask.any():
        raise ValidationError("the mask is empty: there is nothing to propagate to the next slice (label it first)")
    parts, n = ndimage.label(mask)
    sizes = np.bincount(parts.ravel(), minlength=n + 1)[1:]
    keep = [int(i) + 1 for i in np.argsort(-sizes, kind="stable")[:MAX_PARTS]]
    keep = [i for i in keep if sizes[i - 1] >= max(MIN_PART, SPECK * sizes.max())] or keep[:1]
    kept = np.isin(parts, keep)
    points = []
    for i in keep:
        inside = np.pad(parts == i, 1)  # the image's border counts as an edge
        dist = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        points.append((float(c), float(r), True))
    rows, cols = np.flatnonzero(kept.any(axis=1)), np.flatnonzero(kept.any(axis=0))
    h, w = mask.shape
    my = max(MIN_BOX_MARGIN, BOX_GROWTH * (rows[-1] - rows[0] + 1) / 2)
    mx = max(MIN_BOX_MARGIN, BOX_GROWTH * (cols[-1] - cols[0] + 1) / 2)
    box = (
        max(0.0, cols[0] - mx),
        max(0.0, rows[0] - my),
        min(w - 1.0, cols[-1] + mx),
        min(h - 1.0, rows[-1] + my),
    )
    return Prompts(tuple(points), box)
