"""The training loop, evaluation and prediction, on arrays (no store access here).

The run orchestration (``patientml_widgets.runs``) loads a snapshot into arrays, takes
the fingerprint, resolves the spec with :func:`resolve` (plan + hardware), calls
:func:`fit`, then :func:`evaluate` for the run and for the champion, and writes
everything back through the project.

Training length is counted in optimisation steps: warm-up, a constant learning rate,
then a linear cool-down to zero that starts when the validation objective has stopped
improving (early stopping), when the time budget would otherwise be exceeded, or at the
last planned steps. The checkpoint with the best validation objective is kept.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import IGNORE, Prepared, augment, crop, restore_proba, to_canvas
from .hardware import Hardware
from .metrics import (
    classification_metrics,
    multilabel_metrics,
    segmentation_metrics,
    segmentation_metrics_from_counts,
)
from .models import build_builtin
from .plan import make_plan
from .spec import TrainSpec

__all__ = [
    "Cancelled",
    "FitResult",
    "TrainSpec",
    "build_model",
    "evaluate",
    "fit",
    "init_distributed",
    "load_state_dict",
    "predict_image",
    "resolve",
    "save_state_dict",
    "shutdown_distributed",
]

ModelFactory = Callable[[int, int], nn.Module]
TrainStep = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer], float]
MIN_DELTA = 1e-3  # an improvement of the validation objective smaller than this is no improvement
PATIENCE = 5  # evaluations without improvement before the cool-down starts
COOLDOWN = 0.2  # the cool-down's length, as a share of the steps done before it


class Cancelled(Exception):
    """Raised inside :func:`fit` when ``should_stop()`` says so."""


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    best_epoch: int  # the evaluation round of the best checkpoint (1-based)
    best_step: int
    steps: int
    stopped: str  # why training ended: early stopping, time budget, planned steps
    val_metrics: dict[str, Any]
    seconds: float


# -- plan -----------------------------------------------------------------------------


def resolve(spec: TrainSpec, fp: dict[str, Any], hardware: Hardware) -> tuple[TrainSpec, dict[str, Any]]:
    """The spec with every auto setting filled in from the fingerprint and the hardware, and the plan.

    Under torch.distributed every rank takes rank 0's plan, so that all train the same network
    for the same number of steps whatever each one measured of its own machine.
    """
    plan = make_plan(fp, spec.to_dict(), device=hardware.device, memory_bytes=hardware.memory_bytes)
    distributed, _, _ = _distributed()
    if distributed:
        shared = [plan]
        torch.distributed.broadcast_object_list(shared, src=0)
        plan = shared[0]
    fields = {k: v for k, v in plan.items() if hasattr(spec, k)}
    return replace(spec, **fields, precision=hardware.precision), plan


def init_distributed() -> tuple[int, int, str]:
    """Join the process group torchrun set up: (rank, world size, backend)."""
    import os

    import torch.distributed as dist

    if torch.cuda.is_available():  # one GPU per process on each node; CPU tensors (decisions) over gloo
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group("cuda:nccl,cpu:gloo")
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), dist.get_backend()


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _distributed() -> tuple[bool, int, int]:
    on = torch.distributed.is_available() and torch.distributed.is_initialized()
    return (True, torch.distributed.get_rank(), torch.distributed.get_world_size()) if on else (False, 0, 1)


def _agree(value: float, distributed: bool) -> float:
    """Rank 0's value, on every rank (so all ranks stop, cool down and evaluate together)."""
    if not distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.broadcast(t, src=0)
    return float(t.item())


# -- model ---------------------------------------------------------------------------


