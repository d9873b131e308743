"""A second process for the reliability tests: submits labels and acknowledges each one.

    python _worker.py PROJECT_DIR MODEL_ID START COUNT ROUNDS
Submits a random mask to examples START..START+COUNT-1 of the model, ROUNDS times,
printing "ack EXAMPLE_ID VERSION" after each submit has returned.
"""

import sys

import numpy as np

import patientml_widgets as pml


def main() -> None:
    path, model_id, start, count, rounds = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    project = pml.Project.open(path, create=False, user=f"worker-{start}")
    examples = project.examples(model_id, sort="id")[start : start + count]
    rng = np.random.default_rng(start)
    print("ready", flush=True)
    for _ in range(rounds):
        for ex in examples:
            mask = rng.integers(0, 2, ex.shape).astype(np.uint8)
            label = project.submit_label(ex, mask=mask)
            print("ack", ex.id, label.version, flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
