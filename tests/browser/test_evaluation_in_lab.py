"""A run's evaluation in RunDetails in a real JupyterLab: the intervals next to the champion's, a subgroup
flagged in red, the reliability diagram drawn by bqplot, the operating thresholds and the model card.
``$PATIENTML_SCREENSHOTS`` (as for the other browser tests) gets a screenshot of it.
"""

import os
from pathlib import Path

import numpy as np
import pytest

import patientml_widgets as pml
from patientml_widgets import bootstrap, evaluation

from .lab import run_all, write_notebook


def evaluated_runs(project, model) -> str:
    """A deployed champion and a challenger with a recorded evaluation: better at site A, worse at site B."""
    rng = np.random.default_rng(2)
    n = 60
    site = np.array(["site A"] * 30 + ["site B"] * 30)
    champion = rng.normal(0.8, 0.05, n)
    challenger = champion + np.where(site == "site A", 0.05, -0.08) + rng.normal(0, 0.01, n)
    ev = evaluation.evaluate(
        {"balanced_accuracy": bootstrap.mean(challenger), "ece": bootstrap.mean(np.abs(rng.normal(0, 0.05, n)))},
        range(n),
        {"balanced_accuracy": bootstrap.mean(champion)},
        objective="balanced_accuracy",
        subgroups={"tags": {"site A": site == "site A", "site B": site == "site B"}},
        resamples=1000,
    )
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.4 * y + rng.normal(0.3, 0.15, n), 0.01, 0.99)
    ev["calibration"] = evaluation.calibration(np.stack([1 - p1, p1], 1), y)
    classes = [{"index": c.index, "name": c.name, "color": c.color, "description": ""} for c in model.classes]
    spec = {"objective": "balanced_accuracy", "problem_type": "classification"}
    first = project.create_run(model)
    test = {"balanced_accuracy": float(champion.mean())}
    project.session.store_artifact(
        first.id, b"w", status="succeeded", classes=classes, spec=spec, metrics={"test": test}
    )
    project.deploy(first.id)
    second = project.create_run(model)
    thresholds = {
        "point": {"sensitivity": 0.9},
        "classes": {"normal": 0.62, "finding": 0.38},
        "val": {"finding": {"sensitivity": 0.91, "specificity": 0.66}},
    }
    project.session.store_artifact(
        second.id,
        b"w",
        status="succeeded",
        classes=classes,
        spec=spec,
        evaluation=ev,
        thresholds=thresholds,
        metrics={"test": {"balanced_accuracy": float(challenger.mean())}},
        champion={"run_id": first.id, "metrics": {"test": test}},
    )
    project.configure_training(model, intended_use="Teaching only.")
    project.deploy(second.id, reason="deployed for the screenshot")
    return second.id


@pytest.mark.slow
def test_run_details_show_the_evaluation_in_lab(lab, page):
    project = pml.Project.open(lab.root / "evaluation-project")
    model = project.create_model("Finding", problem_type="classification", classes=["normal", "finding"])
    run_id = evaluated_runs(project, model)
    # the deployed run calls "finding" at its threshold 0.38, though "normal" is the more probable
    example = project.add_example(model, np.full((16, 16), 90, np.uint8))
    project.session.store_predictions(
        [
            {
                "run_id": run_id,
                "example_id": example.id,
                "model_id": model.id,
                "uncertainty": 0.4,
                "probabilities": [0.6, 0.4],
            }
        ]
    )
    opened = f"pml.Project.open({str(project.path)!r})"
    write_notebook(
        lab.root / "evaluation.ipynb",
        [
            "import patientml_widgets as pml",
            f"pml.RunDetails({opened}, {run_id!r})",
            f"pml.LabelCanvas.for_example({opened}, {example.id!r})",
        ],
    )
    page.set_viewport_size({"width": 1100, "height": 2600})  # the whole view at once, for the screenshot
    run_all(page, lab, "evaluation.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    out = panel.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea")
    out.get_by_text("On the same test examples", exact=True).wait_for(timeout=60_000)
    text = out.inner_text()
    run = project.run(run_id)
    d = run.evaluation["difference"]["balanced_accuracy"]
    assert f"{d['value']:+.4f}\n[{d['low']:+.4f}, {d['high']:+.4f}]" in text  # the interval under the value
    assert "60 test subjects" in text and "Worse than the champion beyond the interval in: tags site B" in text
    flag = out.get_by_text("worse beyond the interval", exact=True)
    assert flag.evaluate("e => getComputedStyle(e).color") == "rgb(197, 34, 31)"  # red, on the site B row
    assert "sensitivity 0.9" in text and "0.380" in text
    diagram = out.locator(".bqplot").first
    diagram.wait_for(timeout=60_000)
    assert "Reliability diagram (test)" in diagram.inner_text()
    lines = diagram.locator("path.line")
    lines.first.wait_for(state="attached", timeout=30_000)
    assert lines.count() >= 2  # the diagonal and the observed accuracy
    assert "Expected calibration error" in text
    shots = os.environ.get("PATIENTML_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        out.screenshot(path=str(Path(shots) / "run_details_evaluation.png"))
    out.get_by_text("Model card", exact=True).click()
    out.get_by_text("Teaching only.", exact=False).first.wait_for(timeout=30_000)
    assert "deployed for the screenshot" in out.inner_text()
    canvas = panel.locator(".jp-CodeCell").nth(2).locator(".jp-OutputArea")
    called = canvas.locator(".class", has=page.locator(".called"))
    called.wait_for(timeout=60_000)
    assert called.count() == 1 and "finding" in called.inner_text() and "40%" in called.inner_text()
