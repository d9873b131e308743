"""Paired bootstrap over test subjects at scale (issue: 2,000 paired resamples of 500 test subjects for 6
metrics <= 2 s on 2 cores). The 6 metrics are what a classification run records, as the worker computes them:
accuracy, balanced accuracy and macro F1 from pooled confusion counts, macro AUROC (a weighted rank statistic),
the mean log-loss and the expected calibration error; challenger and champion, each subject 4 examples (views),
percentile (the default) and BCa (with its jackknife over subjects). Also a segmentation run's 3 pooled overlap metrics.
Median of 5 repeats.

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

from patientml_widgets import bootstrap, evaluation


def classification(rng, n, k=3):
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return evaluation.statistics("classification", proba, y, k), proba, y


def main() -> int:
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"patient-{i:03d}" for i in range(500)], 4)
    n = len(subjects)
    ours, proba, y = classification(rng, n)
    noisy = np.clip(proba + rng.normal(0, 0.05, proba.shape), 1e-6, None)
    theirs = evaluation.statistics("classification", noisy / noisy.sum(1, keepdims=True), y, 3)
    masks = [rng.integers(0, 3, (64, 64)) for _ in range(n)]
    preds = [np.where(rng.random(m.shape) < 0.8, m, 0) for m in masks]
    seg = evaluation.statistics("segmentation", preds, masks, 3)
    rows = []
    for label, a, b in (("classification: 6 metrics", ours, theirs), ("segmentation: 3 metrics", seg, seg)):
        for method in ("bca", "percentile"):
            times = []
            for seed in range(5):
                t0 = time.perf_counter()
                out = bootstrap.paired_bootstrap(a, subjects, b, resamples=2000, seed=seed, method=method)
                times.append(time.perf_counter() - t0)
            assert len(out["difference"]) == len(a)
            rows.append(
                [
                    f"{label}, challenger + champion + difference, {method}",
                    f"{statistics.median(times):.3f} s",
                    "<= 2 s",
                ]
            )
    print(
        table("2,000 paired resamples of 500 subjects (2,000 examples), median of 5", ["what", "time", "target"], rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
