"""The SAM engine's CPU cost: a randomly initialised SAM ViT-B (``SamConfig()``, the size of facebook/sam-vit-base)
saved in Hugging Face format, loaded by ``SamEngine``, on a 512 x 512 image: the embedding once, then the latency
of each click (prompt encoder + mask decoder + upsampling to the image) over 20 clicks of the standard simulated
clicker. Random weights give meaningless masks; the cost is the same as a trained checkpoint's. Wall-clock and
CPU seconds (the process's, all threads) are both shown: on a machine that other work keeps busy the wall clock
grows, while the CPU time with ``--threads 1`` stays close to what one idle core takes.

    python benchmarks/sam_latency.py               # torch's default threads (one per core)
    python benchmarks/sam_latency.py --threads 1
    python benchmarks/sam_latency.py --size 1024   # another image size
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import table


def main(size: int = 512, clicks: int = 20, threads: int | None = None) -> str:
    import torch
    from transformers import SamConfig, SamModel

    from patientml_widgets.interactive import SamEngine
    from patientml_widgets.interactive.clicker import simulate

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sam-vit-base-random"
        SamModel(SamConfig()).save_pretrained(folder)
        engine = SamEngine(folder)
        t0 = time.perf_counter()
        net = engine.load()
        load_s = time.perf_counter() - t0

        yy, xx = np.ogrid[:size, :size]
        target = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 <= (size * 0.2) ** 2
        rng = np.random.default_rng(0)
        image = (target * 120 + rng.normal(60, 20, (size, size))).clip(0, 255).astype(np.uint8)

        t0, c0 = time.perf_counter(), time.process_time()
        engine.prepare(image)
        embed_s, embed_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        engine.pixels(image, None, net.image_size)
        preprocess_ms = (time.perf_counter() - t0) * 1e3

        cpu: list[float] = []

        def propose(prompts):
            c0 = time.process_time()
            out = engine.propose(image, prompts)
            cpu.append((time.process_time() - c0) * 1e3)
            return out

        trial = simulate(propose, target, clicks=clicks)
        ms = [s * 1e3 for s in trial.seconds]
        assert engine.embeddings_computed == 1, "the embedding was computed more than once"
    rows = [
        ["load the checkpoint (s)", load_s, ""],
        ["embedding, once per image (s)", embed_s, embed_cpu],
        ["  of which preprocessing (ms)", preprocess_ms, ""],
        ["click: first (multimask, ms)", ms[0], cpu[0]],
        [f"click: median of {len(ms)} (ms)", statistics.median(ms), statistics.median(cpu)],
        [f"click: p95 of {len(ms)} (ms)", float(np.percentile(ms, 95)), float(np.percentile(cpu, 95))],
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    title = (
        f"SAM ViT-B ({net.parameters / 1e6:.0f} M parameters, random weights), {size} x {size} image, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    return table(title, ["what", "wall", "CPU (all threads)"], rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(main(args.size, args.clicks, args.threads))
