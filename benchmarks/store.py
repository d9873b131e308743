"""Store latency against project size: submit a label (durable), query a page, open.

For each size N, one segmentation model holds N examples, all labeled (the worst
case for the label table). Built once and cached under benchmarks/.data/.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _util import median_ms, table

import patientml_widgets as pml

DATA = Path(__file__).parent / ".data"


def build(n: int) -> tuple[Path, float]:
    path = DATA / f"store-{n}"
    if (path / "built").exists():
        return path, float((path / "built").read_text())
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    project = pml.Project.open(path, user="bench")
    model = project.create_model("m", problem_type="segmentation", classes=["bg", "fg"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (16, 16)).astype(np.uint8) for _ in range(64)]
    masks = [(img > 128).astype(np.uint8) for img in images]
    chunk = 5000
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        with project.batch():
            exs = project.add_examples(
                model, [images[i % 64] for i in range(count)], subjects=[f"s{(start + i) % 997}" for i in range(count)]
            )
            for i, ex in enumerate(exs):
                project.submit_label(ex, mask=masks[i % 64])
    seconds = time.perf_counter() - t0
    (path / "built").write_text(str(seconds))
    return path, seconds


def measure(n: int) -> list[object]:
    path, build_s = build(n)
    t0 = time.perf_counter()
    project = pml.Project.open(path, create=False, user="bench")
    model = project.models()[0]
    project.examples(model, limit=50)
    open_ms = (time.perf_counter() - t0) * 1e3
    examples = project.examples(model, limit=40)
    rng = np.random.default_rng(1)
    masks = [rng.integers(0, 2, (16, 16)).astype(np.uint8) for _ in range(40)]
    it = iter(range(10**9))

    def submit():
        i = next(it) % 40
        project.submit_label(examples[i], mask=masks[(i * 7 + 3) % 40])

    submit_ms = median_ms(submit, repeat=31, warmup=3)
    query_ms = median_ms(
        lambda: project.examples(model, status="labeled", sort="label_updated", descending=True, limit=50), repeat=9
    )
    count_ms = median_ms(lambda: project.status_counts(model), repeat=9)
    shard_kb = max(p.stat().st_size for p in (path / "tables").glob("labels-*.json")) / 1024
    return [f"{n:,}", submit_ms, query_ms, count_ms, open_ms, round(shard_kb), round(n / build_s)]


def main(sizes: list[int]) -> str:
    rows = [measure(n) for n in sizes]
    return table(
        "Store (one model, every example labeled; medians)",
        [
            "examples",
            "submit ms",
            "page query ms",
            "status counts ms",
            "open+1st page ms",
            "label shard KB",
            "import/s",
        ],
        rows,
    )


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [1_000, 10_000, 100_000]
    print(main(sizes))
