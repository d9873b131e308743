"""The training loop, evaluation and prediction, on arrays (no store access here).

The run orchestration (``patientml_widgets.runs``) loads a snapshot into arrays, takes
the fingerprint, resolves the spec with :func:`resolve` (plan + hardware), calls
:func:`fit`, then :func:`evaluate` for the run and for the champion, and writes
everything back through the project.

Training length is counted in optimisation steps: warm-up, a constant learning rate,
then a linear cool-down to zero that starts when the validation objective has stopped
improving (early stopping), when the time budget would otherwise be exceeded, or at the
last planned steps. The checkpoint with the best validation objective is kept.

A guided run (``spec.guidance``: the built-in U-Net with two click maps in and the clicked object's logit out)
learns from clicks simulated on each batch (``training.guidance``) besides the classes; :func:`propose_image`
gives its proposal for a person's prompts, :func:`propose_prepared` for many at once (the clicker's scores).
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

from ..errors import ValidationError
from ..interactive.prompts import Prompts
from . import guidance
from .data import IGNORE, Prepared, VolumeSlicer, augment, crop, restore_proba, to_canvas
from .hardware import Hardware
from .metrics import (
    classification_metrics,
    multilabel_metrics,
    segmentation_metrics,
    segmentation_metrics_from_counts,
    volume_metrics,
)
from .models import GuidedUNet, build_builtin
from .plan import make_plan
from .spec import TrainSpec

__all__ = [
    "Cancelled",
    "FitResult",
    "TrainSpec",
    "build_model",
    "evaluate",
    "evaluate_volumes",
    "fit",
    "init_distributed",
    "load_state_dict",
    "predict_image",
    "predict_volume",
    "propose_canvas",
    "propose_image",
    "propose_prepared",
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
    except Exception as e:  # torch raises many kinds (unpickling, zip, EOF, runtime) for a damaged file
        raise ValidationError(f"the weights are damaged or not a plain state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValidationError("the weights are not a plain state dict of tensors")
    return state


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the network
    assert isinstance(inner, nn.Module)
    return inner


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


def _default_step(spec: TrainSpec, device: torch.device, scaler: Any, seed: int = 0) -> TrainStep:
    """The built-in step: the loss of :func:`loss_fn`, plus the clicked objects' loss when the run is guided."""
    guided = _guided_loss(spec, device, seed) if spec.guidance else None

    def step(model, images, targets, optimizer):
        optimizer.zero_grad(set_to_none=True)
        if guided is not None:
            loss = guided(model, images, targets)
        else:
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


