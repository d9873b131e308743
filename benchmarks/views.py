"""The views at scale: ExampleBrowser over 100k examples (server side) and a page's bytes on the wire.

The steps run on a copy of the 100k project that ``store.py`` builds and caches under
benchmarks/.data (the labels they submit and the columns they cache leave that one as it was).
Each figure is a median of repetitions, in three states:

- cold: a new Project with no column cache (``.cache/`` removed): the columns come from the records;
- first use: a new Project with the column cache on disk (a kernel opening the project again);
- warm: the same step again in the same browser (the step before it undone first, untimed).
"""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import table
from store import build

import patientml_widgets as pml
from patientml_widgets.widgets import ExampleBrowser

#: (what, the table's state before, the change); a state is (filter, sort, page)
START = ("", {"key": "created", "descending": False}, 0)
LABELED = ("labeled", START[1], 0)
BY_LABEL = ("labeled", {"key": "label_updated", "descending": True}, 0)
BY_SUBJECT = ("labeled", {"key": "subject_id", "descending": False}, 0)
STEPS = [
    ("filter change: Draft", START, {"active_filter": "draft"}),
    ("filter change: Labeled", ("draft", START[1], 0), {"active_filter": "labeled"}),
    ("sort change: Label Last Updated, newest first", LABELED, {"sort": BY_LABEL[1]}),
    ("sort change: Subject", BY_LABEL, {"sort": BY_SUBJECT[1]}),
    ("next page", BY_SUBJECT, {"page": 1}),
]
FIRST_PAGE = "ExampleBrowser(...): first page + counts + thumbnails"


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _median(times: list[float]) -> float:
    return statistics.median(times)


def _set(browser: ExampleBrowser, state: tuple) -> None:
    table = browser.table
    table.page, table.active_filter, table.sort = 0, state[0], state[1]
    table.page = state[2]


def _apply(browser: ExampleBrowser, change: dict) -> None:
    for name, value in change.items():
        setattr(browser.table, name, value)


def _session(path: Path, *, cold: bool) -> tuple[dict[str, float], pml.Project, ExampleBrowser]:
    """The steps in order on a new Project (``cold``: with no column cache); ms per step."""
    if cold:
        shutil.rmtree(path / ".cache", ignore_errors=True)
    gc.collect()
    project = pml.Project.open(path, create=False, user="bench")
    model = project.models()[0]
    holder = {}
    times = {FIRST_PAGE: _ms(lambda: holder.setdefault("browser", ExampleBrowser(project, model)))}
    browser = holder["browser"]
    for what, _before, change in STEPS:
        times[what] = _ms(lambda change=change: _apply(browser, change))
    return times, project, browser


def scale(n: int = 100_000, cold_runs: int = 3, runs: int = 9, warm_runs: int = 15) -> list[list[object]]:
    source, _ = build(n)
    with tempfile.TemporaryDirectory(prefix="pml-views-") as tmp:
        path = Path(tmp) / "project"
        shutil.copytree(source, path)  # file times kept: the cache entries stay valid
        colds, firsts = [], []
        for _ in range(cold_runs):  # the last one leaves the column cache filled
            times, _project, browser = _session(path, cold=True)
            colds.append(times)
            browser.close()  # widgets live until closed, and it holds its project
        for i in range(runs):
            times, project, browser = _session(path, cold=False)
            firsts.append(times)
            if i < runs - 1:
                browser.close()
        model = project.models()[0]
        warm = {FIRST_PAGE: []}
        for _ in range(warm_runs):
            holder = {}
            warm[FIRST_PAGE].append(_ms(lambda holder=holder: holder.setdefault("b", ExampleBrowser(project, model))))
            holder["b"].close()
        for what, before, change in STEPS:
            warm[what] = []
            for _ in range(warm_runs):
                _set(browser, before)
                warm[what].append(_ms(lambda change=change: _apply(browser, change)))
        rows = [[what, _median([c[what] for c in colds]), _median([f[what] for f in firsts]), _median(warm[what])]
                for what in [FIRST_PAGE] + [s[0] for s in STEPS]]  # fmt: skip
        examples = project.examples(model, limit=warm_runs)
        masks = [np.zeros(examples[0].shape, np.uint8), np.ones(examples[0].shape, np.uint8)]
        submits = [_ms(lambda i=i: project.submit_label(examples[i], mask=masks[i % 2])) for i in range(warm_runs)]
        rows.append(["a label submitted elsewhere in the kernel: submit + table refresh", "", "", _median(submits)])
        browser.close()
        project = browser = None  # its memory back before the loads
        loads = []
        for _ in range(cold_runs):
            gc.collect()
            store = pml.Project.open(path, create=False, user="bench").session.store
            loads.append(_ms(lambda store=store: (store.records("examples"), store.records("labels"))))
        rows.insert(0, [f"load the project's {n:,} records (once per kernel)", _median(loads), "", ""])
    return rows


def wire() -> list[list[object]]:
    with tempfile.TemporaryDirectory() as tmp:
        demo = pml.Project.demo(Path(tmp) / "demo")
        browser = ExampleBrowser(demo, demo.model("Skin lesion segmentation"), page_size=50)
        state = browser.table.get_state()
        thumbs = sum(len(r["thumbnail"]) for r in browser.table.rows)
        text = len(json.dumps({k: v for k, v in state.items() if k != "rows"}, default=str))
        text += len(json.dumps([{k: v for k, v in r.items() if k != "thumbnail"} for r in browser.table.rows]))
        return [["a page of 50 demo examples: thumbnails (binary buffers)", thumbs / 1024],
                ["the same page: the rest of the state (JSON)", text / 1024]]  # fmt: skip


def main() -> str:
    out = table(
        "ExampleBrowser, 100k examples in one model (server side, ms, medians)",
        ["step", "cold (no column cache)", "first use (new Project)", "warm (again)"],
        scale(),
    )
    return out + "\n" + table("ExampleBrowser page on the wire (KB)", ["what", "KB"], wire())


if __name__ == "__main__":
    sys.exit(print(main()))
