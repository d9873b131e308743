"""RunDetails opens in <= 300 ms with everything precomputed (issue 19): the worker has cached the run's
evaluation (intervals of 6 metrics over 500 test subjects next to the champion, 5 subgroup fields of 3 groups,
calibration), its operating thresholds, its model card and its predictions of the 8 worst test examples.

A classification run over 256 x 256 images and a segmentation run over 256 x 256 masks. Figures: the first open
in this process (the widgets imported, nothing of the run read yet) and the median of 15 more.

    python benchmarks/run_details.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import median_ms, table

import patientml_widgets as pml
from patientml_widgets import evaluation
from patientml_widgets.widgets import RunDetails

SUBJECTS = 500
FIELDS = ("Manufacturer", "InstitutionName", "PatientSex", "age", "tags")


def precomputed_run(project, model, problem: str, rng) -> str:
    """A succeeded, deployed run whose record holds what the worker computes, and its stored predictions."""
    k = len(model.classes)
    images = [rng.integers(0, 255, (256, 256), dtype=np.uint8) for _ in range(12)]
    examples = project.add_examples(model, images, splits=["test"] * len(images))
    subjects = [f"p{i}" for i in range(SUBJECTS)]
    if problem == "segmentation":
        masks = [rng.integers(0, k, (32, 32)) for _ in subjects]
        preds = [np.where(rng.random(m.shape) < 0.8, m, 0) for m in masks]
        ours = theirs = evaluation.statistics("segmentation", preds, masks, k)
        objective = "dice_mean"
    else:
        y = rng.integers(0, k, SUBJECTS)
        proba = rng.dirichlet(np.ones(k), SUBJECTS)
        ours = evaluation.statistics("classification", proba, y, k)
        theirs = evaluation.statistics("classification", rng.dirichlet(np.ones(k), SUBJECTS), y, k)
        objective = "balanced_accuracy"
    groups = {f: {g: np.arange(SUBJECTS) % 3 == j for j, g in enumerate("abc")} for f in FIELDS}
    ev = evaluation.evaluate(ours, subjects, theirs, objective=objective, subgroups=groups)
    if problem != "segmentation":
        ev["calibration"] = evaluation.calibration(proba, y)
    classes = [{"index": c.index, "name": c.name, "color": c.color, "description": ""} for c in model.classes]
    metrics = {"test": {name: m["value"] for name, m in ev["metrics"].items()}}
    worst = [{"example_id": e.id, "score": 0.1 * i} for i, e in enumerate(examples[:8])]
    champion = project.create_run(model)
    project.session.store_artifact(
        champion.id, b"w", status="succeeded", classes=classes, spec={"objective": objective}
    )
    project.deploy(champion.id)
    run = project.create_run(model)
    thresholds = {
        "point": {"sensitivity": 0.9},
        "classes": {c["name"]: 0.3 for c in classes},
        "val": {c["name"]: {"sensitivity": 0.9, "specificity": 0.7} for c in classes},
    }
    project.session.store_artifact(
        run.id,
        b"w",
        status="succeeded",
        classes=classes,
        spec={"objective": objective, "problem_type": problem},
        metrics=metrics,
        evaluation=ev,
        thresholds=thresholds,
        test_examples=worst,
        champion={"run_id": champion.id, "metrics": {"test": metrics["test"]}},
    )
    entries = []
    for e in examples[:8]:
        entry = {"run_id": run.id, "example_id": e.id, "model_id": model.id, "uncertainty": 0.2}
        if problem == "segmentation":
            entry["mask"] = rng.integers(0, k, (256, 256)).astype(np.uint8)
            entry["probabilities"] = [1 / k] * k
        else:
            entry["probabilities"] = [1 / k] * k
        entries.append(entry)
    project.session.store_predictions(entries)
    project.deploy(run.id, reason="benchmark")
    return run.id


def main() -> int:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        project = pml.Project.open(Path(folder) / "p", create=True)
        cls = project.create_model("Findings", problem_type="classification", classes=["normal", "benign", "malignant"])
        seg = project.create_model("Organs", problem_type="segmentation", classes=["background", "liver", "kidney"])
        for label, model, problem in (("classification", cls, "classification"), ("segmentation", seg, "segmentation")):
            run_id = precomputed_run(project, model, problem, rng)
            t0 = time.perf_counter()
            details = RunDetails(project, run_id)
            first = (time.perf_counter() - t0) * 1e3
            assert details.worst.children and details.subgroups.value and details.card_view.children[0].value
            warm = median_ms(lambda run_id=run_id: RunDetails(project, run_id).close(), repeat=15)
            rows.append([f"{label}: first open", f"{first:.0f} ms", "<= 300 ms"])
            rows.append([f"{label}: median of 15", f"{warm:.0f} ms", "<= 300 ms"])
    print(
        table(
            "RunDetails with everything precomputed (500 test subjects, 15 subgroups, 8 worst examples)",
            ["what", "time", "target"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
