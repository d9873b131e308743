"""Store latency against project size: submit a label (durable), query a page, open, and
calls that touch many files in one commit (delete a model, add 1,000 examples).

For each size N, one segmentation model holds N examples, all labeled (the worst
case for the label table). Built once and cached under benchmarks/.data/; the
multi-file calls run on a copy.
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
    if (path / "built").exists() and (path / "built").read_text().startswith("v2 "):
        return path, float((path / "built").read_text().split()[1])
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
    (path / "built").write_text(f"v2 {seconds}")
    return path, seconds


def open_first_page(path: Path) -> None:
    project = pml.Project.open(path, create=False, user="bench")
    project.examples(project.models()[0], limit=50)


def measure(n: int) -> list[object]:
    path, build_s = build(n)
    shutil.rmtree(path / ".cache", ignore_errors=True)
    t0 = time.perf_counter()
    open_first_page(path)  # no column cache: every record of the first page's columns is parsed
    cold_ms = (time.perf_counter() - t0) * 1e3
    open_ms = median_ms(lambda: open_first_page(path), repeat=5, warmup=1)
    project = pml.Project.open(path, create=False, user="bench")
    model = project.models()[0]
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
    delete_s, add_s = multi_file_calls(path)
    row = [f"{n:,}", submit_ms, query_ms, count_ms, open_ms, cold_ms, round(shard_kb), round(n / build_s)]
    return [*row, delete_s, add_s]


def multi_file_calls(path: Path) -> tuple[float, float]:
    """Seconds to delete the model of every example, and to add 1,000 examples (each one commit), on a copy."""
    copy = DATA / "scratch"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(path, copy)
    try:
        project = pml.Project.open(copy, create=False, user="bench")
        other = project.create_model("other", problem_type="segmentation", classes=["bg", "fg"])
        rng = np.random.default_rng(2)
        images = [rng.integers(0, 255, (16, 16)).astype(np.uint8) for _ in range(1000)]
        t0 = time.perf_counter()
        project.add_examples(other, images)
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        project.delete_model(project.models()[0])
        delete_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return delete_s, add_s


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
            "same, no cache ms",
            "label shard KB",
            "import/s",
            "delete model s",
            "add 1,000 s",
        ],
        rows,
    )


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [1_000, 10_000, 100_000]
    print(main(sizes))
