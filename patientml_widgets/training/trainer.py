"""The training loop, evaluation and prediction, on arrays (no store access here).

The run orchestration (``patientml_widgets.runs``) loads a snapshot into arrays,
calls :func:`fit`, then :func:`evaluate` for the run and for the champion, and
writes everything back through the project.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .metrics import classification_metrics, multilabel_metrics, segmentation_metrics
from .models import build_builtin
from .spec import TrainSpec

__all__ = [
    "Cancelled",
    "FitResult",
    "TrainSpec",
    "build_model",
    "evaluate",
    "fit",
    "load_state_dict",
    "predict_proba",
    "init_distributed",
    "prepare_dataset",
    "prepare_images",
    "prepare_masks",
    "save_state_dict",
    "shutdown_distributed",
]

ModelFactory = Callable[[int, int], nn.Module]
TrainStep = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer], float]


class Cancelled(Exception):
    """Raised inside :func:`fit` when ``should_stop()`` says so."""


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    best_epoch: int
    val_metrics: dict[str, Any]
    seconds: float


# -- data ----------------------------------------------------------------------------


def prepare_images(images: list[np.ndarray], size: int, channels: int) -> torch.Tensor:
    """Stack images as (N, C, size, size) float32, each channel normalized to zero mean, unit variance."""
    out = torch.empty((len(images), channels, size, size), dtype=torch.float32)
    for i, arr in enumerate(images):
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        if x.shape[0] != channels:
            x = x.mean(0, keepdim=True).expand(channels, -1, -1) if channels != 1 else x.mean(0, keepdim=True)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = x.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        out[i] = (x - mean) / std
    return out


def prepare_masks(masks: list[np.ndarray], size: int) -> torch.Tensor:
    """Stack masks of class positions as (N, size, size) int64 (nearest-neighbour resize)."""
    out = torch.empty((len(masks), size, size), dtype=torch.int64)
    for i, m in enumerate(masks):
        t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.int64))
        if t.shape != (size, size):
            t = F.interpolate(t[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
        out[i] = t
    return out


def prepare_dataset(images: list[np.ndarray], targets: list[Any], spec: TrainSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and targets (masks of class positions, a position, or a multi-hot vector) as tensors."""
    x = prepare_images(images, spec.image_size, spec.in_channels)
    if spec.problem_type == "segmentation":
        y = prepare_masks(targets, spec.image_size)
    elif spec.multi_label:
        y = torch.tensor(np.array(targets, dtype=np.float32).reshape(-1, spec.num_classes))
    else:
        y = torch.tensor(targets, dtype=torch.int64)
    return x, y


def init_distributed() -> tuple[int, int, str]:
    """Join the process group torchrun set up: (rank, world size, backend)."""
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), dist.get_backend()


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# -- model ---------------------------------------------------------------------------


def build_model(spec: TrainSpec, factory: ModelFactory | None = None) -> nn.Module:
    if factory is not None:
        model = factory(spec.in_channels, spec.num_classes)
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
        return model
    return build_builtin(spec.architecture, spec.in_channels, spec.num_classes, spec.base_channels)


def save_state_dict(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}, buf)
    return buf.getvalue()


