"""Shape-based slice interpolation (``interpolate_slices``): one gap of a 512 x 512 label volume.

Two labeled slices with a gap of 30 slices between them. The organ is an ellipse of about
180 x 130 pixels (a liver on a 0.7 mm CT slice) that grows, turns and moves between the two
slices; the lesion is a disc whose radius goes from 12 to 25 pixels (8-18 mm) and moves
diagonally. Prints the median wall time of the call (it copies the volume and fills the gap),
with both classes, with the organ or the lesion alone, and for the worst case of a body outline
that covers most of the slice; the canvas calls it interactively.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _util import median_ms, table

from patientml_widgets.imaging.interpolate import interpolate_slices

ORGAN, LESION, BODY = 1, 2, 3


def ellipse(size: int, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    y, x = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    return ((c * y + s * x) / ry) ** 2 + ((-s * y + c * x) / rx) ** 2 <= 1


def volume(size: int, gap: int, which: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros((gap + 2, size, size), np.uint8)
    s = size / 512
    if ORGAN in which:
        mask[0][ellipse(size, 250 * s, 200 * s, 80 * s, 60 * s, 0.3)] = ORGAN
        mask[-1][ellipse(size, 265 * s, 215 * s, 95 * s, 68 * s, 0.6)] = ORGAN
    if BODY in which:
        mask[0][ellipse(size, 256 * s, 256 * s, 200 * s, 240 * s)] = BODY
        mask[-1][ellipse(size, 260 * s, 256 * s, 220 * s, 250 * s)] = BODY
    if LESION in which:
        mask[0][ellipse(size, 330 * s, 350 * s, 12 * s, 12 * s)] = LESION
        mask[-1][ellipse(size, 350 * s, 372 * s, 25 * s, 25 * s)] = LESION
    return mask


def main(size: int = 512, gap: int = 30, repeat: int = 7) -> str:
    cases = [("organ + lesion", (ORGAN, LESION)), ("organ", (ORGAN,)), ("lesion", (LESION,)), ("body outline", (BODY,))]
    ends = [0, gap + 1]
    rows: list[list[object]] = []
    for name, which in cases:
        mask = volume(size, gap, which)
        out = interpolate_slices(mask, ends)
        filled = [int(np.count_nonzero(out[z] == c)) for c in which for z in (1, gap // 2 + 1, gap)]
        assert all(filled), f"{name}: a class vanished inside the gap: {filled}"
        rows.append([name, len(which), median_ms(lambda m=mask: interpolate_slices(m, ends), repeat=repeat)])
        rows.append(
            [f"{name}, spacing (0.7, 0.7)", len(which),
             median_ms(lambda m=mask: interpolate_slices(m, ends, spacing=(0.7, 0.7)), repeat=repeat)]
        )  # fmt: skip
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return table(
        f"interpolate_slices: {size} x {size}, a gap of {gap} slices, median of {repeat} ({cores} cores)",
        ["objects", "classes", "ms"],
        rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--gap", type=int, default=30, help="slices between the two labeled ones")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(main(args.size, args.gap, args.repeat))
