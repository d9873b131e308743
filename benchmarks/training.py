"""Training: the default demo segmentation run (time, test Dice, worker peak memory), and the
trainer's overhead over a plain PyTorch loop on the same model and data."""

from __future__ import annotations

import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _util import table

import patientml_widgets as pml
from patientml_widgets.runs import _Worker, load_split
from patientml_widgets.training import trainer
from patientml_widgets.training.spec import TrainSpec


def default_run(workdir: Path) -> list[list[object]]:
    project = pml.Project.demo(workdir / "demo", fresh=True)
    rows = []
    for name in ("Skin lesion segmentation", "Lesion type"):
        model = project.model(name)
        t0 = time.perf_counter()
        run = project.train(model).wait()
        seconds = time.perf_counter() - t0
        assert run.status == "succeeded", run.traceback
        objective, value = run.objective
        extra = (
            f"dice per class {[round(d, 3) for d in run.metrics['test']['dice']]}"
            if "dice" in run.metrics["test"]
            else ""
        )
        rows.append([name, seconds, run.progress.get("seconds", 0.0), f"{objective} {value:.3f}", extra])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows.append(["worker peak memory (max over runs)", f"{peak_mb:.0f} MB", "", "", ""])
    return rows


def plain_loop(spec: TrainSpec, x, y, vx, vy) -> float:
    """The same model, optimizer, batches, precision and per-epoch validation, written plainly."""
    torch.manual_seed(spec.seed)
    model = trainer.build_model(spec).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    t0 = time.perf_counter()
    for _ in range(spec.epochs):
        model.train()
        order = torch.randperm(len(x))
        for s in range(0, len(x), spec.batch_size):
            idx = order[s : s + spec.batch_size]
            xb = x[idx].contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(xb)
            loss = trainer.loss_fn(spec, logits, y[idx])
            loss.backward()
            opt.step()
        trainer.evaluate(model, spec, vx, vy)
    return time.perf_counter() - t0


def overhead(workdir: Path, repeat: int = 3) -> list[list[object]]:
    project = pml.Project.demo(workdir / "demo")
    model = project.model("Skin lesion segmentation")
    run = project.create_run(model)
    snap = project.run(run.id).snapshot
    train, val = load_split(project, model, snap["train"]), load_split(project, model, snap["val"])
    spec = TrainSpec.build("segmentation", {"epochs": 2, "augment": False}, num_classes=3, in_channels=3)
    x, y = train.tensors(spec)
    vx, vy = val.tensors(spec)
    worker = _Worker(project, run.id)  # progress and epochs written to the store, as in a run
    ours, plain = [], []
    for _ in range(repeat):
        plain.append(plain_loop(spec, x, y, vx, vy))
        ours.append(trainer.fit(spec, x, y, vx, vy, on_step=worker.on_step, on_epoch=worker.on_epoch).seconds)
    p, o = statistics.median(plain), statistics.median(ours)
    return [["plain PyTorch loop", p, ""], ["trainer.fit (+ store progress)", o, f"{(o / p - 1) * 100:+.1f} %"]]


def main() -> str:
    workdir = Path(tempfile.mkdtemp(prefix="pml-bench-"))
    try:
        out = table(
            "Default demo runs (2 CPU cores)", ["model", "wall s", "fit s", "test objective", ""], default_run(workdir)
        )
        out += "\n" + table(
            "Trainer overhead (U-Net, 2 epochs, median of 3)", ["loop", "s", "overhead"], overhead(workdir)
        )
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(print(main()))
