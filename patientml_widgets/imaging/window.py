"""Window / level: the presets a stored image offers, and the mapping to 8-bit for display.

A window is ``{"center": c, "width": w}`` in the image's stored values (for CT, Hounsfield
units: the rescale slope and intercept are applied at import). Presets come from the image's
own header first (DICOM Window Center / Width, the first is the default), then from its
modality. MONOCHROME1 images (bright = low values, common for CR/DX) are shown inverted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["MODALITY_PRESETS", "apply_window", "window_presets"]

#: Fixed presets per DICOM modality, as (center, width). Only modalities with calibrated
#: units get fixed presets; MR, CR/DX, US values depend on the device, so those images offer
#: their header windows plus the automatic and full-range windows every image has.
MODALITY_PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "CT": {
        "Soft tissue": (40, 400),
        "Lung": (-600, 1500),
        "Bone": (400, 1800),
        "Brain": (40, 80),
        "Liver": (60, 160),
        "Mediastinum": (50, 350),
    },
}


def window_presets(source: Mapping[str, Any] | str | None) -> list[dict[str, Any]]:
    """The named windows for an example's ``source`` (or for a modality name such as ``"CT"``).

    Header windows come first, named after the header's explanation when it has one.
    """
    if isinstance(source, str):
        source = {"modality": source}
    source = source or {}
    presets: list[dict[str, Any]] = []
    for i, win in enumerate(source.get("windows") or []):
        if _valid(win):
            name = str(win.get("name") or ("From the image" if i == 0 else f"From the image ({i + 1})"))
            presets.append({"name": name, "center": float(win["center"]), "width": float(win["width"])})
    taken = {p["name"] for p in presets}
    modality = str(source.get("modality") or "").upper()
    for name, (center, width) in MODALITY_PRESETS.get(modality, {}).items():
        label = f"{modality} {name.lower()}"
        if label not in taken:
            presets.append({"name": label, "center": float(center), "width": float(width)})
    return presets


def apply_window(arr: np.ndarray, window: Mapping[str, Any] | None = None, *, invert: bool = False) -> np.ndarray:
    """An 8-bit version of ``arr`` for display, through ``window`` (default: automatic).

    uint8 images without a window are shown as they are; anything else without a window is
    windowed to its 0.5-99.5 percentiles (the automatic window).
    """
    if window is not None and _valid(window):
        lo = float(window["center"]) - float(window["width"]) / 2
        hi = lo + max(float(window["width"]), 1e-6)
    elif arr.dtype == np.uint8:
        lo, hi = 0.0, 255.0
    else:
        sample = arr[:: max(1, arr.shape[0] // 256), :: max(1, arr.shape[1] // 256)]
        lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
        hi = max(hi, lo + 1)
    if not hi > lo:  # lo + width rounded back to lo: values this large have no step of 1 (or of the width)
        hi = float(np.nextafter(lo, np.inf))
    if arr.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        out = arr
    else:
        scaled = (arr.astype(np.float32) - lo) * (255.0 / (hi - lo))
        out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def _valid(window: Any) -> bool:
    if not isinstance(window, Mapping):
        return False
    try:
        center, width = float(window["center"]), float(window["width"])
    except (KeyError, TypeError, ValueError):
        return False
    return bool(np.isfinite(center) and np.isfinite(width) and width > 0)
