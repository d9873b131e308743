"""Interactive segmentation on real images: clicks to a good mask, per engine, and the latency of a click.

The standard simulated clicker (``patientml_widgets.interactive.clicker``: each click at the centre of
the largest error region, positive in a missed part, negative in a wrongly included one) clicks up to
20 times on each held-out object (a connected component of one class of a test image's reference
mask). Per engine and data set it prints the Dice after 1, 3 and 5 clicks, NoC@85 / NoC@90 (clicks
to reach Dice 0.85 / 0.90, 20 when never) and the seconds per click at the data set's size and at
512 x 512 (the image and its objects resampled).

Engines: the classical engine (no training); the project's click-guided model, trained by an ordinary
run (``project.train``) on 50 labeled images of the data set's train split (MRI; the nuclei image gives
40 tiles of 64 px), deployed, then clicked on the test split it never saw; a SAM-family checkpoint
when ``--sam FOLDER`` names one (Hugging Face format; nothing is downloaded). Random SAM weights say
nothing of quality: their latency alone is measured by ``benchmarks/sam_latency.py``.

Data (shipped inside pip packages, see benchmarks/real_images.py): nilearn's MNI152 T1 slices with
grey / white matter, stardist's fluorescence nuclei with human-annotated instances.

    python benchmarks/interactive.py            # both data sets, up to 40 objects each (~5 min on 2 quiet cores)
    python benchmarks/interactive.py --quick    # 20 objects each, a shorter training budget
    python benchmarks/interactive.py --sam ~/models/sam-vit-base
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import real_images
from _util import table

import patientml_widgets as pml
from patientml_widgets.interactive import Engine
from patientml_widgets.interactive.classical import ClassicalEngine
from patientml_widgets.interactive.clicker import MAX_CLICKS, Trial, simulate

TRAIN_IMAGES = 50


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ----------------------------------------------------------------------------------------------------------


def objects(ds: real_images.Dataset, *, min_area: int, per_image: int, limit: int, instances: bool) -> list[tuple]:
    """(image, object mask) pairs from the test split: connected components of each foreground class (or the
    instances), at least ``min_area`` pixels, the largest ``per_image`` of each image, ``limit`` in all, spread
    over the images.
    """
    by_image = []
    for i in ds.indices("test"):
        target = ds.targets[i]
        found = []
        if instances:
            for value in np.unique(target[target > 0]):
                found.append(target == value)
        else:
            for c in range(1, len(ds.classes)):
                components, n = ndimage.label(target == c)
                found += [components == k for k in range(1, n + 1)]
        found = [m for m in found if m.sum() >= min_area]
        found.sort(key=lambda m: -int(m.sum()))
        by_image.append([(ds.images[i], m) for m in found[:per_image]])
    out = []
    while len(out) < limit and any(by_image):  # round robin: every image contributes
        for items in by_image:
            if items and len(out) < limit:
                out.append(items.pop(0))
    return out


def training_subset(ds: real_images.Dataset, n_train: int) -> real_images.Dataset:
    """``n_train`` train images spread evenly over the train split, all val and test images (binary masks)."""
    train = ds.indices("train")
    keep = [train[round(k)] for k in np.linspace(0, len(train) - 1, min(n_train, len(train)))]
    keep += ds.indices("val") + ds.indices("test")
    targets = [np.asarray(ds.targets[i] > 0, np.uint8) if ds.targets[i].dtype != np.uint8 else ds.targets[i]
               for i in keep]  # fmt: skip
    return real_images.Dataset(
        ds.name, ds.problem_type, ds.classes, ds.modality, [ds.images[i] for i in keep], targets,
        [ds.splits[i] for i in keep], [ds.subjects[i] for i in keep], ds.description,
    )  # fmt: skip


# -- engines -------------------------------------------------------------------------------------------------------


def project_engine(ds: real_images.Dataset, workdir: Path, budget: str) -> tuple[Engine, dict[str, Any]]:
    """Train the project's model (``guidance=True``: it also learns to follow clicks) on the subset, deploy it."""
    from patientml_widgets.interactive.model import ProjectModelEngine

    project = pml.Project.open(workdir / ds.name.replace(" ", "-"), user="benchmark")
    model = real_images.load_into(project, ds)
    project.configure_training(model, auto_deploy=False)
    t0 = time.perf_counter()
    run = project.train(model, hyperparameters={"budget": budget, "guidance": True}).wait(timeout=3600)
    seconds = time.perf_counter() - t0
    if run.status != "succeeded":
        raise RuntimeError(f"the training run {run.slug} {run.status}: {run.error}")
    project.deploy(run.id)
    test = run.metrics.get("test", {})
    info = {
        "run": run.slug,
        "train images": len(ds.indices("train")),
        "train s": seconds,
        "test dice": test.get("dice_mean"),
        **{k: test.get(k, float("nan")) for k in ("click_dice_1", "noc_85", "noc_90")},
    }
    return ProjectModelEngine(project.predictor(run.id), run=run.slug), info


