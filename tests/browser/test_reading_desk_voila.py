"""The clinicians' page: notebooks/08_reading_desk.ipynb served with Voila shows the signed-in user's queue and
the labeler and no code; a reader labels and submits there, the store holds it as theirs, and blind reading holds.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import _free_port, paint

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "08_reading_desk.ipynb"


@pytest.mark.slow
def test_a_reader_labels_from_their_queue_in_voila(lab, page, tmp_path):
    pytest.importorskip("voila")
    project = pml.Project.open(tmp_path / "desk-project", user="olga")
    model = project.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    rng = np.random.default_rng(0)
    project.add_examples(model, [rng.integers(0, 255, (48, 48), dtype=np.uint8) for _ in range(3)])
    for user in ("ana", "ben", "cy"):
        project.add_member(user, "labeler")
    project.configure_reading(model, readers=2, pool=["ana", "ben", "cy"])
    ben = pml.Project.open(project.path, create=False, user="ben")
    ben_mask = np.zeros((48, 48), np.uint8)
    ben_mask[5:40, 5:40] = 1
    first = next(e.example for e in project.queue(model, reader="ana") if e.example in [
        x.example for x in project.queue(model, reader="ben")])  # fmt: skip
    ben.submit_label(first, mask=ben_mask)  # ana must not see it on her page
    port = _free_port()
    env = dict(lab.env, PATIENTML_PROJECT=str(project.path), JUPYTERHUB_USER="ana")
    cmd = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--ServerApp.allow_root=True"]  # fmt: skip
    with open(tmp_path / "voila.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(300):
                try:
                    urllib.request.urlopen(url, timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            page.goto(url, timeout=120_000)
            page.get_by_text("Signed in as ana (labeler)").wait_for(timeout=120_000)
            table = page.locator(".pml-table")
            table.locator("tbody tr").first.wait_for(timeout=60_000)
            content = page.content()
            assert "import patientml_widgets" not in content and "ReadingDesk(" not in content  # no code shown
            assert table.locator("tbody tr").count() == 2  # ana's two examples of three
            assert table.locator("button", has_text="Unlabeled").count() == 0  # her queue, nothing else
            assert table.locator("tbody tr", has_text="To do").count() == 2
            table.locator("tbody tr", has_text=first.id).dispatch_event("click")
            canvas = page.locator(".pml-lc")
            canvas.wait_for(timeout=60_000)
            assert "not read yet" in canvas.locator(".status").inner_text()
            paint(page, canvas, 0.2, 0.2, 0.5, 0.5)
            canvas.locator(".status", has_text="Draft saved").wait_for(timeout=20_000)
            canvas.get_by_role("button", name="Submit").click()
            # submit goes on to her next example
            page.locator(".pml-lc .status", has_text="not read yet").wait_for(timeout=30_000)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    project.poll()
    mine = project.reading(first, "ana")
    assert mine.status == "submitted" and mine.author == "ana" and 1 in mine.classes
    assert project.label(first).source == "consensus" and project.label(first).readers == ("ana", "ben")
    assert not np.array_equal(project.reading_mask(first, "ana"), ben_mask)  # she drew her own, blind
