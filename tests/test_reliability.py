"""Kill -9 during writes, two processes writing at once, another process's writes seen."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import image

import patientml_widgets as pml

WORKER = str(Path(__file__).parent / "_worker.py")


def _project_with_examples(path, n):
    project = pml.Project.open(path, user="setup")
    model = project.create_model("m", problem_type="segmentation", classes=["bg", "fg"])
    project.add_examples(model, [image(32, 32, seed=i) for i in range(n)])
    return project, model


def _start(path, model, start, count, rounds):
    proc = subprocess.Popen(
        [sys.executable, WORKER, str(path), model.id, str(start), str(count), str(rounds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _acks(lines):
    acked = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":
            acked[parts[1]] = int(parts[2])
    return acked


@pytest.mark.slow
def test_kill_9_during_submits_loses_no_acknowledged_label(tmp_path):
    rng = random.Random(1234)
    path = tmp_path / "study"
    _, model = _project_with_examples(path, 6)
    total_acked = 0
    for _trial in range(25):
        proc = _start(path, model, 0, 6, 10_000)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked = _acks(out.splitlines())
        total_acked += len(acked)
        project = pml.Project.open(path, create=False)  # it opens...
        for example_id, version in acked.items():  # ...and holds every acknowledged submit
            label = project.label(example_id)
            assert label is not None and label.status == "submitted"
            assert label.version >= version
            assert project.mask(example_id).shape == (32, 32)
            versions = [e["version"] for e in project.history(example_id)]
            assert versions == list(range(1, label.version + 1))
    assert total_acked > 25  # the kills did land in the middle of streams of writes


@pytest.mark.slow
def test_two_processes_submitting_at_once_lose_no_update(tmp_path):
    path = tmp_path / "study"
    project, model = _project_with_examples(path, 30)
    # worker A writes examples 0-19, worker B 10-29: 10-19 are written by both
    a = _start(path, model, 0, 20, 3)
    b = _start(path, model, 10, 20, 3)
    out_a, _ = a.communicate(timeout=120)
    out_b, _ = b.communicate(timeout=120)
    assert a.returncode == b.returncode == 0
    assert out_a.strip().endswith("done") and out_b.strip().endswith("done")
    by_version = {}
    for ex in project.examples(model, sort="id"):
        label = project.label(ex)
        history = project.history(ex)
        assert [e["version"] for e in history] == list(range(1, label.version + 1))
        by_version[ex.id] = label.version
    ids = sorted(by_version)
    assert [by_version[i] for i in ids] == [3] * 10 + [6] * 10 + [3] * 10
    submits = [e for e in project.audit(model) if e["action"] == "submit"]
    assert len(submits) == 120 and {e["actor"] for e in submits} == {"worker-0", "worker-10"}


def test_another_process_writes_are_seen_and_announced(tmp_path):
    path = tmp_path / "study"
    mine, model = _project_with_examples(path, 4)  # enough that an unlabeled one is always left
    events = []
    mine.observe(lambda change: events.append(change.kind))
    assert mine.poll() is False
    proc = _start(path, model, 0, 1, 1)
    assert proc.communicate(timeout=60)[0].strip().endswith("done")
    # reads are always current...
    assert mine.status_counts(model)["labeled"] == 1
    # ...and poll() tells observers once
    assert mine.poll() is True and events == ["external"]
    assert mine.poll() is False
    # our own writes are not reported as external...
    mine.submit_label(mine.examples(model, status="unlabeled")[0], mask=np.zeros((32, 32), np.uint8))
    assert mine.poll() is False
    # ...but another process's write that our own write picked up still is
    proc = _start(path, model, 1, 1, 1)
    assert proc.communicate(timeout=60)[0].strip().endswith("done")
    mine.submit_label(mine.examples(model, status="unlabeled")[0], mask=np.zeros((32, 32), np.uint8))
    assert mine.poll() is True


def test_two_project_objects_in_one_process(tmp_path):
    one, model = _project_with_examples(tmp_path / "s", 2)
    two = pml.Project.open(tmp_path / "s", create=False)
    ex_a, ex_b = one.examples(model)
    one.submit_label(ex_a, mask=np.zeros((32, 32), np.uint8))
    two.submit_label(ex_b, mask=np.ones((32, 32), np.uint8))
    one.submit_label(ex_b, mask=np.zeros((32, 32), np.uint8))  # builds on two's write
    assert two.label(ex_b).version == 2
    assert one.status_counts(model) == two.status_counts(model) == {"unlabeled": 0, "draft": 0, "labeled": 2}
