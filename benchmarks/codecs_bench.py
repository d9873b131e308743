"""Mask codecs: size and time of PNG (disk) and the zlib wire format (browser), and raw bytes."""

from __future__ import annotations

import base64
import zlib

import numpy as np
from _util import median_ms, table

from patientml_widgets import imaging
from patientml_widgets.demo import lesion_sample


def realistic_mask(size: int) -> np.ndarray:
    """Demo lesions tiled up to ``size``: smooth regions with borders, like a real label."""
    tiles = [lesion_sample(i)[1] for i in range(16)]
    reps = -(-size // 128)
    grid = np.block([[tiles[(r * reps + c) % 16] for c in range(reps)] for r in range(reps)])
    return np.ascontiguousarray(grid[:size, :size])


def rows_for(size: int) -> list[list[object]]:
    mask = realistic_mask(size)
    png = imaging.encode_mask_png(mask)
    wire = imaging.encode_mask_wire(mask)
    z6 = zlib.compress(mask.tobytes(), 6)
    name = f"{size}^2"
    return [
        [name, "wire (zlib 1)", len(wire) / 1024, median_ms(lambda: imaging.encode_mask_wire(mask)),
         median_ms(lambda: imaging.decode_mask_wire(wire))],
        [name, "zlib 6", len(z6) / 1024, median_ms(lambda: zlib.compress(mask.tobytes(), 6)),
         median_ms(lambda: zlib.decompress(z6))],
        [name, "PNG (disk)", len(png) / 1024, median_ms(lambda: imaging.encode_mask_png(mask)),
         median_ms(lambda: imaging.decode_mask_png(png))],
        [name, "raw base64 JSON", len(base64.b64encode(mask.tobytes())) / 1024, "-", "-"],
    ]  # fmt: skip


def main(sizes=(512, 1024, 2048)) -> str:
    rows = [row for size in sizes for row in rows_for(size)]
    return table("Mask codecs (medians)", ["mask", "codec", "KB", "encode ms", "decode ms"], rows)


if __name__ == "__main__":
    print(main())
