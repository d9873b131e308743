"""Paired bootstrap over test subjects at scale (issue: 2,000 paired resamples of 500 test subjects for 6
metrics <= 2 s on 2 cores). Each subject has 4 examples (slices); median of 5 repeats, BCa and percentile.

    python benchmarks/bootstrap.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import table

from patientml_widgets import bootstrap


def main() -> int:
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"patient-{i:03d}" for i in range(500)], 4)
    champion = {f"metric{k}": rng.beta(8, 2, len(subjects)) for k in range(6)}
    challenger = {k: np.clip(v + rng.normal(0.01, 0.05, len(v)), 0, 1) for k, v in champion.items()}
    rows = []
    for method in ("bca", "percentile"):
        times = []
        for seed in range(5):
            t0 = time.perf_counter()
            bootstrap.paired_bootstrap(challenger, subjects, champion, resamples=2000, seed=seed, method=method)
            times.append(time.perf_counter() - t0)
        rows.append([f"2,000 paired resamples, 500 subjects (2,000 examples), 6 metrics, {method}",
                     f"{statistics.median(times):.3f} s", "<= 2 s"])  # fmt: skip
    print(table("Paired bootstrap over subjects (median of 5)", ["what", "time", "target"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