def _guided_loss(
    spec: TrainSpec, device: torch.device, seed: int
) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A guided run's loss: clicks simulated on the batch's labels (``training.guidance``; on some steps one
    more at the network's largest error, from a pass without gradients), the class logits' loss on every
    sample and the object logit's on the clicked ones.
    """
    rng = np.random.default_rng(seed)
    radius = guidance.click_radius(spec.canvas)
    k = spec.num_classes

    def loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        labels = targets.cpu().numpy()
        shape = (int(labels.shape[1]), int(labels.shape[2]))
        batch = guidance.simulate(labels, rng)
        rows = np.flatnonzero(batch.guided)
        if len(rows) and rng.random() < guidance.CORRECTION_SHARE:
            net = _unwrap(model)
            assert isinstance(net, GuidedUNet)
            maps = _layout(guidance.click_maps([batch.prompts[i] for i in rows], shape, radius).to(device), device)
            with torch.no_grad(), _autocast(device, spec.precision):
                out = net(images[torch.from_numpy(rows).to(device)], maps).float().cpu().numpy()
            positive = maps[:, 0].cpu().numpy() > 0
            proposed = np.stack([guidance.proposal(z, clicked) >= 0.5 for z, clicked in zip(out, positive)])
            batch = batch.corrected(rows, proposed, labels != IGNORE)
        maps = _layout(guidance.click_maps(batch.prompts, shape, radius).to(device), device)
        with _autocast(device, spec.precision):
            logits = model(images, maps)
        objects = torch.from_numpy(batch.objects).to(device)
        guided = torch.from_numpy(batch.guided).to(device)
        return loss_fn(spec, logits[:, :k], targets) + guidance.object_loss(
            logits[:, k], objects, targets != IGNORE, guided
        )

    return loss


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
    run = _Training(spec, train, val, device, factory, train_step, direction)
    while run.step < run.schedule.total:
        run.cancel_if_asked(should_stop)
        run.take_step()
        run.cool_down_if_over_budget()
        if on_step is not None:
            on_step(run.progress())
        if not run.evaluation_due():
            continue
        metrics, record = run.validate()
        if on_epoch is not None:
            on_epoch(record)
        run.keep_if_best(metrics, record)
        run.cool_down_if_stale()
    return run.result()


def _on_device(model: nn.Module, dev: torch.device) -> nn.Module:
    model = model.to(dev)
    if dev.type != "cpu":
        return model
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it


def _data_parallel(model: nn.Module, dev: torch.device) -> nn.Module:
    ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class _Training:
    """One :func:`fit` in progress.

    It holds the model and its optimiser, the schedule, the step and evaluation timings, the best
    checkpoint so far and the evaluations without improvement since it (early stopping).
    """

    def __init__(
        self,
        spec: TrainSpec,
        train: Prepared,
        val: Prepared,
        device: str,
        factory: ModelFactory | None,
        train_step: TrainStep | None,
        direction: str,
    ) -> None:
        self.t0 = time.perf_counter()
        self.spec, self.train, self.val = spec, train, val
        self.budget = spec.budget_s if spec.budget_s > 0 else math.inf
        self.order = seed_everything(spec.seed)  # which samples each step takes: the same on every rank
        self.dev = torch.device(device)
        self.model = _on_device(build_model(spec, factory), self.dev)
        self.distributed, self.rank, self.world = _distributed()
        if self.distributed:
            self.model = _data_parallel(self.model, self.dev)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        scaler = torch.amp.GradScaler("cuda") if spec.precision == "fp16" and self.dev.type == "cuda" else None
        self.step_fn = train_step or _default_step(spec, self.dev, scaler, seed=spec.seed * 1009 + self.rank)
        self.schedule = _Schedule(spec.steps)
        self.sign = 1.0 if direction == "max" else -1.0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.losses: list[float] = []
        self.stale, self.stopped = 0, "planned steps"
        self.step_time = self.eval_time = 0.0
        self.elapsed = self.per_step = 0.0  # of the latest step: seconds since the start, and per step with evals
        self.n = len(train)
        self.batch = max(1, spec.batch_size // self.world)  # each rank's share of the step's batch
        self.gen = torch.Generator().manual_seed(spec.seed * 1009 + self.rank)  # patches and augmentation
        self.segmentation = spec.problem_type == "segmentation"
        self.step = 0

    def cancel_if_asked(self, should_stop: Callable[[], bool] | None) -> None:
        if _agree(bool(should_stop is not None and should_stop()), self.distributed):
            raise Cancelled

    def take_step(self) -> None:
        """One optimisation step at the schedule's learning rate, timed."""
        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = self.spec.lr * self.schedule.factor(self.step)
        x, y = self._next_batch()
        self.model.train()
        self.losses.append(self.step_fn(self.model, _layout(x.to(self.dev), self.dev), y.to(self.dev), self.optimizer))
        self.step += 1
        self.step_time = (
            (time.perf_counter() - started)
            if self.step <= 2
            else 0.9 * self.step_time + 0.1 * (time.perf_counter() - started)
        )

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the step's samples: patches if the plan has them, augmented if asked."""
        spec, batch, rank = self.spec, self.batch, self.rank
        idx = torch.randint(self.n, (batch * self.world,), generator=self.order)[rank * batch : (rank + 1) * batch]
        if self.segmentation and spec.patch and list(spec.patch) != list(spec.canvas):
            x, y = crop(self.train, idx, spec.patch, self.gen)
        else:
            x, y = self.train.inputs(idx), self.train.y[idx]
        if spec.augment:
            x, y = augment(x, y, self.segmentation, self.gen)
        return x, y

    def cool_down_if_over_budget(self) -> None:
        """Start the cool-down when the rest of the time budget holds no more than it."""
        self.elapsed = time.perf_counter() - self.t0
        self.per_step = self.step_time + self.eval_time / max(1, self.spec.eval_every)
        cooldown_s = self.per_step * max(20, COOLDOWN * self.step)
        if self.schedule.cooldown is None and _agree(self.elapsed + cooldown_s >= self.budget, self.distributed):
            self.schedule.start_cooldown(self.step)
            self.stopped = "time budget"

    def progress(self) -> dict[str, Any]:
        """What ``on_step`` is told: the step, the steps planned, the loss, the time left, the learning rate."""
        eta = self.per_step * (self.schedule.total - self.step)
        if self.schedule.cooldown is None:
            eta = min(eta, max(0.0, self.budget - self.elapsed))
        return {
            "step": self.step,
            "steps": self.schedule.total,
            "epoch": round(self.step * self.batch * self.world / self.n, 2),
            "loss": self.losses[-1],
            "eta_s": eta,
            "lr": self.spec.lr * self.schedule.factor(self.step),
        }

    def evaluation_due(self) -> bool:
        return not (self.step % self.spec.eval_every and self.step < self.schedule.total)

    def validate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The validation metrics, and the history record of this evaluation round (appended)."""
        started = time.perf_counter()
        val = self.val
        metrics = evaluate(_unwrap(self.model), self.spec, val, device=self.dev, full=False)[0] if len(val) else {}
        self.eval_time = time.perf_counter() - started
        record = {
            "epoch": len(self.history) + 1,
            "step": self.step,
            "train": {"loss": float(np.mean(self.losses))},
            "val": _scalars(metrics),
            "lr": self.spec.lr * self.schedule.factor(self.step - 1),
        }
        self.losses = []
        self.history.append(record)
        return metrics, record

    def keep_if_best(self, metrics: dict[str, Any], record: dict[str, Any]) -> None:
        """Keep a copy of the weights if the objective improved, else count one more stale evaluation."""
        value = metrics.get(self.spec.objective)
        score = None if value is None else self.sign * float(value)
        # without a validation objective (an empty split, the AUROC of one class) the latest
        # checkpoint is kept until there is one, and it never counts towards early stopping
        best = self.best
        if best is None or best["score"] is None or (score is not None and score > best["score"] + MIN_DELTA):
            state = {k: v.detach().cpu().clone() for k, v in _unwrap(self.model).state_dict().items()}
            self.best = {"score": score, "epoch": record["epoch"], "step": self.step, "state": state, "val": metrics}
            self.stale = 0
        elif score is not None:
            self.stale += 1

    def cool_down_if_stale(self) -> None:
        """Early stopping: start the cool-down after PATIENCE evaluations without improvement."""
        if (
            self.spec.early_stopping
            and self.schedule.cooldown is None
            and _agree(self.stale >= PATIENCE, self.distributed)
        ):
            self.schedule.start_cooldown(self.step)
            self.stopped = "early stopping (validation objective stopped improving)"

    def result(self) -> FitResult:
        best = self.best
        assert best is not None
        seconds = time.perf_counter() - self.t0
        return FitResult(
            best["state"], self.history, best["epoch"], best["step"], self.step, self.stopped, best["val"], seconds
        )


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}


# -- evaluate and predict ------------------------------------------------------------


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    spec: TrainSpec,
    x: torch.Tensor | Prepared,
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
) -> torch.Tensor:
    """Class probabilities on the canvas: (N, k) for classification, (N, k, H, W) for segmentation.

    ``x``: the inputs, or a prepared split (2.5-D samples are gathered a batch at a time).
    Segmentation averages the probabilities of the image and its flips when ``spec.tta``.
    """
    dev = torch.device(device)
    model.eval()
    precision = spec.precision if precision is None else precision
    tta = spec.tta if tta is None else tta
    flips = [(), (-1,), (-2,)] if tta and spec.problem_type == "segmentation" else [()]
    outs = []
    for start in range(0, len(x), batch_size):
        part = x.inputs(slice(start, start + batch_size)) if isinstance(x, Prepared) else x[start : start + batch_size]
        xb = _layout(part.to(dev), dev)
        total: torch.Tensor | None = None
        for dims in flips:
            with _autocast(dev, precision):
                logits = model(xb.flip(dims) if dims else xb).float()
            p = logits.sigmoid() if spec.multi_label else logits.softmax(1)
            p = p.flip(dims) if dims else p
            total = p if total is None else total + p
        assert total is not None
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


def propose_image(
    model: nn.Module,
    spec: TrainSpec,
    image: np.ndarray,
    prompts: Prompts,
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
) -> np.ndarray:
    """A guided network's proposal for one image as stored: the probability (h, w) float32 that each pixel
    belongs to the object the prompts point at, at the image's own size (zeros for no prompt).

    The image goes to the canvas as for :func:`predict_image`, the prompts with it
    (:func:`~.guidance.canvas_prompts`); the object is :func:`~.guidance.proposal` of the network's logits (the object
    map extended by the clicked class, the parts a positive prompt touches), and a box also bounds it.
    """
    image = np.asarray(image)
    x, size = to_canvas(image, spec)
    shape = (int(image.shape[0]), int(image.shape[1]))
    return propose_canvas(model, spec, x[None], [size], [shape], [prompts], device=device, precision=precision)[0]


def propose_prepared(
    model: nn.Module,
    spec: TrainSpec,
    data: Prepared,
    items: list[tuple[int, Prompts]],
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """:func:`propose_image` for several (image number, prompts) of a prepared split, ``batch_size`` at a time."""
    out: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        part = items[start : start + batch_size]
        rows = [i for i, _ in part]
        sizes, shapes = [data.sizes[i] for i in rows], [data.shapes[i] for i in rows]
        x = data.inputs(torch.tensor(rows))
        out += propose_canvas(model, spec, x, sizes, shapes, [p for _, p in part], device=device, precision=precision)
    return out


@torch.no_grad()
def propose_canvas(
    model: nn.Module,
    spec: TrainSpec,
    x: torch.Tensor,
    sizes: list[tuple[int, int]],
    shapes: list[tuple[int, int]],
    prompts: list[Prompts],
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
) -> list[np.ndarray]:
    """The proposals for images on the canvas (B, C, H, W), each occupying ``sizes`` of it and of ``shapes``
    as stored, with their prompts in the images' pixels: float32 maps at each image's own size.
    """
    if not isinstance(model, GuidedUNet):
        raise ValidationError(
            "this run was trained without clicks (guidance off); a run with hyperparameters={'guidance': True} "
            "proposes objects"
        )
    dev = torch.device(device)
    radius = guidance.click_radius(spec.canvas)
    canvas = (int(spec.canvas[0]), int(spec.canvas[1]))
    moved = [guidance.canvas_prompts(p, shape, size, radius) for p, shape, size in zip(prompts, shapes, sizes)]
    maps = guidance.click_maps(moved, canvas, radius)
    model.eval()
    with _autocast(dev, spec.precision if precision is None else precision):
        logits = model(_layout(x.to(dev), dev), _layout(maps.to(dev), dev)).float().cpu().numpy()
    out = []
    for z, positive, size, shape, p in zip(logits, maps[:, 0].numpy() > 0, sizes, shapes, prompts, strict=True):
        proba = torch.from_numpy(guidance.proposal(z, positive))[None, None, : size[0], : size[1]]
        if tuple(size) != tuple(shape):
            proba = F.interpolate(proba, size=shape, mode="bilinear", align_corners=False)
        o = proba[0, 0].clamp(0, 1).numpy()
        if p.empty:
            o = np.zeros(shape, np.float32)
        elif p.box is not None:  # pixels whose centre lies inside the box
            x0, y0, x1, y1 = p.box
            rows, cols = np.arange(shape[0]), np.arange(shape[1])
            o = o * (((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None])
        out.append(o.astype(np.float32))
    return out


def evaluate(
    model: nn.Module,
    spec: TrainSpec,
    data: Prepared,
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    full: bool = True,
    masks: list[np.ndarray] | None = None,
) -> tuple[dict[str, Any], list[np.ndarray] | torch.Tensor]:
    """Metrics of ``model`` on a prepared split, and its probabilities.

    Segmentation with ``full`` (and the original ``masks``) is scored at each image's original
    resolution, the probabilities resampled back, and returns the predicted label maps (uint8 class
    positions at each image's size) instead of probabilities; otherwise on the canvas, padding ignored.
    """
    tta = None if full else False
    proba = predict_proba(model, spec, data, device=device, precision=precision, tta=tta)
    if len(data) == 0:
        return {}, proba
    if spec.problem_type == "segmentation":
        if full and masks is not None:  # one image at a time: a few full-size maps in memory, not all
            k = spec.num_classes
            counts = np.zeros(k * k, dtype=np.int64)
            loss_sum, pixels, predicted = 0.0, 0, []
            for p, size, shape, mask in zip(proba, data.sizes, data.shapes, masks):
                restored = restore_proba(p, size, shape)
                target = torch.from_numpy(np.asarray(mask, dtype=np.int64))
                pred = restored.argmax(0)
                counts += np.bincount((target * k + pred).numpy().ravel(), minlength=k * k)
                loss_sum += float(F.nll_loss(restored.clamp_min(1e-7).log()[None], target[None], reduction="sum"))
                pixels += target.numel()
                predicted.append(pred.numpy().astype(np.uint8))
            metrics = segmentation_metrics_from_counts(counts.reshape(k, k), loss_sum / max(1, pixels))
            metrics["n"] = len(masks)
            return metrics, predicted
        valid = data.y != IGNORE
        loss = F.nll_loss(proba.clamp_min(1e-7).log(), data.y, ignore_index=IGNORE).item()
        metrics = segmentation_metrics(data.y[valid].numpy(), proba.argmax(1)[valid].numpy(), spec.num_classes, loss)
        metrics["n"] = len(data)
        return metrics, proba
    if spec.multi_label:
        loss = F.binary_cross_entropy(proba.clamp(1e-7, 1 - 1e-7), data.y.float()).item()
        return multilabel_metrics(data.y.numpy(), proba.numpy(), loss), proba
    loss = F.nll_loss(proba.clamp_min(1e-7).log(), data.y).item()
    return classification_metrics(data.y.numpy(), proba.numpy(), loss), proba


# -- volumes (2.5-D) -----------------------------------------------------------------------


@dataclass
class VolumePrediction:
    """A whole volume's prediction. Segmentation: class positions (Z, Y, X) uint8, the mean probability of
    each class over its voxels, 1 - the mean top probability (uncertainty), and the summed NLL of a given
    target. Classification: no positions; the mean of the central slices' probabilities.
    """

    positions: np.ndarray | None
    mean_proba: np.ndarray
    uncertainty: float
    loss_sum: float = 0.0


@torch.no_grad()
def predict_volume(
    model: nn.Module,
    spec: TrainSpec,
    volume: np.ndarray,
    spacing: Any,
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    batch_size: int = 16,
    target: np.ndarray | None = None,
) -> VolumePrediction:
    """Predict a (Z, Y, X) volume slice by slice, ``batch_size`` slices (with their neighbours) at a time.

    Each batch's probabilities are resampled to the slices' own size and reduced at once (argmax, sums):
    the volume's per-class probabilities are never all held (a 512 x 512 x 300 CT of 4 classes would be 1.3 GB).
    """
    dev = torch.device(device)
    slicer = VolumeSlicer(volume, spacing, spec)
    if spec.problem_type != "segmentation":
        return _classify_volume(model, spec, slicer, dev, precision, batch_size)
    z, (h, w), k = slicer.depth, slicer.shape, spec.num_classes
    positions = np.empty((z, h, w), dtype=np.uint8)
    proba_sum = torch.zeros(k, dtype=torch.float64)
    top_sum, loss_sum = 0.0, 0.0
    for start in range(0, z, batch_size):
        ks = np.arange(start, min(z, start + batch_size))
        rows = slicer.rows(ks)
        needed = np.unique(rows)
        planes = slicer.planes(needed)
        x = planes[torch.from_numpy(np.searchsorted(needed, rows))]  # (B, C, H, W)
        p = predict_proba(model, spec, x, device=dev, precision=precision, batch_size=len(x))
        p = p[:, :, : slicer.size[0], : slicer.size[1]]
        if slicer.size != (h, w):
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            p = p / p.sum(1, keepdim=True).clamp_min(1e-8)
        top, arg = p.max(1)
        positions[start : start + len(ks)] = arg.numpy().astype(np.uint8)
        proba_sum += p.sum((0, 2, 3)).double()
        top_sum += float(top.double().sum())
        if target is not None:
            t = torch.from_numpy(np.ascontiguousarray(target[start : start + len(ks)], dtype=np.int64))
            loss_sum += float(F.nll_loss(p.clamp_min(1e-7).log(), t, reduction="sum"))
    voxels = max(1, z * h * w)
    return VolumePrediction(positions, (proba_sum / voxels).numpy(), float(1 - top_sum / voxels), loss_sum)


def _classify_volume(
    model: nn.Module, spec: TrainSpec, slicer: VolumeSlicer, dev: torch.device, precision: str | None, batch_size: int
) -> VolumePrediction:
    """The mean of the class probabilities of the volume's central slices (each with its neighbours)."""
    from .plan import central_slices

    ks = np.asarray(central_slices(slicer.depth))
    rows = slicer.rows(ks)
    needed = np.unique(rows)
    x = slicer.planes(needed)[torch.from_numpy(np.searchsorted(needed, rows))]
    p = predict_proba(model, spec, x, device=dev, precision=precision, batch_size=batch_size).double().mean(0)
    proba = p.numpy()
    uncertainty = float(np.mean(1 - np.abs(2 * proba - 1))) if spec.multi_label else float(1 - proba.max())
    return VolumePrediction(None, proba, uncertainty)


def evaluate_volumes(
    model: nn.Module,
    spec: TrainSpec,
    volumes: list[np.ndarray],
    masks: list[Any],
    spacings: list[Any],
    *,
    device: torch.device | str = "cpu",
    precision: str | None = None,
) -> tuple[dict[str, Any], Any]:
    """Metrics of a 2.5-D model on whole volumes, and its outputs.

    Segmentation: 3-D metrics at each volume's own resolution (Dice over every voxel, HD95 in mm;
    :func:`~.metrics.volume_metrics`), and the predicted label volumes (class positions).
    Classification: the usual metrics over volumes (each the mean of its central slices' probabilities),
    and the probabilities (n, k).
    """
    if spec.volume_mode != "2.5d":
        raise ValidationError("this run was trained on 2-D images; it cannot be scored on volumes")
    if spec.problem_type != "segmentation":
        if not volumes:
            return {}, torch.empty(0)
        proba = torch.from_numpy(
            np.stack([predict_volume(model, spec, v, s, device=device, precision=precision).mean_proba
                      for v, s in zip(volumes, spacings, strict=True)])
        ).float()  # fmt: skip
        if spec.multi_label:
            y = np.asarray(masks, dtype=np.float32).reshape(len(volumes), -1)
            loss = F.binary_cross_entropy(proba.clamp(1e-7, 1 - 1e-7), torch.from_numpy(y)).item()
            return multilabel_metrics(y, proba.numpy(), loss), proba
        y_true = torch.tensor(np.asarray(masks, dtype=np.int64).reshape(-1))
        loss = F.nll_loss(proba.clamp_min(1e-7).log(), y_true).item()
        return classification_metrics(y_true.numpy(), proba.numpy(), loss), proba
    predicted, loss_sum, voxels = [], 0.0, 0
    for volume, mask, spacing in zip(volumes, masks, spacings, strict=True):
        out = predict_volume(model, spec, volume, spacing, device=device, precision=precision, target=mask)
        assert out.positions is not None
        predicted.append(out.positions)
        loss_sum += out.loss_sum
        voxels += int(np.prod(mask.shape))
    if not predicted:
        return {}, []
    metrics = volume_metrics(masks, predicted, spacings, spec.num_classes, loss_sum / max(1, voxels))
    return metrics, predicted
