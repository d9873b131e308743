"""The same views in Notebook 7 (`jupyter notebook`): the app renders and a row click opens the tabs."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import patientml_widgets as pml

from .lab import _free_port, write_notebook


@pytest.mark.slow
def test_the_app_works_in_notebook_7(lab, page, tmp_path):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    write_notebook(
        lab.root / "nb7.ipynb",
        [f"import patientml_widgets as pml\npml.PatientMLApp(pml.Project.open({str(demo.path)!r}, create=False))"],
    )
    port, token = _free_port(), "nb7-token"
    cmd = [sys.executable, "-m", "jupyter", "notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab.root}"]  # fmt: skip
    with open(tmp_path / "nb7.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=lab.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)
            page.goto(f"{url}/notebooks/nb7.ipynb?token={token}")
            page.locator(".jp-Cell").first.wait_for(timeout=60_000)
            for _ in range(300):  # run all only once the kernel is idle
                sessions = json.loads(urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5).read())
                if any(s["path"].endswith("nb7.ipynb") and s["kernel"]["execution_state"] == "idle" for s in sessions):
                    break
                time.sleep(0.2)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            models = page.locator(".pml-table").first
            models.locator("tr", has_text="Skin lesion segmentation").dispatch_event("click", timeout=60_000)
            page.get_by_role("tab", name="Examples", exact=True).wait_for(timeout=30_000)
            assert page.locator(".pml-table", has_text="Examples").locator("tbody tr").count() > 0
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
