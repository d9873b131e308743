"""Run every benchmark and print its table.

python benchmarks/run.py            # all, store at 1k / 10k / 100k examples
python benchmarks/run.py --quick    # store at 1k / 10k only
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import codecs_bench
import startup
import store


def main() -> None:
    quick = "--quick" in sys.argv
    print(startup.main())
    print(codecs_bench.main())
    print(store.main([1_000, 10_000] if quick else [1_000, 10_000, 100_000]))
    import views

    print(views.main())
    if not quick:
        import label_canvas
        import training  # needs torch

        print(label_canvas.main())
        print(training.main(["--quick"]))  # the whole suite: python benchmarks/training.py


if __name__ == "__main__":
    main()
