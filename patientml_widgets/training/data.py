"""Images and labels in and out of the network's working resolution, and the augmentation.

Every image is scaled (never up, aspect ratio kept) to fit the plan's canvas, normalised
(:func:`normalize`) and padded to the canvas; masks follow with nearest-neighbour scaling
and the padding marked ``IGNORE`` so the loss never sees it. Predictions go the other way:
the probabilities (not the labels) are cropped and resampled to the original size.

Volumes (2-D slices of them, "2.5-D"): a volume is normalised as a whole, its slices resampled
in-plane to the plan's pixel size in mm (then fit into the canvas like an image) and held once;
a sample is a slice with its neighbours (``context`` on each side, ``context_stride`` apart,
clamped at the ends) gathered as channels when a batch is drawn (:meth:`Prepared.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "IGNORE",
    "Prepared",
    "VolumeSlicer",
    "augment",
    "crop",
    "normalize",
    "prepare",
    "prepare_volumes",
    "restore_proba",
    "to_canvas",
]

IGNORE = -100  # target value of padding (cross-entropy's ignore_index)


def normalize(image: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """(C, H, W) float32 of an image as stored (H, W) or (H, W, C): CT clipped and z-scored with the
    data set's statistics, ``dataset`` clipped and z-scored per channel with the data set's
    statistics, ``zscore`` per image and channel.
    """
    x = np.asarray(image, dtype=np.float32)
    return _normalize(x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0), norm)


def _normalize(x: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    if norm.get("scheme") == "ct":
        lo, hi = norm["clip"]
        return ((np.clip(x, lo, hi) - norm["mean"]) / norm["std"]).astype(np.float32)
    if norm.get("scheme") == "dataset":
        c = x.shape[0]
        clip = np.resize(np.asarray(norm["clip"], dtype=np.float32), (c, 2))  # grey statistics serve every channel
        mean = np.resize(np.asarray(norm["mean"], dtype=np.float32), c)[:, None, None]
        std = np.resize(np.asarray(norm["std"], dtype=np.float32), c)[:, None, None]
        return ((np.clip(x, clip[:, :1, None], clip[:, 1:, None]) - mean) / std).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return ((x - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Match an image's channels to the network's: colour averaged into grey, grey repeated, alpha dropped."""
    if x.shape[0] == channels:
        return x
    if channels == 1:
        return x[:3].mean(0, keepdim=True)
    if x.shape[0] >= channels:
        return x[:channels]
    return x[:1].expand(channels, -1, -1)


def fit_size(shape: tuple[int, int], canvas: list[int] | tuple[int, int]) -> tuple[int, int]:
    """The size an image of ``shape`` takes inside the canvas: scaled down to fit, aspect ratio kept."""
    h, w = shape
    scale = min(1.0, canvas[0] / h, canvas[1] / w)
    return max(1, min(canvas[0], round(h * scale))), max(1, min(canvas[1], round(w * scale)))


def to_canvas(image: np.ndarray, spec: Any) -> tuple[torch.Tensor, tuple[int, int]]:
    """One image as a (C, H, W) tensor of the canvas, and the size it occupies inside it (top left).

    Channels are matched to the network first (grey repeated, colour averaged), then normalised.
    """
    raw = np.asarray(image, dtype=np.float32)
    x = _channels(torch.from_numpy(raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)), spec.in_channels)
    canvas = spec.canvas
    if spec.fit == "stretch":  # runs trained before the plan existed: squashed to the square, then z-scored
        x = F.interpolate(x[None], size=tuple(canvas), mode="bilinear", align_corners=False, antialias=True)[0]
        mean, std = x.mean(dim=(1, 2), keepdim=True), x.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        return (x - mean) / std, tuple(canvas)
    x = torch.from_numpy(_normalize(np.ascontiguousarray(x.numpy()), spec.normalization))
    size = fit_size((int(x.shape[-2]), int(x.shape[-1])), canvas)
    if size != tuple(x.shape[-2:]):
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    out = torch.zeros((spec.in_channels, canvas[0], canvas[1]), dtype=torch.float32)
    out[:, : size[0], : size[1]] = x
    return out, size


