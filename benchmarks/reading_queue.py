"""A reader's queue at scale: "My queue" in the ExampleBrowser over 100k examples read by 3 of 10 readers
(issue: opening it <= 300 ms).

Runs on a copy of the 100k project that ``store.py`` builds and caches under benchmarks/.data. The copy gets
a reading plan (3 readers per example, round robin over 10), then a third of one reader's queue submitted.
Each figure is a median, in three states: cold (a new kernel, no column cache), first use (a new kernel, the
column cache on disk: the notebook opened again) and warm (again in the same kernel).

    python benchmarks/reading_queue.py
    python benchmarks/reading_queue.py 10000
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import table
from store import build

import patientml_widgets as pml
from patientml_widgets.widgets import ExampleBrowser

POOL = [f"reader{i}" for i in range(10)]
READER = POOL[0]


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


#: run in a new process (a kernel opening the project): ms to open the reader's browser on "My queue", and to
#: switch it to "My submitted"
_KERNEL = """
import sys, time
import patientml_widgets as pml
from patientml_widgets.widgets import ExampleBrowser
project = pml.Project.open(sys.argv[1], create=False, user=sys.argv[2])
model = project.models()[0]
t0 = time.perf_counter()
browser = ExampleBrowser(project, model)
t1 = time.perf_counter()
assert browser.table.active_filter == "queue:open" and browser.table.rows, "the queue did not open"
browser.table.active_filter = "queue:done"
t2 = time.perf_counter()
print((t1 - t0) * 1e3, (t2 - t1) * 1e3)
"""


def _in_a_new_kernel(path: Path, *, cold: bool) -> tuple[float, float]:
    if cold:
        shutil.rmtree(path / ".cache", ignore_errors=True)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", _KERNEL, str(path), READER], capture_output=True, text=True, check=True, env=env
    )
    opened, switched = (float(v) for v in out.stdout.split())
    return opened, switched


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main(n: int = 100_000, runs: int = 5) -> str:
    source, _ = build(n)
    with tempfile.TemporaryDirectory(prefix="pml-queue-") as tmp:
        path = Path(tmp) / "project"
        shutil.copytree(source, path)
        project = pml.Project.open(path, create=False, user="bench")
        model = project.models()[0]
        plan_ms = _ms(lambda: project.configure_reading(model, readers=3, pool=POOL))
        reader = pml.Project.open(path, create=False, user=READER)
        mine = reader.queue(model)
        mask = np.zeros(mine[0].example.shape, np.uint8)
        with reader.batch():
            for entry in mine[: len(mine) // 3]:
                reader.submit_label(entry.example, mask=mask)
        rows = []
        cold = [_in_a_new_kernel(path, cold=True) for _ in range(runs)]
        first = [_in_a_new_kernel(path, cold=False) for _ in range(runs)]
        browser = ExampleBrowser(reader, model)
        warm_open = [_ms(lambda: ExampleBrowser(reader, model).close()) for _ in range(runs)]
        warm_switch = []
        for _ in range(runs):
            browser.table.active_filter = "queue:open"
            warm_switch.append(_ms(lambda: setattr(browser.table, "active_filter", "queue:done")))
        med = statistics.median
        rows.append(["open the ExampleBrowser on My queue (first page, counts)", med(c[0] for c in cold),
                     med(f[0] for f in first), med(warm_open)])  # fmt: skip
        rows.append(["switch to My submitted", med(c[1] for c in cold), med(f[1] for f in first), med(warm_switch)])
        browser.close()
        counts = reader.queue_counts(model)
    title = (
        f"My queue over {n:,} examples, 3 readers each of {len(POOL)} ({READER}: {sum(counts.values()):,} assigned, "
        f"{counts['submitted']:,} submitted; the reading plan took {plan_ms / 1e3:.1f} s) - ms, medians of {runs}"
    )
    return table(title, ["step", "cold (no column cache)", "first use (a new kernel)", "warm (again)"], rows)


if __name__ == "__main__":
    sys.exit(print(main(*(int(a) for a in sys.argv[1:2]))))
