"""What the views send to the browser while a run trains: bytes per minute, and how often they refetch.

A demo project, an ExampleBrowser and a RunsTable shown (their front ends poll the kernel
every 2 s, simulated here), and a run training in its worker (which writes its progress about
every 0.5 s). Every message the widgets publish is counted (JSON state plus binary buffers).

    python benchmarks/traffic.py [SECONDS]       # default 60

Runs against whatever ``patientml_widgets`` is importable, so the same script measures an
older checkout (``PYTHONPATH=old-checkout python benchmarks/traffic.py``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import comm
from _util import table

import patientml_widgets as pml
from patientml_widgets.widgets import ExampleBrowser, RunsTable

POLL_S = 2.0


def measure(seconds: float = 60.0) -> list[list[object]]:
    sent: Counter[str] = Counter()
    original = comm.DummyComm.publish_msg

    def counting(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        state = (data or {}).get("state", {}) if isinstance(data, dict) else {}
        size = len(json.dumps(data, default=str)) + sum(len(b) for b in buffers or [])
        sent["bytes"] += size
        if "rows" in state:
            sent["row updates"] += 1
            sent["thumbnail bytes"] += sum(len(b) for b in buffers or [])
        return original(self, msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    with tempfile.TemporaryDirectory() as tmp:
        project = pml.Project.demo(Path(tmp) / "demo")
        model = project.model("Skin lesion segmentation")
        browser = ExampleBrowser(project, model)
        runs = RunsTable(project, model)
        fetches = Counter()
        for name, table_ in (("examples", browser.table), ("runs", runs.table)):
            fetch = table_._fetch  # count the refetches of each table

            def counted(*args, fetch=fetch, name=name):
                fetches[name] += 1
                return fetch(*args)

            table_._fetch = counted
        handle = project.train(model, hyperparameters={"steps": 100_000, "eval_every": 50}, trigger="benchmark")
        while handle.run.status == "queued":
            time.sleep(0.2)
        comm.DummyComm.publish_msg = counting
        start = time.monotonic()
        try:
            while time.monotonic() - start < seconds:
                time.sleep(POLL_S)
                for table_ in (browser.table, runs.table):  # each shown table's front end polls
                    table_._handle_message(table_, {"kind": "poll"}, [])
        finally:
            comm.DummyComm.publish_msg = original
            elapsed = (time.monotonic() - start) / 60
            progress = handle.run.progress
            handle.cancel()
        return [
            ["bytes sent per minute (all widgets)", round(sent["bytes"] / elapsed)],
            ["thumbnail bytes sent per minute", round(sent["thumbnail bytes"] / elapsed)],
            ["row updates sent per minute", round(sent["row updates"] / elapsed, 1)],
            ["ExampleBrowser refetches per minute", round(fetches["examples"] / elapsed, 1)],
            ["RunsTable refetches per minute", round(fetches["runs"] / elapsed, 1)],
            ["run progress reached (step)", progress.get("step", "-")],
        ]


def main(seconds: float = 60.0) -> str:
    rows = measure(seconds)
    return table(f"While a run trains ({seconds:.0f} s, tables polled every {POLL_S:g} s)", ["what", "value"], rows)


if __name__ == "__main__":
    sys.exit(print(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)))
