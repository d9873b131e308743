"""Every notebook in notebooks/ runs top to bottom on a fresh demo project (headless: no JS)."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_tour.ipynb",
        "02_labeling.ipynb",
        "03_train_and_deploy.ipynb",
        "04_embed_the_canvas.ipynb",
        "05_bring_your_own_model.ipynb",
        "06_dicom_and_exports.ipynb",
        "07_volumes.ipynb",
        "08_reading_desk.ipynb",
        "09_evaluation.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch, demo_template):
    demo = tmp_path / "demo"
    shutil.copytree(demo_template, demo)
    monkeypatch.setenv("PATIENTML_DEMO_DIR", str(demo))
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
