"""The demo project: procedurally generated skin-lesion images, built offline and deterministically.

Each image is a dermoscopy-like 128 x 128 RGB picture: skin with shading, pores
and hairs, and one lesion whose shape, colour and texture depend on its type:

- ``benign nevus``: round, even brown, sharp border;
- ``atypical lesion``: irregular border, dark and blue-grey blotches (melanoma-like);
- ``seborrheic keratosis``: tan, waxy, rough surface.

Ground truth comes with every image (:func:`lesion_sample`), so a model trained on
the demo labels can be checked against it. The images are synthetic and carry no
patient data.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_VERSION", "LESION_TYPES", "SEGMENTATION_CLASSES", "ensure_demo", "fill_demo", "lesion_sample"]

DEMO_VERSION = 2
SIZE = 128
N_IMAGES = 240
N_SUBJECTS = 24
SEGMENTATION_CLASSES = ("background", "lesion", "margin")
LESION_TYPES = ("benign nevus", "atypical lesion", "seborrheic keratosis")
MARGIN_WIDTH = 3.0
DEMO_STEPS = 100


def lesion_sample(index: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, int]:
    """The demo image number ``index``: ``(rgb uint8 image, mask of class indices, lesion type)``."""
    rng = np.random.default_rng([1, index])  # the images of every demo version so far
    kind = int(rng.integers(len(LESION_TYPES)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    # skin: a tone, slow shading, fine noise (pores)
    tone = np.array([225, 180, 150], np.float32) * rng.uniform(0.75, 1.05) + rng.normal(0, 6, 3)
    shade = 1 + 0.08 * np.sin(xx / size * rng.uniform(1, 4) + rng.uniform(0, 6)) * np.cos(yy / size * rng.uniform(1, 4))
    img = tone[None, None, :] * shade[..., None] + rng.normal(0, 4, (size, size, 1))

    # lesion outline: a radius that varies with the angle
    cy, cx = size / 2 + rng.normal(0, size / 14, 2)
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(yy - cy, xx - cx)
    r0 = rng.uniform(0.14, 0.27) * size
    wobble = {0: 0.04, 1: 0.22, 2: 0.1}[kind]
    radius = np.full_like(theta, r0)
    for k in range(2, 7):
        radius += r0 * wobble / (k - 1) ** 0.5 * rng.normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    inside = dist < radius
    margin = inside & (dist > radius - MARGIN_WIDTH)

    # lesion colour and texture
    if kind == 0:
        color = np.array([120, 75, 50], np.float32) * rng.uniform(0.8, 1.1)
        lesion = np.broadcast_to(color, img.shape) + rng.normal(0, 5, (size, size, 1))
    elif kind == 1:
        base = np.array([70, 40, 30], np.float32) * rng.uniform(0.7, 1.1)
        blotch = np.sin(xx / rng.uniform(4, 9) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(4, 9)) > 0.2
        bluegray = np.array([90, 95, 115], np.float32)
        lesion = np.where(blotch[..., None], bluegray, base) + rng.normal(0, 10, (size, size, 1))
    else:
        color = np.array([175, 135, 90], np.float32) * rng.uniform(0.85, 1.05)
        rough = rng.normal(0, 18, (size // 4, size // 4, 1)).repeat(4, 0).repeat(4, 1)
        lesion = color + rough + rng.normal(0, 6, (size, size, 1))
    soft = np.clip((radius - dist) / 2.0, 0, 1)[..., None]  # a slightly soft edge, as in a photo
    img = img * (1 - soft) + lesion * soft

    # hairs: thin dark curves over everything
    for _ in range(int(rng.integers(0, 4))):
        a, b, c = rng.uniform(-1, 1), rng.uniform(0, size), rng.uniform(-0.004, 0.004)
        line = np.abs(yy - (a * xx + b + c * (xx - size / 2) ** 2)) < rng.uniform(0.6, 1.1)
        img[line] = img[line] * 0.35

    mask = np.zeros((size, size), np.uint8)
    mask[inside] = 1
    mask[margin] = 2
    return np.clip(img, 0, 255).astype(np.uint8), mask, kind


def fill_demo(project: Any, *, n_images: int = N_IMAGES) -> None:
    """Fill a new, empty project (a ``Project``) with the demo's models, examples and labels."""
    seg = project.create_model(
        "Skin lesion segmentation",
        problem_type="segmentation",
        description="Outline the lesion and its margin on dermoscopy-like images (synthetic demo data).",
        classes=[
            {"name": "background", "color": "#000000", "description": "skin and everything else"},
            {"name": "lesion", "color": "#d62728", "description": "the lesion's body"},
            {"name": "margin", "color": "#1f77b4", "description": "a 3-pixel band along the lesion's border"},
        ],
    )
    cls = project.create_model(
        "Lesion type",
        problem_type="classification",
        description="Which kind of lesion is shown (synthetic demo data).",
        classes=list(LESION_TYPES),
    )
    # a teaching demo trains in under half a minute on any CPU: the plan's other settings come from
    # the data and the machine as for any model; only the number of steps, how often the validation
    # split is scored (and the classifier's resolution) are fixed here
    project.configure_training(seg, hyperparameters={"steps": DEMO_STEPS, "eval_every": 25})
    project.configure_training(cls, hyperparameters={"steps": DEMO_STEPS, "eval_every": 25, "image_size": 64})
    samples = [lesion_sample(i) for i in range(n_images)]
    subjects = [f"patient-{i % N_SUBJECTS + 1:03d}" for i in range(n_images)]
    sources = [{"generator": f"patientml demo v{DEMO_VERSION}", "index": i} for i in range(n_images)]
    images = [s[0] for s in samples]
    with project.batch():
        seg_examples = project.add_examples(seg, images, subjects=subjects, sources=sources)
        cls_examples = project.add_examples(cls, images, subjects=subjects, sources=sources)
        for i, (ex, (_, mask, _)) in enumerate(zip(seg_examples, samples, strict=True)):
            if i % 10 < 6:  # 60% labeled
                project.submit_label(ex, mask=mask, time_spent=float(30 + i % 50))
            elif i % 10 == 6:  # 10% drafts: the lesion painted, the margin not yet
                project.save_label(ex, mask=np.minimum(mask, 1), time_spent=12.0)
        for i, (ex, (_, _, kind)) in enumerate(zip(cls_examples, samples, strict=True)):
            if i % 10 < 5:
                project.submit_label(ex, classes=[kind], time_spent=float(4 + i % 7))
            elif i % 10 == 5:
                project.save_label(ex, classes=[kind], time_spent=3.0)


def default_demo_path() -> Path:
    """Where ``Project.demo()`` keeps its project: ``$PATIENTML_DEMO_DIR``, or the user's cache."""
    if os.environ.get("PATIENTML_DEMO_DIR"):
        return Path(os.environ["PATIENTML_DEMO_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "patientml-widgets" / f"demo-v{DEMO_VERSION}"


def ensure_demo(path: str | os.PathLike | None, build: Callable[[Path], Any], *, fresh: bool = False) -> Path:
    """The demo project's folder, built first with ``build(folder)`` if it is not there (or if ``fresh``).

    The project is built in a sibling folder and moved into place when complete, so
    an interrupted build never leaves a half-made demo behind.
    """
    target = Path(path) if path is not None else default_demo_path()
    if fresh and (target / "patientml.json").exists():
        shutil.rmtree(target)
    if not (target / "patientml.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        building = target.with_name(f".{target.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        try:
            build(building)
            try:
                building.rename(target)  # atomic; fails if another process finished first
            except OSError:
                if not (target / "patientml.json").exists():
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return target
