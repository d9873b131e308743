"""Small previews for tables."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from .window import apply_window

__all__ = ["THUMBNAIL_SIZE", "make_thumbnail"]

THUMBNAIL_SIZE = 96


def make_thumbnail(
    arr: np.ndarray, size: int = THUMBNAIL_SIZE, *, window: Mapping[str, Any] | None = None, invert: bool = False
) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side (a few KB), through the image's window."""
    im = Image.fromarray(apply_window(arr, window, invert=invert))
    im.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
