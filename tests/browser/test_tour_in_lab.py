"""The main job: JupyterLab on the tour notebook over the demo project, in a real browser."""

import shutil
from pathlib import Path

import pytest

import patientml_widgets as pml

from .lab import run_all

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


@pytest.mark.slow
def test_tour_notebook_runs_in_jupyterlab(lab, page):
    shutil.copy(NOTEBOOKS / "01_tour.ipynb", lab.root / "01_tour.ipynb")
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    kind = demo.model("Lesion type")
    before = demo.status_counts(kind)

    run_all(page, lab, "01_tour.ipynb")

    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    # what the user sees: the model table and the examples' thumbnails
    panel.locator(".jp-OutputArea-output", has_text="Skin lesion segmentation").first.wait_for(timeout=90_000)
    panel.locator(".jp-OutputArea-output", has_text="{'train'").wait_for(timeout=90_000)
    assert panel.locator(".jp-OutputArea-output img").count() >= 8
    assert panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert "Error" not in panel.locator(".jp-OutputArea").all_inner_texts()[-1]
    # what the store holds: the notebook's label reached the project on disk
    after = demo.status_counts(kind)
    assert after["labeled"] == before["labeled"] + 1
