"""Start an isolated JupyterLab and drive notebooks in the system Chromium (tests and benchmarks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    env: dict

    def api(self, path: str):
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read())

    def open_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"


@contextmanager
def running_lab(base: Path, env_extra: dict[str, str] | None = None) -> Iterator[Lab]:
    """A JupyterLab server serving ``base/root``, with its own config, data and runtime folders."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **(env_extra or {}))
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        (base / name.lower()).mkdir(exist_ok=True)
        env[name] = str(base / name.lower())
    labconfig = base / "jupyter_config_dir" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "default_setting_overrides.json").write_text(
        json.dumps({"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}})
    )
    port, token = _free_port(), "patientml-test-token"
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
        f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]  # fmt: skip
    with open(base / "lab.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = Lab(f"http://127.0.0.1:{port}", token, root, env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    server.api("/api/status")
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = (base / "lab.log").read_text()[-3000:]
                        raise RuntimeError("JupyterLab did not start:\n" + tail) from None
                    time.sleep(0.2)
            yield server
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def paint(page, canvas, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
    """Drag the mouse over a LabelCanvas's view from (x0, y0) to (x1, y1), in shares of its size."""
    view = canvas.locator(".view")
    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * x1, box["y"] + box["height"] * y1, steps=steps)
    page.mouse.up()


def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def wait_for_idle_kernel(lab: Lab, notebook: str, timeout: float = 60) -> None:
    """Run All before the kernel is idle silently runs nothing: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for session in lab.api("/api/sessions"):
            path = session["path"]  # exactly this notebook: "tour.ipynb" must not match "01_tour.ipynb"
            if (path == notebook or path.endswith("/" + notebook)) and session["kernel"]["execution_state"] == "idle":
                return
        time.sleep(0.2)
    raise TimeoutError(f"the kernel of {notebook} did not become idle")


def run_all(page, lab: Lab, notebook: str) -> None:
    page.goto(lab.open_url(notebook))
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.wait_for(timeout=60_000)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    wait_for_idle_kernel(lab, notebook)
    started = (
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt')]"
        ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    )
    for attempt in range(3):  # a Run All that reaches a kernel still starting up runs nothing: try again
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function(started, timeout=20_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
