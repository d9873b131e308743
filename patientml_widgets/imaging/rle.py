"""COCO run-length encoding of binary masks, compatible with pycocotools.

Runs are counted in column-major (Fortran) order and start with a run of zeros. The
compact string form is pycocotools' own: each count (after the third, as the difference to
the count two before it) in 5-bit groups, as characters from ``0`` (48) upwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError
from .read import DEFAULT_MAX_PIXELS

__all__ = ["decode_rle", "encode_rle", "rle_area", "rle_bbox"]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [h, w], "counts": str}`` for a 2-D boolean mask (what pycocotools.mask.encode gives)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(h), int(w)], "counts": _to_string(counts)}


def decode_rle(rle: dict[str, Any], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The boolean mask of an RLE with string (compressed) or list (uncompressed) counts."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise ValidationError(f"an RLE is {{'size': [h, w], 'counts': ...}}, not {str(rle)[:80]}") from None
    if h < 1 or w < 1 or h * w > max_pixels:
        raise ValidationError(f"an RLE of {w} x {h} pixels is refused (the limit is {max_pixels:,})")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = _from_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(c < 0 for c in runs) or sum(runs) != h * w:
        raise ValidationError(f"the RLE counts add up to {sum(runs)} pixels, not {h} x {w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((w, h)).T.copy()


def rle_area(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


def rle_bbox(mask: np.ndarray) -> list[float]:
    """``[x, y, width, height]`` of the mask's pixels (all zeros for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _to_string(counts: list[int]) -> str:
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _from_string(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValidationError("the RLE string ends in the middle of a count")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValidationError(f"the RLE string holds {text[p]!r}, which is not an RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts
