"""The views at scale: ExampleBrowser over 100k examples (server side) and a page's bytes on the wire."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import table
from store import build

import patientml_widgets as pml
from patientml_widgets.widgets import ExampleBrowser


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def scale(n: int = 100_000) -> list[list[object]]:
    path, _ = build(n)
    project = pml.Project.open(path, create=False, user="bench")
    model = project.models()[0]
    load = _ms(lambda: (project._store.records("examples"), project._store.records("labels")))
    holder = {}
    first = _ms(lambda: holder.setdefault("browser", ExampleBrowser(project, model)))
    browser = holder["browser"]
    rows = [
        [f"load the project's {n:,} records (once per kernel)", load],
        ["ExampleBrowser(...): first page + counts + thumbnails", first],
    ]

    def set_trait(name, value):
        return _ms(lambda: setattr(browser.table, name, value))

    rows.append(["filter change: Draft", set_trait("active_filter", "draft")])
    rows.append(["filter change: Labeled", set_trait("active_filter", "labeled")])
    rows.append(
        [
            "sort change: Label Last Updated, newest first",
            set_trait("sort", {"key": "label_updated", "descending": True}),
        ]
    )
    rows.append(["sort change: Subject", set_trait("sort", {"key": "subject_id", "descending": False})])
    rows.append(["next page", set_trait("page", 1)])
    ex = project.examples(model, limit=1)[0]
    submit = _ms(lambda: project.submit_label(ex, mask=np.zeros(ex.shape, np.uint8)))
    rows.append(["a label submitted elsewhere in the kernel: submit + table refresh", submit])
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
    out = table("ExampleBrowser, 100k examples in one model (server side, ms)", ["step", "ms"], scale())
    return out + "\n" + table("ExampleBrowser page on the wire (KB)", ["what", "KB"], wire())


if __name__ == "__main__":
    sys.exit(print(main()))