def load_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """Weights only: anything but a plain dict of tensors is refused (never unpickled)."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"not a plain state dict of weights ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a plain state dict of weights")
    return state


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(spec: TrainSpec, device: torch.device):
    enabled = spec.precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# -- loss ----------------------------------------------------------------------------


def loss_fn(spec: TrainSpec, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    if spec.problem_type == "segmentation":
        ce = F.cross_entropy(logits, target)
        probs = logits.softmax(1)
        onehot = F.one_hot(target, spec.num_classes).permute(0, 3, 1, 2).float()
        inter = (probs * onehot).sum((0, 2, 3))
        denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        dice = (2 * inter + 1) / (denom + 1)
        return ce + (1 - dice[1:].mean() if spec.num_classes > 1 else 0)
    if spec.multi_label:
        return F.binary_cross_entropy_with_logits(logits, target.float())
    return F.cross_entropy(logits, target)


def _augment(x: torch.Tensor, y: torch.Tensor, spec: TrainSpec, gen: torch.Generator):
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(-1)
        y = y.flip(-1) if spec.problem_type == "segmentation" else y
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(-2)
        y = y.flip(-2) if spec.problem_type == "segmentation" else y
    return x, y


def _default_step(spec: TrainSpec, device: torch.device) -> TrainStep:
    def step(model, images, targets, optimizer):
        optimizer.zero_grad(set_to_none=True)
        with _autocast(spec, device):
            logits = model(images)
        loss = loss_fn(spec, logits, targets)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


# -- fit -----------------------------------------------------------------------------


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit(
    spec: TrainSpec,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    factory: ModelFactory | None = None,
    train_step: TrainStep | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train; keep the weights of the epoch with the best validation objective.

    Under ``torch.distributed`` (torchrun), each process trains on its share of every
    epoch's batches and gradients are averaged (DistributedDataParallel).
    """
    t0 = time.perf_counter()
    gen = seed_everything(spec.seed)
    device = _device()
    model = build_model(spec, factory).to(device)
    if device.type == "cpu" and spec.problem_type == "segmentation":
        model = model.to(memory_format=torch.channels_last)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_x) / (spec.batch_size * world)))
    total = steps_per_epoch * spec.epochs
    warmup = max(1, total // 5)  # linear warm-up, then cosine decay (works for any number of steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, total) / total))
    )
    step_fn = train_step or _default_step(spec, device)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, Any]] | None = None
    done = 0
    for epoch in range(1, spec.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        per_rank = steps_per_epoch * spec.batch_size
        order = order.repeat(math.ceil(per_rank * world / max(1, len(order))))[: per_rank * world]
        mine = order[rank * per_rank : (rank + 1) * per_rank]
        losses = []
        for s in range(steps_per_epoch):
            if should_stop is not None and should_stop():
                raise Cancelled
            idx = mine[s * spec.batch_size : (s + 1) * spec.batch_size]
            x, y = train_x[idx], train_y[idx]
            if spec.augment:
                x, y = _augment(x, y, spec, gen)
            x, y = x.to(device), y.to(device)
            if device.type == "cpu" and spec.problem_type == "segmentation":
                x = x.contiguous(memory_format=torch.channels_last)
            losses.append(step_fn(model, x, y, optimizer))
            scheduler.step()
            done += 1
            if on_step is not None:
                elapsed = time.perf_counter() - t0
                on_step({"epoch": epoch, "epochs": spec.epochs, "step": done, "steps": total,
                         "loss": losses[-1], "eta_s": elapsed / done * (total - done)})  # fmt: skip
        val = evaluate(_unwrap(model), spec, val_x, val_y)[0] if len(val_x) else {}
        record = {"epoch": epoch, "train": {"loss": float(np.mean(losses))}, "val": _scalars(val)}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        score = val.get(spec.objective)
        score = -math.inf if score is None else float(score)
        if best is None or score > best[0]:
            state = {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}
            best = (score, epoch, state, val)
    assert best is not None
    return FitResult(best[2], history, best[1], best[3], time.perf_counter() - t0)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}


# -- evaluate and predict ------------------------------------------------------------


@torch.no_grad()
def predict_proba(model: nn.Module, spec: TrainSpec, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Class probabilities: (N, k) for classification, (N, k, H, W) for segmentation."""
    device = next(model.parameters()).device
    model.eval()
    outs = []
    for start in range(0, len(x), batch_size):
        with _autocast(spec, device):
            logits = model(x[start : start + batch_size].to(device)).float()
        outs.append(logits.sigmoid() if spec.multi_label else logits.softmax(1))
    if not outs:
        return torch.empty(0)
    return torch.cat(outs).cpu()


def evaluate(
    model: nn.Module, spec: TrainSpec, x: torch.Tensor, y: torch.Tensor
) -> tuple[dict[str, Any], torch.Tensor]:
    """Metrics of ``model`` on (x, y), and its probabilities."""
    proba = predict_proba(model, spec, x)
    if len(x) == 0:
        return {}, proba
    if spec.problem_type == "segmentation":
        loss = F.nll_loss(proba.clamp_min(1e-7).log(), y).item()
        return segmentation_metrics(y.numpy(), proba.argmax(1).numpy(), spec.num_classes, loss), proba
    if spec.multi_label:
        loss = F.binary_cross_entropy(proba.clamp(1e-7, 1 - 1e-7), y.float()).item()
        return multilabel_metrics(y.numpy(), proba.numpy(), loss), proba
    loss = F.nll_loss(proba.clamp_min(1e-7).log(), y).item()
    return classification_metrics(y.numpy(), proba.numpy(), loss), proba
