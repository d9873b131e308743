"""Roles in a real JupyterLab: a labeler's views leave out New model and Train now, and disable Deploy /
Approve / Reject with the reason; a developer's offer them; the labeler still labels and submits."""

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import paint, run_all, write_notebook


@pytest.mark.slow
def test_a_labelers_views_offer_labeling_and_a_developers_offer_training(lab, page):
    project = pml.Project.open(lab.root / "team-project", user="olga")
    model = project.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    rng = np.random.default_rng(0)
    project.add_examples(model, [rng.integers(0, 255, (48, 48), dtype=np.uint8) for _ in range(3)])
    project.add_member("ana", "labeler")
    project.add_member("dev", "developer")
    run = project.create_run(model)
    project.session.finish_run(run.id, "succeeded")
    path = str(project.path)
    write_notebook(
        lab.root / "roles.ipynb",
        [
            f"import patientml_widgets as pml\nana = pml.Project.open({path!r}, create=False, user='ana')\n"
            f"dev = pml.Project.open({path!r}, create=False, user='dev')",
            "pml.ModelTable(ana)",
            "pml.RunsTable(ana, 'Lesions')",
            f"pml.RunDetails(ana, {run.id!r})",
            "pml.ModelTable(dev)",
            "pml.RunsTable(dev, 'Lesions')",
        ],
    )
    run_all(page, lab, "roles.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cells = panel.locator(".jp-CodeCell")
    out = [cells.nth(i).locator(".jp-OutputArea") for i in range(6)]
    out[4].locator("button", has_text="New model").wait_for(timeout=60_000)
    out[5].locator("button", has_text="Train now").wait_for(timeout=30_000)
    out[1].locator("tbody tr", has_text="Lesions").wait_for(timeout=30_000)
    out[2].locator("tbody tr").first.wait_for(timeout=30_000)
    assert out[1].locator("button", has_text="New model").count() == 0
    assert out[2].locator("button", has_text="Train now").count() == 0
    details = out[3]
    details.locator("button", has_text="Approve").wait_for(timeout=30_000)
    for name in ("Deploy", "Approve", "Reject"):
        button = details.locator("button", has_text=name).first
        assert button.is_disabled()
        assert "needs the developer role (ana is a labeler)" in (button.get_attribute("title") or "")
    # the labeler labels: a canvas of an example, submitted from the browser, lands in the store as hers
    ex = project.examples(model, sort="created")[0]
    write_notebook(
        lab.root / "label.ipynb",
        [
            f"import patientml_widgets as pml\nana = pml.Project.open({path!r}, create=False, user='ana')\n"
            f"pml.LabelCanvas.for_example(ana, {ex.id!r})"
        ],
    )
    run_all(page, lab, "label.ipynb")
    canvas = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .pml-lc")
    canvas.wait_for(timeout=60_000)
    paint(page, canvas, 0.3, 0.3, 0.6, 0.6)
    canvas.locator(".status", has_text="Draft saved").wait_for(timeout=20_000)
    canvas.get_by_role("button", name="Submit").click()
    canvas.locator(".status", has_text="Submitted").wait_for(timeout=20_000)
    project.poll()
    label = project.label(ex)
    assert label.status == "submitted" and label.author == "ana" and 1 in label.classes
