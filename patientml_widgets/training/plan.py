"""Self-configuring defaults: a fingerprint of the training data, and the plan derived from it.

The idea is nnU-Net's: the same recipe fits very different data sets when its settings
are derived from the data and the machine instead of fixed. The fingerprint summarises
the snapshot (sizes, channels, modality, intensities, class frequencies); the plan turns it,
with the hardware, into the working resolution (native up to a cap, aspect ratio kept,
padded - never squashed to a square), the intensity normalisation per modality, network
width and depth, batch size, the training length in optimisation steps, the learning rate
and the loss's class weights. Both are recorded on the run. No torch here.

Volumes train "2.5-D": every chosen slice is a sample, its neighbouring slices extra input
channels, through the 2-D U-Net; the working in-plane pixel size (mm) comes from the volumes'
spacing, so volumes of different pixel sizes meet at one scale. Which slices are samples:
:func:`volume_samples`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["VOLUME_MODE_REASON", "central_slices", "fingerprint", "make_plan", "normalization_for", "volume_samples"]

#: longest side of the working resolution, per problem type and device kind
RESOLUTION_CAP = {
    ("segmentation", "cpu"): 256,
    ("segmentation", "gpu"): 512,
    ("classification", "cpu"): 128,
    ("classification", "gpu"): 256,
}
#: volumes on a CPU: a 512 x 512 x 300 CT is 300 slices to predict; with this cap (the benchmark's canvas
#: was 224 x 192) it took 7.4 s on 2 quiet cores in bf16 (benchmarks/volume_training.py); 256 px costs
#: about 1.7x as much
VOLUME_RESOLUTION_CAP = {"cpu": 192, "gpu": 512}
#: pixels per optimisation step (batch x height x width) that keep a step short on 2 CPU cores
PIXELS_PER_STEP = {"cpu": 8 * 128 * 128, "gpu": 16 * 256 * 256}
#: the default time budget for the optimisation steps, per device kind (seconds)
DEFAULT_BUDGET_S = {"cpu": 180.0, "gpu": 600.0}
#: steps: at least MIN_STEPS, about PASSES passes over the training pixels, at most MAX_STEPS;
#: training stops earlier when the validation objective stops improving
MIN_STEPS, PASSES, MAX_STEPS = 150, 20, 4000
MIN_BATCH = 8  # batch normalisation needs at least this many samples per step; below it, group norm
MEMORY_SHARE, MEMORY_SPLITS = 0.25, 2.0  # the splits held in memory (train + val + test ~ 2x train)
SAMPLE_PIXELS = 200_000  # pixels per image looked at for intensity statistics
#: volumes: background slices taken per slice with foreground (evenly spread), and at least this many
BACKGROUND_SHARE, MIN_BACKGROUND = 0.5, 4
MAX_CONTEXT_STRIDE = 8
CENTRAL_SLICES = 32  # classification of a volume: at most this many of its middle slices
#: why volumes train 2.5-D (measured by benchmarks/volume_training.py on 2 CPU cores)
VOLUME_MODE_REASON = (
    "2.5-D: the sampled slices with their neighbouring slices as channels, through the 2-D U-Net. Measured on "
    "2 CPU cores (benchmarks/volume_training.py, MNI152 T1 slabs, the same training time): test Dice 0.84 and "
    "HD95 3.0 mm against 0.76-0.80 and 3.3-4.2 mm for a 3-D U-Net on 16x64x64 patches (two runs), and a "
    "512x512x300 volume predicted in 7-14 s against about 3-4 min"
)


def central_slices(depth: int, limit: int = CENTRAL_SLICES) -> list[int]:
    """Classification of a volume: the slices it is seen through, in training and prediction - the middle
    half of the volume (at least one slice), at most ``limit`` of them evenly spread.
    """
    lo, hi = depth // 4, max(depth // 4 + 1, depth - depth // 4)
    n = min(limit, hi - lo)
    return sorted({int(v) for v in np.round(np.linspace(lo, hi - 1, n)).astype(int)})


def volume_samples(mask: np.ndarray) -> list[int]:
    """The slices of a (Z, Y, X) label volume that are training samples: every slice holding a class other
    than the background, and half as many background slices (at least MIN_BACKGROUND), evenly spread.
    """
    m = np.asarray(mask)
    has = m.reshape(len(m), -1).any(axis=1)
    fg, bg = np.flatnonzero(has), np.flatnonzero(~has)
    n_bg = min(len(bg), max(MIN_BACKGROUND, math.ceil(BACKGROUND_SHARE * len(fg))))
    picked = bg[np.round(np.linspace(0, len(bg) - 1, n_bg)).astype(int)] if n_bg else bg[:0]
    return sorted({int(v) for v in fg} | {int(v) for v in picked})


def fingerprint(
    images: list[np.ndarray],
    targets: list[Any],
    *,
    problem_type: str,
    num_classes: int,
    modalities: list[str] | None = None,
    spacings: list[Any] | None = None,
) -> dict[str, Any]:
    """Summary statistics of the training images and labels (JSON-ready).

    With ``spacings`` (dz, dy, dx per image) the images are (Z, Y, X) volumes: shapes are in-plane,
    ``n`` counts the slices that are samples (:func:`volume_samples`), and the volumes' depth and
    spacing are summarised too.
    """
    volume = spacings is not None
    shapes = np.array([img.shape[-2:] if volume else img.shape[:2] for img in images], dtype=np.int64).reshape(-1, 2)
    channels = [1] if volume else sorted({1 if img.ndim == 2 else int(img.shape[2]) for img in images})
    modality = Counter(m for m in (modalities or []) if m).most_common(1)
    out: dict[str, Any] = {
        "n": len(images),
        "shape_median": [int(v) for v in np.median(shapes, axis=0)] if len(shapes) else [0, 0],
        "shape_min": [int(v) for v in shapes.min(axis=0)] if len(shapes) else [0, 0],
        "shape_max": [int(v) for v in shapes.max(axis=0)] if len(shapes) else [0, 0],
        "mixed_orientation": bool(
            len(shapes) and min((shapes[:, 0] > shapes[:, 1]).mean(), (shapes[:, 0] < shapes[:, 1]).mean()) >= 0.2
        ),
        "channels": channels,
        "dtypes": sorted({str(img.dtype) for img in images}),
        "modality": modality[0][0] if modality else "",
    }
    if volume:
        steps = np.array([[float(v) for v in s] for s in spacings or []], dtype=np.float64).reshape(-1, 3)
        if problem_type == "segmentation":
            samples = [len(volume_samples(t)) for t in targets]
        else:
            samples = [len(central_slices(int(img.shape[0]))) for img in images]
        out.update(
            volume=True,
            volumes=len(images),
            n=int(sum(samples)),
            depth_median=int(np.median([img.shape[0] for img in images])) if images else 0,
            spacing_median=[round(float(v), 4) for v in np.median(steps, axis=0)] if len(steps) else [1.0] * 3,
        )
    rng = np.random.default_rng(0)
    values, foreground, per_channel = [], [], []
    for img, target in zip(images, targets):
        pixels = img.reshape(-1, 1 if img.ndim == 2 or volume else img.shape[2]).astype(np.float64)
        flat = pixels.mean(axis=1)
        pick = rng.choice(flat.size, min(flat.size, SAMPLE_PIXELS // max(1, len(images)) + 1), replace=False)
        values.append(flat[pick])
        if pixels.shape[1] == max(channels):
            per_channel.append(pixels[pick])
        if problem_type == "segmentation":
            fg = flat[np.asarray(target).reshape(-1) > 0]
            if fg.size:
                foreground.append(fg[rng.choice(fg.size, min(fg.size, pick.size), replace=False)])
    if values:
        out["intensity"] = _stats(np.concatenate(values))
        out["channel_intensity"] = [_stats(c) for c in np.concatenate(per_channel).T]
    if foreground:
        out["foreground_intensity"] = _stats(np.concatenate(foreground))
    if problem_type == "segmentation":
        counts = np.zeros(num_classes, dtype=np.float64)
        for target in targets:
            counts += np.bincount(np.asarray(target).reshape(-1), minlength=num_classes)[:num_classes]
        out["class_fraction"] = [round(float(c), 6) for c in counts / max(1.0, counts.sum())]
    else:
        counts = np.zeros(num_classes, dtype=np.float64)
        for target in targets:
            counts += np.asarray(target, dtype=np.float64) if np.ndim(target) else np.eye(num_classes)[int(target)]
        out["class_counts"] = [int(c) for c in counts]
    return out


def _stats(v: np.ndarray) -> dict[str, float]:
    p = np.percentile(v, [0.5, 50, 99.5])
    return {
        "p0_5": float(p[0]),
        "median": float(p[1]),
        "p99_5": float(p[2]),
        "mean": float(v.mean()),
        "std": float(v.std()),
    }


def normalization_for(fp: dict[str, Any], problem_type: str) -> dict[str, Any]:
    """The intensity normalisation for the data.

    - CT (Hounsfield units) is clipped to the foreground's 0.5-99.5 percentiles and z-scored
      with the foreground's statistics, the same for every image (nnU-Net's CT scheme).
    - Segmentation of anything else (MR, X-ray, microscopy, RGB): z-score per image and channel,
      which makes it robust to scanner and stain scaling.
    - Classification of anything else: clipped to the data set's 0.5-99.5 percentiles and z-scored
      with the data set's statistics, per channel (ImageNet-style), because a class can be a
      matter of brightness, which a per-image z-score would erase.
    """
    if fp.get("modality") == "CT" and fp.get("channels") == [1]:
        stats = fp.get("foreground_intensity") or fp.get("intensity") or {}
        if stats:
            lo, hi = stats["p0_5"], stats["p99_5"]
            return {"scheme": "ct", "clip": [lo, hi], "mean": stats["mean"], "std": max(stats["std"], 1e-3)}
    if problem_type == "classification" and fp.get("channel_intensity"):
        stats = fp["channel_intensity"]
        return {
            "scheme": "dataset",
            "clip": [[c["p0_5"], c["p99_5"]] for c in stats],
            "mean": [c["mean"] for c in stats],
            "std": [max(c["std"], 1e-3) for c in stats],
        }
    return {"scheme": "zscore"}


def make_plan(fp: dict[str, Any], spec: dict[str, Any], *, device: str, memory_bytes: int = 0) -> dict[str, Any]:
    """Resolve every setting the user left on auto (0, "" or missing) from the fingerprint.

    ``memory_bytes`` (what the process may still allocate) lowers the resolution cap when the
    splits, held in memory at the working resolution, would take more than a quarter of it.
    """
    kind = "cpu" if device == "cpu" else "gpu"
    problem = spec["problem_type"]
    plan: dict[str, Any] = {}
    h, w, scale, memory_note = _working_scale(fp, spec, problem, kind, memory_bytes)
    if memory_note:
        plan["memory_note"] = memory_note
    depth = int(spec.get("depth") or 0) or (4 if min(h, w) * scale >= 160 else 3)
    multiple = 2**depth if problem == "segmentation" else 16
    if problem == "segmentation":
        plan["depth"] = depth
    plan["canvas"] = [_round_up(max(8, round(h * scale)), multiple), _round_up(max(8, round(w * scale)), multiple)]
    plan["normalization"] = spec.get("normalization") or normalization_for(fp, problem)
    plan["base_channels"] = int(spec.get("base_channels") or (16 if kind == "cpu" else 32))
    plan["patch"] = _patch(spec, plan["canvas"], problem, PIXELS_PER_STEP[kind], multiple)
    plan["batch_size"] = _batch_size(fp, spec, problem, PIXELS_PER_STEP[kind], plan["canvas"], plan["patch"])
    if problem == "segmentation":
        plan["norm"] = spec.get("norm") or ("batch" if plan["batch_size"] >= MIN_BATCH else "group")
    plan["lr"] = float(spec.get("lr") or (3e-3 if problem == "segmentation" else 2e-3))
    plan.update(_length(fp, spec, kind, plan["canvas"], plan["patch"], plan["batch_size"]))
    plan["class_weights"] = spec.get("class_weights") or _class_weights(fp, problem, bool(spec.get("multi_label")))
    plan["guidance"] = _guidance(fp, spec)
    if fp.get("volume"):
        plan.update(_volume_plan(fp, spec, scale))
    return plan


def _volume_plan(fp: dict[str, Any], spec: dict[str, Any], scale: float) -> dict[str, Any]:
    """2.5-D: the neighbouring slices as channels, at most about one working pixel apart, the working
    in-plane pixel size, and no flips at prediction (a volume is hundreds of slices; the neighbours
    already steady each slice's prediction).
    """
    dz, dy, dx = (float(v) for v in fp["spacing_median"])
    pixel = [dy / scale, dx / scale]  # mm per working pixel: the median slice fills the canvas
    context = int(spec.get("context") or 1)
    stride = int(spec.get("context_stride") or max(1, min(MAX_CONTEXT_STRIDE, math.floor(min(pixel) / dz + 1e-6))))
    return {
        "volume_mode": "2.5d",
        "volume_mode_reason": VOLUME_MODE_REASON,
        "context": context,
        "context_stride": stride,
        "in_channels": 2 * context + 1,
        "spacing": [round(v, 5) for v in pixel],
        "tta": False,
    }


def _guidance(fp: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Click guidance: on when asked (``guidance=True``) for the built-in U-Net of a segmentation model on 2-D
    images (it costs training time: opt in); volumes (2.5-D) and other networks train unguided.
    """
    possible = spec["problem_type"] == "segmentation" and spec.get("architecture") == "unet" and not fp.get("volume")
    asked = spec.get("guidance")
    if asked and not possible:
        raise ValidationError("guidance (clicks) is for the built-in U-Net of a segmentation model on 2-D images")
    return bool(asked)


def _working_scale(
    fp: dict[str, Any], spec: dict[str, Any], problem: str, kind: str, memory_bytes: int
) -> tuple[int, int, float, str]:
    """The median image size, the scale to the working resolution, and why memory lowered it ("" if not)."""
    volume = fp.get("volume") and problem == "segmentation"
    default = VOLUME_RESOLUTION_CAP[kind] if volume else RESOLUTION_CAP[problem, kind]
    cap = int(spec.get("image_size") or default)
    h, w = (max(1, int(v)) for v in fp["shape_median"])
    if fp.get("mixed_orientation"):  # portrait and landscape images: a square that holds both
        h = w = max(h, w)
    # the cap is on the area (a cap x cap square's pixels), and on the longer side at 4x the cap,
    # so that thin images keep their resolution
    scale = min(1.0, cap / math.sqrt(h * w), 4 * cap / max(h, w))
    held = MEMORY_SPLITS * fp["n"] * max(fp.get("channels") or [1]) * 4 * (h * scale) * (w * scale)
    note = ""
    if memory_bytes and not spec.get("image_size") and held > MEMORY_SHARE * memory_bytes:
        scale *= math.sqrt(MEMORY_SHARE * memory_bytes / held)
        note = f"resolution lowered to fit {memory_bytes / 2**30:.1f} GB of free memory"
    return h, w, scale, note


def _patch(spec: dict[str, Any], canvas: list[int], problem: str, per_step: int, multiple: int) -> list[int]:
    """The training patch: the whole canvas, unless a batch of canvases would make a segmentation step slow."""
    patch = list(canvas)
    if problem == "segmentation" and not spec.get("patch") and MIN_BATCH * canvas[0] * canvas[1] > per_step:
        side = math.sqrt(per_step / MIN_BATCH)
        ratio = canvas[0] / canvas[1]
        patch = [
            min(canvas[0], _round_down(side * math.sqrt(ratio), multiple)),
            min(canvas[1], _round_down(side / math.sqrt(ratio), multiple)),
        ]
    return [int(v) for v in (spec.get("patch") or patch)]


def _batch_size(
    fp: dict[str, Any], spec: dict[str, Any], problem: str, per_step: int, canvas: list[int], patch: list[int]
) -> int:
    """As many patches as a short step holds; whole canvases no more than there are images."""
    batch = int(spec.get("batch_size") or 0)
    if not batch:
        batch = max(
            2,
            min(
                32 if problem == "classification" else 16,
                (per_step * (2 if problem == "classification" else 1)) // (patch[0] * patch[1]),
            ),
        )
    patches = patch != canvas  # patches are drawn anew each step: a batch may exceed n
    return batch if patches or spec.get("batch_size") else max(1, min(batch, max(1, fp["n"])))


def _length(
    fp: dict[str, Any], spec: dict[str, Any], kind: str, canvas: list[int], patch: list[int], batch: int
) -> dict[str, Any]:
    """How long to train: steps, steps per epoch, the time budget and how often to evaluate."""
    canvas_area, area, per_step = canvas[0] * canvas[1], patch[0] * patch[1], PIXELS_PER_STEP[kind]
    # one pass = as many pixels as the training set has at the working resolution
    steps_per_pass = max(1, math.ceil(fp["n"] * canvas_area / (batch * area)))
    # at least the compute of MIN_STEPS full steps: cheap steps (small images) get more of them
    min_steps = round(MIN_STEPS * per_step / max(1, batch * area))
    if int(spec.get("steps") or 0):
        steps = int(spec["steps"])
    elif int(spec.get("epochs") or 0):
        steps = int(spec["epochs"]) * steps_per_pass
    else:
        steps = int(min(MAX_STEPS, max(MIN_STEPS, min_steps, PASSES * steps_per_pass)))
    # a length the user fixed (steps or epochs) is not cut by the default budget, only by one they set
    fixed = bool(int(spec.get("steps") or 0) or int(spec.get("epochs") or 0))
    return {
        "steps": steps,
        "steps_per_epoch": steps_per_pass,
        "budget_s": float(spec.get("budget_s") or (0.0 if fixed else DEFAULT_BUDGET_S[kind])),
        "eval_every": int(spec.get("eval_every") or max(10, min(100, steps // 15))),
    }


def _class_weights(fp: dict[str, Any], problem: str, multi_label: bool) -> list[float] | None:
    """Cross-entropy weights for imbalanced classification (inverse square-root frequency, mean 1).

    Segmentation leaves the cross-entropy unweighted: the Dice term already gives every class
    the same weight, however few pixels it has.
    """
    if problem != "classification":
        return None
    counts = np.asarray(fp.get("class_counts") or [], dtype=np.float64)
    if counts.size == 0 or counts.sum() == 0:
        return None
    if multi_label:  # positive weight per class: negatives / positives, within [1, 10]
        pos = np.maximum(counts, 1.0)
        return [round(float(v), 4) for v in np.clip((fp["n"] - counts) / pos, 1.0, 10.0)]
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    weights = weights / weights[counts > 0].mean()
    weights[counts == 0] = 0.0
    return [round(float(v), 4) for v in weights]


def _round_down(value: float, multiple: int) -> int:
    return max(multiple, int(value // multiple) * multiple)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
