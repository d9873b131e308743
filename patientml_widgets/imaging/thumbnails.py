"""Small previews for tables, and 8-bit display versions of any stored image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["THUMBNAIL_SIZE", "make_thumbnail", "to_display"]

THUMBNAIL_SIZE = 96


def to_display(arr: np.ndarray) -> np.ndarray:
    """An 8-bit version for display: uint8 as it is, anything else windowed to its 0.5-99.5 percentiles."""
    if arr.dtype == np.uint8:
        return arr
    sample = arr[:: max(1, arr.shape[0] // 256), :: max(1, arr.shape[1] // 256)]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    out = (arr.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def make_thumbnail(arr: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side (a few KB)."""
    im = Image.fromarray(to_display(arr))
    im.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
