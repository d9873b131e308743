"""Agreement and consensus at scale: 1,000 examples x 3 readers at 512 x 512 (issue: <= 3 s on 2 cores).

Per example: Dice and IoU of each of the 3 reader pairs (``agreement.pairwise_mask_agreement``) and the
per-pixel majority with its ties (``agreement.majority_mask``); STAPLE timed on a share of the examples and
scaled. The masks are synthetic (two classes, readers differing at the edges); what is timed is the work.
Prints the median of 3 repeats.

    python benchmarks/agreement.py
    python benchmarks/agreement.py --examples 200
    python benchmarks/agreement.py --project     # through a project: submits, the consensus, agreement()
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import table

from patientml_widgets import agreement


def readers(seed: int, size: int = 512) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(3):
        r1, r2 = 120 + rng.normal(0, 4), 40 + rng.normal(0, 3)
        m = np.zeros((size, size), np.uint8)
        m[(yy - 256) ** 2 + (xx - 250) ** 2 < r1**2] = 1
        m[(yy - 230) ** 2 + (xx - 280) ** 2 < r2**2] = 2
        out.append(m)
    return out


def in_a_project(base: list[list[np.ndarray]], n: int) -> str:
    """The same through a project: 3 readers submit every example (the third submit makes the consensus, its
    agreement and the pair figures), then ``project.agreement(model)`` reads them back.
    """
    import tempfile

    import patientml_widgets as pml

    with tempfile.TemporaryDirectory(prefix="pml-agreement-") as tmp:
        owner = pml.Project.open(Path(tmp) / "p", user="olga")
        model = owner.create_model("m", problem_type="segmentation", classes=["background", "a", "b"])
        with owner.batch():
            examples = owner.add_examples(model, [np.zeros((512, 512), np.uint8)] * n)
        owner.configure_reading(model, readers=3, pool=["r0", "r1", "r2"])
        readers = [pml.Project.open(owner.path, create=False, user=f"r{k}") for k in range(3)]
        plain, last = [], []
        for i, ex in enumerate(examples):
            masks = base[i % len(base)]
            for k, reader in enumerate(readers):
                t0 = time.perf_counter()
                reader.submit_label(ex, mask=masks[k])
                (last if k == 2 else plain).append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        figures = owner.agreement(model)
        read_back = time.perf_counter() - t0
        assert len(figures["examples"]) == n
    med = statistics.median
    consensus = (med(last) - med(plain)) * n
    rows = [
        ["a reading submitted (not the last of an example), median", f"{med(plain) * 1e3:.1f} ms", "-"],
        ["the last reading, which makes the consensus, median", f"{med(last) * 1e3:.1f} ms", "-"],
        [f"consensus + agreement of {n} examples (the difference, x {n})", f"{consensus:.2f} s", "<= 3 s"],
        [f"project.agreement(model) over {n} examples", f"{read_back:.2f} s", "-"],
    ]
    return table(f"Through a project: {n} examples x 3 readers at 512^2", ["what", "time", "target"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--project", action="store_true", help="through a project: submits, consensus, agreement()")
    args = parser.parse_args(argv)
    base = [readers(s) for s in range(20)]  # 20 distinct examples, reused: generating 1,000 would dominate

    def agree_and_vote() -> float:
        t0 = time.perf_counter()
        for i in range(args.examples):
            masks = base[i % len(base)]
            agreement.pairwise_mask_agreement(masks)
            agreement.majority_mask(masks)
        return time.perf_counter() - t0

    def staple_share(n: int = 20) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            agreement.staple([m == 1 for m in base[i % len(base)]])
        return (time.perf_counter() - t0) * args.examples / n

    if args.project:
        print(in_a_project(base, args.examples))
        return 0
    both = statistics.median(agree_and_vote() for _ in range(3))
    st = statistics.median(staple_share() for _ in range(3))
    rows = [
        [f"{args.examples} x 3 readers, 512^2: pair Dice/IoU + majority", f"{both:.2f} s", "<= 3 s"],
        [f"{args.examples} x 3 readers, 512^2: STAPLE of one class (scaled from 20)", f"{st:.2f} s", "-"],
    ]
    print(table("Agreement and consensus (median of 3)", ["what", "seconds", "target"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