def trials(engine: Engine, items: list[tuple]) -> list[Trial]:
    """Each object clicked until its Dice reaches 0.90 (after at least 5 clicks, for the Dice after 5), or 20."""
    out = []
    for image, target in items:
        out.append(
            simulate(lambda prompts, image=image: engine.propose(image, prompts), target, clicks=MAX_CLICKS,
                     stop_at=0.90, min_clicks=5)
        )  # fmt: skip
    return out


def latency_512(engine: Engine, items: list[tuple], clicks: int = 5) -> list[float]:
    """Seconds per click on the objects' images resampled to 512 x 512 (the first ``clicks`` clicks each)."""
    seconds: list[float] = []
    for image, target in items:
        zoom = (512 / image.shape[0], 512 / image.shape[1])
        big = ndimage.zoom(image.astype(np.float32), zoom, order=1).astype(image.dtype)
        big_target = ndimage.zoom(target.astype(np.uint8), zoom, order=0) > 0
        engine.prepare(big)  # an engine's once-per-image work (SAM's embedding) is not a click
        seconds += simulate(lambda prompts, big=big: engine.propose(big, prompts), big_target, clicks=clicks).seconds
    return seconds


def summary(name: str, engine: str, results: list[Trial], seconds: list[float], fast: list[float]) -> list[object]:
    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1e3 if values else float("nan")

    return [
        name,
        engine,
        len(results),
        mean([t.dice_after(1) for t in results]),
        mean([t.dice_after(3) for t in results]),
        mean([t.dice_after(5) for t in results]),
        mean([t.noc(0.85) for t in results]),
        mean([t.noc(0.90) for t in results]),
        pct(seconds, 50),
        pct(fast, 50),
        pct(fast, 95),
    ]


# -- main ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 objects per data set, a 2 min training budget")
    parser.add_argument("--sam", help="a folder holding a SAM-family checkpoint in Hugging Face format")
    parser.add_argument("--no-model", action="store_true", help="skip training the project's model")
    args = parser.parse_args(argv)
    limit = 20 if args.quick else 40
    budget = "2 min" if args.quick else "4 min"
    sets = [
        ("MNI152 T1 tissue", real_images.mri_tissue(), dict(min_area=100, per_image=4, instances=False)),
        ("stardist nuclei", real_images.nuclei(tile=64, instances=True),
         dict(min_area=30, per_image=6, instances=True)),
    ]  # fmt: skip
    rows, trained, gains = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ds, how in sets:
            items = objects(ds, limit=limit, **how)
            log(f"{name}: {len(items)} held-out objects from {len(ds.indices('test'))} test images")
            engines: list[tuple[str, Engine]] = [("classical", ClassicalEngine())]
            if not args.no_model:
                log(f"{name}: training the project's model ({budget})")
                engine, info = project_engine(training_subset(ds, TRAIN_IMAGES), Path(tmp), budget)
                engines.append(("project model", engine))
                trained.append([name, *info.values()])
            if args.sam:
                from patientml_widgets.interactive.sam import SamEngine

                engines.append(("SAM", SamEngine(args.sam)))
            noc90 = {}
            for label, engine in engines:
                log(f"{name}: {label}")
                results = trials(engine, items)
                seconds = [s for t in results for s in t.seconds]
                fast = latency_512(engine, items[:10])
                rows.append(summary(name, label, results, seconds, fast))
                print("  ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in rows[-1]), flush=True)
                noc90[label] = statistics.mean(t.noc(0.90) for t in results)
            if "project model" in noc90:
                gains.append([name, noc90["classical"], noc90["project model"],
                              100 * (1 - noc90["project model"] / noc90["classical"])])  # fmt: skip
    header = ["data set", "engine", "objects", "Dice@1", "Dice@3", "Dice@5", "NoC@85", "NoC@90",
              "ms/click", "ms/click 512^2", "p95 512^2"]  # fmt: skip
    print(table("Interactive segmentation, held-out objects (clicks capped at 20)", header, rows))
    if trained:
        print(table("The project's model: one ordinary run per data set", ["data set", "run", "train images", "train s",
                    "test Dice (no clicks)", "run: click Dice@1", "run: NoC@85", "run: NoC@90"][: len(trained[0])],
                    trained))  # fmt: skip
    if gains:
        print(table("NoC@90: the project's model against the classical engine", ["data set", "classical", "model",
                    "fewer clicks %"], gains))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