def build_model(spec: TrainSpec, factory: ModelFactory | None = None) -> nn.Module:
    if factory is not None:
        model = factory(spec.in_channels, spec.num_classes)
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
        return model
    return build_builtin(spec)


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


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _layout(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


# -- loss ----------------------------------------------------------------------------


def loss_fn(spec: TrainSpec, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Segmentation: cross-entropy + soft Dice of the foreground classes over the batch (padding ignored).
    Classification: cross-entropy with the plan's class weights (multi-label: BCE with positive weights).
    """
    logits = logits.float()
    weights = torch.tensor(spec.class_weights, device=logits.device) if spec.class_weights else None
    if spec.problem_type == "segmentation":
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
        if spec.num_classes < 2:
            return ce
        valid = (target != IGNORE).unsqueeze(1).float()
        probs = logits.softmax(1) * valid
        onehot = F.one_hot(target.clamp_min(0), spec.num_classes).permute(0, 3, 1, 2).float() * valid
        inter = (probs * onehot).sum((0, 2, 3))
        denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        dice = (2 * inter + 1e-5) / (denom + 1e-5)
        return ce + (1 - dice[1:].mean())
    if spec.multi_label:
        return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=weights)
    return F.cross_entropy(logits, target, weight=weights)


def _default_step(spec: TrainSpec, device: torch.device, scaler: Any) -> TrainStep:
    def step(model, images, targets, optimizer):
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, spec.precision):
            logits = model(images)
        loss = loss_fn(spec, logits, targets)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
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


def make_deterministic() -> None:
    """Ask torch for deterministic algorithms (warning, not failing, where an op has none)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


class _Schedule:
    """Linear warm-up, a constant rate, then a linear cool-down to zero once it is started."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.warmup = max(1, min(100, total // 10))
        self.cooldown: tuple[int, int] | None = None  # (first step, length)

    def start_cooldown(self, step: int) -> None:
        if self.cooldown is None:
            length = max(1, min(self.total - step, max(20, round(COOLDOWN * step))))
            self.cooldown = (step, length)
            self.total = step + length

    def factor(self, step: int) -> float:
        if self.cooldown is None and step >= self.total - max(1, round(COOLDOWN * self.total / (1 + COOLDOWN))):
            self.start_cooldown(step)
        warm = min(1.0, (step + 1) / self.warmup)
        if self.cooldown is None:
            return warm
        first, length = self.cooldown
        return warm * max(0.0, 1 - (step - first) / length)


def fit(
    spec: TrainSpec,
    train: Prepared,
    val: Prepared,
    *,
    device: str = "cpu",
    factory: ModelFactory | None = None,
    train_step: TrainStep | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    direction: str = "max",
) -> FitResult:
    """Train a resolved spec; keep the weights with the best validation objective.

    Under ``torch.distributed`` (torchrun), each process trains on its share of every
    step's batch, gradients are averaged (DistributedDataParallel) and rank 0's decisions
    (cancel, cool-down, stop) are broadcast so that all ranks agree.
    """
    if spec.steps < 1 or not spec.canvas or not spec.batch_size or not spec.lr:
        raise ValueError("fit needs a resolved spec (steps, canvas, batch size, lr): see resolve()")
    t0 = time.perf_counter()
    budget = spec.budget_s if spec.budget_s > 0 else math.inf
    order = seed_everything(spec.seed)  # which samples each step takes: the same on every rank
    dev = torch.device(device)
    model = build_model(spec, factory).to(dev)
    if dev.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    distributed, rank, world = _distributed()
    if distributed:
        ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if spec.precision == "fp16" and dev.type == "cuda" else None
    step_fn = train_step or _default_step(spec, dev, scaler)
    schedule = _Schedule(spec.steps)
    sign = 1.0 if direction == "max" else -1.0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    stale, losses, stopped = 0, [], "planned steps"
    step_time = eval_time = 0.0
    n = len(train)
    batch = max(1, spec.batch_size // world)  # each rank's share of the step's batch
    gen = torch.Generator().manual_seed(spec.seed * 1009 + rank)  # patches and augmentation
    segmentation = spec.problem_type == "segmentation"
    step = 0
    while step < schedule.total:
        if _agree(bool(should_stop is not None and should_stop()), distributed):
            raise Cancelled
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = spec.lr * schedule.factor(step)
        idx = torch.randint(n, (batch * world,), generator=order)[rank * batch : (rank + 1) * batch]
        if segmentation and spec.patch and list(spec.patch) != list(spec.canvas):
            x, y = crop(train, idx, spec.patch, gen)
        else:
            x, y = train.x[idx], train.y[idx]
        if spec.augment:
            x, y = augment(x, y, segmentation, gen)
        model.train()
        losses.append(step_fn(model, _layout(x.to(dev), dev), y.to(dev), optimizer))
        step += 1
        step_time = (
            (time.perf_counter() - started) if step <= 2 else 0.9 * step_time + 0.1 * (time.perf_counter() - started)
        )
        elapsed = time.perf_counter() - t0
        per_step = step_time + eval_time / max(1, spec.eval_every)
        if schedule.cooldown is None and _agree(elapsed + per_step * max(20, COOLDOWN * step) >= budget, distributed):
            schedule.start_cooldown(step)
            stopped = "time budget"
        if on_step is not None:
            eta = per_step * (schedule.total - step)
            if schedule.cooldown is None:
                eta = min(eta, max(0.0, budget - elapsed))
            on_step(
                {
                    "step": step,
                    "steps": schedule.total,
                    "epoch": round(step * batch * world / n, 2),
                    "loss": losses[-1],
                    "eta_s": eta,
                    "lr": spec.lr * schedule.factor(step),
                }
            )
        if step % spec.eval_every and step < schedule.total:
            continue
        started = time.perf_counter()
        metrics = evaluate(_unwrap(model), spec, val, device=dev, full=False)[0] if len(val) else {}
        eval_time = time.perf_counter() - started
        record = {
            "epoch": len(history) + 1,
            "step": step,
            "train": {"loss": float(np.mean(losses))},
            "val": _scalars(metrics),
            "lr": spec.lr * schedule.factor(step - 1),
        }
        losses = []
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        value = metrics.get(spec.objective)
        score = None if value is None else sign * float(value)
        # without a validation objective (an empty split, the AUROC of one class) the latest
        # checkpoint is kept until there is one, and it never counts towards early stopping
        unscored = best is None or best["score"] is None
        if unscored or (score is not None and score > best["score"] + MIN_DELTA):
            state = {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}
            best = {"score": score, "epoch": record["epoch"], "step": step, "state": state, "val": metrics}
            stale = 0
        elif score is not None:
            stale += 1
        if spec.early_stopping and schedule.cooldown is None and _agree(stale >= PATIENCE, distributed):
            schedule.start_cooldown(step)
            stopped = "early stopping (validation objective stopped improving)"
    assert best is not None
    return FitResult(
        best["state"], history, best["epoch"], best["step"], step, stopped, best["val"], time.perf_counter() - t0
    )


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}


# -- evaluate and predict ------------------------------------------------------------


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    spec: TrainSpec,
    x: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
) -> torch.Tensor:
    """Class probabilities on the canvas: (N, k) for classification, (N, k, H, W) for segmentation.

    Segmentation averages the probabilities of the image and its flips when ``spec.tta``.
    """
    dev = torch.device(device)
    model.eval()
    precision = spec.precision if precision is None else precision
    tta = spec.tta if tta is None else tta
    flips = [(), (-1,), (-2,)] if tta and spec.problem_type == "segmentation" else [()]
    outs = []
    for start in range(0, len(x), batch_size):
        xb = _layout(x[start : start + batch_size].to(dev), dev)
        total = None
        for dims in flips:
            with _autocast(dev, precision):
                logits = model(xb.flip(dims) if dims else xb).float()
            p = logits.sigmoid() if spec.multi_label else logits.softmax(1)
            p = p.flip(dims) if dims else p
            total = p if total is None else total + p
        outs.append((total / len(flips)).cpu())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def predict_image(model: nn.Module, spec: TrainSpec, image: np.ndarray, **kwargs: Any) -> torch.Tensor:
    """Probabilities for one image as stored: (k,), or (k, h, w) at the image's own size."""
    x, size = to_canvas(image, spec)
    proba = predict_proba(model, spec, x[None], **kwargs)[0]
    if spec.problem_type == "segmentation":
        return restore_proba(proba, size, image.shape[:2])
    return proba


def evaluate(
    model: nn.Module,
    spec: TrainSpec,
    data: Prepared,
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    full: bool = True,
    masks: list[np.ndarray] | None = None,
) -> tuple[dict[str, Any], list[torch.Tensor] | torch.Tensor]:
    """Metrics of ``model`` on a prepared split, and its probabilities.

    Segmentation with ``full`` (and the original ``masks``) is scored at each image's original
    resolution, the probabilities resampled back, and returns the predicted label maps (uint8 class
    positions at each image's size) instead of probabilities; otherwise on the canvas, padding ignored.
    """
    tta = None if full else False
    proba = predict_proba(model, spec, data.x, device=device, precision=precision, tta=tta)
    if len(data) == 0:
        return {}, proba
    if spec.problem_type == "segmentation":
        if full and masks is not None:  # one image at a time: a few full-size maps in memory, not all
            k = spec.num_classes
            counts = np.zeros(k * k, dtype=np.int64)
            loss_sum, pixels, predicted = 0.0, 0, []
            for p, size, shape, mask in zip(proba, data.sizes, data.shapes, masks):
                restored = restore_proba(p, size, shape)
                truth = torch.from_numpy(np.asarray(mask, dtype=np.int64))
                pred = restored.argmax(0)
                counts += np.bincount((truth * k + pred).numpy().ravel(), minlength=k * k)
                loss_sum += float(F.nll_loss(restored.clamp_min(1e-7).log()[None], truth[None], reduction="sum"))
                pixels += truth.numel()
                predicted.append(pred.numpy().astype(np.uint8))
            metrics = segmentation_metrics_from_counts(counts.reshape(k, k), loss_sum / max(1, pixels))
            metrics["n"] = len(masks)
            return metrics, predicted
        valid = data.y != IGNORE
        truth, pred = data.y[valid].numpy(), proba.argmax(1)[valid].numpy()
        loss = F.nll_loss(proba.clamp_min(1e-7).log(), data.y, ignore_index=IGNORE).item()
        metrics = segmentation_metrics(truth, pred, spec.num_classes, loss)
        metrics["n"] = len(data)
        return metrics, proba
    if spec.multi_label:
        loss = F.binary_cross_entropy(proba.clamp(1e-7, 1 - 1e-7), data.y.float()).item()
        return multilabel_metrics(data.y.numpy(), proba.numpy(), loss), proba
    loss = F.nll_loss(proba.clamp_min(1e-7).log(), data.y).item()
    return classification_metrics(data.y.numpy(), proba.numpy(), loss), proba
