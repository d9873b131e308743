"""A run record's worker pid comes from the project folder, which may be crafted: cancel and reap
signal only a live worker process of that run (never 0, -1, init, the kernel or another process).
"""

import os
import socket
import subprocess
import sys

import pytest
from helpers import image

import patientml_widgets as pml
from patientml_widgets import runs as runs_module


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_module, "CANCEL_GRACE_S", 0.1)
    proj = pml.Project.open(tmp_path / "study", user="alice")
    model = proj.create_model("m", problem_type="classification", classes=["a", "b"])
    for i in range(2):
        proj.submit_label(proj.add_example(model, image(seed=i), subject=f"p{i}"), classes=["a"])
    return proj, model


def _crafted_run(proj, model, pid):
    run = proj.create_run(model)
    proj.session.update_run(run.id, status="running", worker={"pid": pid, "host": socket.gethostname()})
    return run


@pytest.mark.parametrize("pid", [-1, 0, 1, True, "12", [1], None, "own", "other"])
def test_a_crafted_worker_pid_is_never_signalled(project, monkeypatch, pid):
    proj, model = project
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid = {"own": os.getpid(), "other": other.pid}.get(pid, pid) if isinstance(pid, str) else pid
        run = _crafted_run(proj, model, pid)
        real_kill, sent = os.kill, []

        def kill(target, sig):
            if sig != 0:
                sent.append((target, sig))
                return None
            return real_kill(target, sig)

        monkeypatch.setattr(runs_module.os, "kill", kill)
        proj.poll()  # reap: a pid that is no worker of the run is a gone worker
        assert proj.run(run.id).status == ("failed" if pid else "running")
        proj.session.update_run(run.id, status="running")
        assert proj.cancel(run.id).status == "cancelled"
        assert sent == []
        assert other.poll() is None
    finally:
        monkeypatch.undo()  # the real os.kill again (Popen.kill uses it)
        other.kill()
        other.wait()


def test_the_run_s_own_worker_is_still_stopped(project):
    proj, model = project
    run = proj.create_run(model)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", runs_module.WORKER_MODULE, str(proj.path), run.id]
    )
    try:
        proj.session.update_run(run.id, status="running", worker={"pid": worker.pid, "host": socket.gethostname()})
        proj.poll()
        assert proj.run(run.id).status == "running"  # alive: not reaped
        assert proj.cancel(run.id).status == "cancelled"
        assert worker.wait(timeout=10) != 0
    finally:
        worker.kill()
        worker.wait()