def mask_to_canvas(mask: np.ndarray, spec: Any) -> torch.Tensor:
    """A mask of class positions on the canvas (nearest-neighbour), padding = ``IGNORE``."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
    canvas = spec.canvas
    size = tuple(canvas) if spec.fit == "stretch" else fit_size((int(t.shape[0]), int(t.shape[1])), canvas)
    if size != tuple(t.shape):
        t = F.interpolate(t[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    out = torch.full(tuple(canvas), IGNORE, dtype=torch.int64)
    out[: size[0], : size[1]] = t
    return out


def restore_proba(proba: torch.Tensor, size: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """(k, H, W) probabilities on the canvas -> (k, h, w) at the original image size."""
    p = proba[:, : size[0], : size[1]]
    if tuple(p.shape[-2:]) != tuple(shape):
        p = F.interpolate(p[None], size=tuple(shape), mode="bilinear", align_corners=False)[0]
        p = p / p.sum(0, keepdim=True).clamp_min(1e-8)
    return p


@dataclass
class Prepared:
    """A split on the canvas: images (N, C, H, W), targets, and each image's size inside the canvas.

    2.5-D: ``x`` holds single slices (M, 1, H, W) and ``context`` (N, C) the rows of ``x`` that are
    each sample's channels; :meth:`inputs` gathers them.
    """

    x: torch.Tensor
    y: torch.Tensor
    sizes: list[tuple[int, int]]
    shapes: list[tuple[int, int]]
    context: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x) if self.context is None else len(self.context)

    def inputs(self, idx: torch.Tensor | slice) -> torch.Tensor:
        """The network inputs (B, C, H, W) of the chosen samples."""
        if self.context is None:
            return self.x[idx]
        return self.x[self.context[idx], 0]

    @property
    def channels(self) -> int:
        return int(self.x.shape[1] if self.context is None else self.context.shape[1])


def prepare(images: list[np.ndarray], targets: list[Any], spec: Any) -> Prepared:
    """Images and targets (masks of class positions, a position, or a multi-hot vector) on the canvas."""
    n, canvas = len(images), spec.canvas
    x = torch.zeros((n, spec.in_channels, canvas[0], canvas[1]), dtype=torch.float32)
    sizes, shapes = [], []
    for i, image in enumerate(images):
        x[i], size = to_canvas(image, spec)
        sizes.append(size)
        shapes.append(tuple(image.shape[:2]))
    if spec.problem_type == "segmentation":
        y = (
            torch.stack([mask_to_canvas(m, spec) for m in targets])
            if n
            else torch.empty((0, *canvas), dtype=torch.long)
        )
    elif spec.multi_label:
        y = torch.tensor(np.array(targets, dtype=np.float32).reshape(-1, spec.num_classes))
    else:
        y = torch.tensor(np.asarray(targets, dtype=np.int64).reshape(-1))
    return Prepared(x, y, sizes, shapes)


def crop(
    data: Prepared, idx: torch.Tensor, patch: list[int], gen: torch.Generator, foreground: float = 1 / 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patches of the chosen samples, inside each image's area; a third centred on a
    labelled (foreground) pixel, so that small structures are seen often enough.
    """
    ph, pw = patch
    xs, ys = [], []
    for i in idx.tolist():
        h, w = data.sizes[i]
        y = data.y[i]
        cy: int | None = None
        cx: int | None = None
        if torch.rand((), generator=gen) < foreground:
            fg = torch.nonzero(y[:h, :w] > 0)
            if len(fg):
                cy, cx = fg[int(torch.randint(len(fg), (), generator=gen))].tolist()
        if cy is None or cx is None:
            cy = int(torch.randint(max(1, h), (), generator=gen))
            cx = int(torch.randint(max(1, w), (), generator=gen))
        top = min(max(0, cy - ph // 2), max(0, data.x.shape[-2] - ph))
        left = min(max(0, cx - pw // 2), max(0, data.x.shape[-1] - pw))
        xs.append(data.inputs(torch.tensor([i]))[0, :, top : top + ph, left : left + pw])
        ys.append(y[top : top + ph, left : left + pw])
    return torch.stack(xs), torch.stack(ys)


def augment(x: torch.Tensor, y: torch.Tensor, segmentation: bool, gen: torch.Generator):
    """Flips, a small rotation and scaling, and intensity jitter, drawn per sample from ``gen``."""
    n = x.shape[0]
    u = torch.rand((n, 8), generator=gen)
    flip_x, flip_y = u[:, 0] < 0.5, u[:, 1] < 0.5
    angle = (u[:, 2] - 0.5) * (2 * np.pi / 12)  # +-15 degrees
    scale = 0.85 + 0.3 * u[:, 3]
    spatial = u[:, 4] < 0.7
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[~spatial] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    theta[:, 0] *= torch.where(flip_x, -1.0, 1.0)[:, None]
    theta[:, 1] *= torch.where(flip_y, -1.0, 1.0)[:, None]
    h, w = x.shape[-2:]
    theta[:, 0, 1] *= h / w  # a rotation in pixels, not in normalised coordinates (no shear)
    theta[:, 1, 0] *= w / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if segmentation:  # sample target + 1 so that outside (0) becomes IGNORE
        shifted = torch.where(y == IGNORE, 0, y + 1).float()[:, None]
        y = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long() - 1
        y = torch.where(y < 0, IGNORE, y)
    gain = (0.85 + 0.3 * u[:, 5]).view(n, 1, 1, 1)
    shift = ((u[:, 6] - 0.5) * 0.3).view(n, 1, 1, 1)
    x = x * gain + shift
    return x, y


# -- volumes (2.5-D) ---------------------------------------------------------------------------


class VolumeSlicer:
    """One (Z, Y, X) volume as the network sees it: normalised as a whole, each slice resampled in-plane
    to the plan's pixel size and fit into the canvas; a sample is a slice with its neighbours as channels.
    """

    def __init__(self, volume: np.ndarray, spacing: Any, spec: Any) -> None:
        self.volume = volume
        self.depth = int(volume.shape[0])
        self.shape = (int(volume.shape[1]), int(volume.shape[2]))
        self.spec = spec
        norm = spec.normalization or {}
        self._clip: tuple[float, float] | None = None
        if norm.get("scheme") == "ct":
            lo, hi = norm["clip"]
            self._clip, self._mean, self._std = (float(lo), float(hi)), float(norm["mean"]), float(norm["std"])
        elif norm.get("scheme") == "dataset":  # classification: the data set's grey statistics
            lo, hi = np.asarray(norm["clip"], dtype=np.float64).reshape(-1, 2)[0]
            mean, std = np.ravel(norm["mean"])[0], np.ravel(norm["std"])[0]
            self._clip, self._mean, self._std = (float(lo), float(hi)), float(mean), float(std)
        else:  # z-score over the whole volume (every slice on the same scale)
            mean, std = _moments(volume)
            self._clip, self._mean, self._std = None, mean, max(std, 1e-6)
        dy, dx = (float(v) for v in list(spacing)[-2:])
        py, px = (float(v) for v in (spec.spacing or [dy, dx]))
        physical = (max(1, round(self.shape[0] * dy / py)), max(1, round(self.shape[1] * dx / px)))
        self.size = fit_size(physical, spec.canvas)
        reach = max(0, int(spec.context)) * max(1, int(spec.context_stride or 1))
        self.offsets = np.arange(-reach, reach + 1, max(1, int(spec.context_stride or 1)), dtype=np.int64)

    def rows(self, ks: Any) -> np.ndarray:
        """(len(ks), C) slice indices of each sample's channels, clamped at the ends."""
        return np.clip(np.asarray(ks, dtype=np.int64)[:, None] + self.offsets[None], 0, self.depth - 1)

    def planes(self, ks: Any) -> torch.Tensor:
        """Slices ``ks`` normalised and on the canvas: (n, H, W) float32, padding 0."""
        raw = np.asarray(self.volume[np.asarray(ks, dtype=np.int64)], dtype=np.float32)
        if self._clip is not None:
            np.clip(raw, *self._clip, out=raw)
        raw -= self._mean
        raw /= self._std
        x = torch.from_numpy(raw)
        if self.size != self.shape:
            x = F.interpolate(x[:, None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[:, 0]
        canvas = self.spec.canvas
        out = torch.zeros((len(x), canvas[0], canvas[1]), dtype=torch.float32)
        out[:, : self.size[0], : self.size[1]] = x
        return out

    def masks(self, mask: np.ndarray, ks: Any) -> torch.Tensor:
        """The label slices ``ks`` on the canvas (nearest neighbour), padding ``IGNORE``."""
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(mask)[np.asarray(ks, dtype=np.int64)], dtype=np.int64))
        if self.size != self.shape:
            t = F.interpolate(t[:, None].float(), size=self.size, mode="nearest-exact")[:, 0].long()
        canvas = self.spec.canvas
        out = torch.full((len(t), canvas[0], canvas[1]), IGNORE, dtype=torch.int64)
        out[:, : self.size[0], : self.size[1]] = t
        return out


def _moments(volume: np.ndarray, chunk: int = 16) -> tuple[float, float]:
    """Mean and standard deviation of every voxel, a few slices at a time (float64 sums, little memory)."""
    total = squares = 0.0
    for start in range(0, len(volume), chunk):
        part = np.asarray(volume[start : start + chunk], dtype=np.float64)
        total += float(part.sum())
        squares += float(np.square(part).sum())
    n = max(1, int(np.prod(volume.shape)))
    mean = total / n
    return mean, float(np.sqrt(max(0.0, squares / n - mean**2)))


def prepare_volumes(
    volumes: list[np.ndarray], targets: list[Any], spacings: list[Any], samples: list[list[int]], spec: Any
) -> Prepared:
    """The chosen slices of each volume as 2.5-D samples: each slice needed (a sample or a neighbour of
    one) held once, on the canvas; targets are the samples' label slices (segmentation) or the volume's
    class position / multi-hot vector, repeated for each of its slices (classification).
    """
    xs, ys, context, sizes, shapes = [], [], [], [], []
    held = 0
    segmentation = spec.problem_type == "segmentation"
    for volume, target, spacing, ks in zip(volumes, targets, spacings, samples, strict=True):
        if not len(ks):
            continue
        slicer = VolumeSlicer(volume, spacing, spec)
        rows = slicer.rows(ks)
        needed = np.unique(rows)
        position = np.full(slicer.depth, -1, dtype=np.int64)
        position[needed] = np.arange(len(needed)) + held
        xs.append(slicer.planes(needed))
        if segmentation:
            ys.append(slicer.masks(target, ks))
        elif spec.multi_label:
            ys.append(torch.tensor(np.asarray(target, dtype=np.float32)).reshape(1, -1).repeat(len(ks), 1))
        else:
            ys.append(torch.full((len(ks),), int(target), dtype=torch.int64))
        context.append(torch.from_numpy(position[rows]))
        sizes += [slicer.size] * len(ks)
        shapes += [slicer.shape] * len(ks)
        held += len(needed)
    canvas = spec.canvas
    channels = 2 * max(0, int(spec.context)) + 1
    if not xs:
        empty = torch.zeros((0, 1, canvas[0], canvas[1]))
        shape = (0, *canvas) if segmentation else (0, spec.num_classes) if spec.multi_label else (0,)
        y = torch.empty(shape, dtype=torch.float32 if spec.multi_label else torch.long)
        return Prepared(empty, y, [], [], torch.zeros((0, channels), dtype=torch.long))
    return Prepared(torch.cat(xs)[:, None], torch.cat(ys), sizes, shapes, torch.cat(context))
