"""The classical interactive engine on real images: Dice after 1 / 3 / 5 simulated clicks, NoC@85 / NoC@90
(cap 20) and the seconds per click on a 512 x 512 image.

Objects are the connected components of the reference: stardist's nuclei (its 128 x 128 tiles, components
of at least 16 pixels) and, on every 4th MNI T1 slice, the largest grey-matter (mri-gm) and white-matter
(mri-wm) component.
A trial stops at Dice 0.9 (its later Dice counts as the last one reached).
Latency: 5 clicks on each of 40 nuclei of the full 512 x 512 uint16 img2d.tif (the whole image handed to the
engine; small objects) and on white matter of MNI slices brought up to 512 x 512 (large objects).

python benchmarks/classical_engine.py                      # the default engine
python benchmarks/classical_engine.py --beta 3000 --work-size 96   # another setting
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from _util import table
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
import real_images

from patientml_widgets.interactive import ClassicalEngine
from patientml_widgets.interactive.clicker import next_click, simulate
from patientml_widgets.interactive.prompts import Prompts

MIN_AREA = 16


def nuclei_objects() -> list[tuple[np.ndarray, np.ndarray]]:
    ds = real_images.nuclei()
    out = []
    for img, target in zip(ds.images, ds.targets):
        lab, n = ndimage.label(target)
        out += [(img, lab == i) for i in range(1, n + 1) if (lab == i).sum() >= MIN_AREA]
    return out


def mri_objects(cls: int, every: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """The largest component of class ``cls`` (1 grey matter, 2 white matter) on every ``every``-th slice."""
    ds = real_images.mri_tissue()
    out = []
    for img, target in list(zip(ds.images, ds.targets))[::every]:
        lab, n = ndimage.label(target == cls)
        if n:
            sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
            out.append((img, lab == 1 + int(np.argmax(sizes))))
    return out


def score(engine: ClassicalEngine, objects: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    trials = [simulate(lambda p, img=img: engine.propose(img, p), target, stop_at=0.9) for img, target in objects]
    return {
        "dice1": float(np.mean([t.dice_after(1) for t in trials])),
        "dice3": float(np.mean([t.dice_after(3) for t in trials])),
        "dice5": float(np.mean([t.dice_after(5) for t in trials])),
        "noc85": float(np.mean([t.noc(0.85) for t in trials])),
        "noc90": float(np.mean([t.noc(0.90) for t in trials])),
        "ms": 1e3 * statistics.median(s for t in trials for s in t.seconds),
    }


def latency(engine: ClassicalEngine, objects: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Median and 95th percentile milliseconds per click over 5 simulated clicks on each object."""
    img, target = objects[0]
    engine.propose(img, Prompts().with_click(*next_click(target, np.zeros_like(target))))  # warm-up
    trials = [simulate(lambda p, img=img: engine.propose(img, p), target, clicks=5) for img, target in objects]
    seconds = [s for t in trials for s in t.seconds]
    return 1e3 * statistics.median(seconds), 1e3 * float(np.percentile(seconds, 95))


def nuclei_512(count: int = 40) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` nuclei of the full 512 x 512 img2d.tif (small objects)."""
    img = tifffile.imread(real_images._data_file("stardist", real_images._STARDIST_PIP, "data", "images", "img2d.tif"))
    inst = tifffile.imread(
        real_images._data_file("stardist", real_images._STARDIST_PIP, "data", "images", "mask2d.tif")
    )
    ids = np.unique(inst)[1:]
    return [(img, inst == i) for i in ids[np.linspace(0, len(ids) - 1, count).astype(int)]]


def mri_512() -> list[tuple[np.ndarray, np.ndarray]]:
    """The white-matter objects on MNI slices brought up to 512 x 512 (large objects)."""
    out = []
    for img, target in mri_objects(2, every=8):
        zoom = (512 / img.shape[0], 512 / img.shape[1])
        out.append((ndimage.zoom(img, zoom, order=1), ndimage.zoom(target.astype(np.uint8), zoom, order=0) > 0))
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--work-size", type=int, default=None)
    parser.add_argument("--only", choices=["nuclei", "mri-gm", "mri-wm", "latency"], default=None)
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in (("beta", args.beta), ("work_size", args.work_size)) if v is not None}
    engine = ClassicalEngine(**kwargs)
    rows = []
    datasets = {"nuclei": nuclei_objects, "mri-gm": lambda: mri_objects(1), "mri-wm": lambda: mri_objects(2)}
    for name, make in datasets.items():
        if args.only in (None, name):
            objects = make()
            t0 = time.perf_counter()
            s = score(engine, objects)
            rows.append([name, len(objects), *s.values(), time.perf_counter() - t0])
    out = table(
        f"ClassicalEngine({kwargs})",
        ["data", "objects", "dice@1", "dice@3", "dice@5", "NoC@85", "NoC@90", "ms/click", "s"],
        rows,
    )
    if args.only in (None, "latency"):
        for what, objects in (("nuclei (small)", nuclei_512()), ("MRI white matter (large)", mri_512())):
            med, p95 = latency(engine, objects)
            out += f"latency at 512 x 512, {what}: median {med:.1f} ms, p95 {p95:.1f} ms per click\n"
    return out


if __name__ == "__main__":
    print(main())
