"""Time to ``import patientml_widgets`` in a fresh interpreter (without torch), net of Python's own start."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _util import table


def _run(code: str, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> str:
    bare = _run("pass")
    full = _run("import patientml_widgets, sys; assert 'torch' not in sys.modules")
    return table("Import (median of 7 fresh interpreters)", ["what", "ms"], [
        ["python -c pass", bare], ["import patientml_widgets", full], ["import, net of start-up", full - bare]
    ])  # fmt: skip


if __name__ == "__main__":
    print(main())
