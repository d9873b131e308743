"""Every public call is one commit: killed, refused or out of disk at any file operation, it happened
wholly or not at all; damage is an error naming the file; check --repair restores labels; leftovers go.

Kills are real (``os._exit`` in a forked child at the k-th file operation: no cleanup runs, as under
SIGKILL), and a later test sends SIGKILL itself at random moments.
"""

import builtins
import csv
import errno
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback

import numpy as np
import orjson
import pytest
from helpers import image, tree_digest
from PIL import Image

import patientml_widgets as pml
from patientml_widgets import session as session_module
from patientml_widgets.store.check import check, repair
from patientml_widgets.store.store import TABLES, Store, shard_name, shard_of

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fault injection forks")

KILLED = 86
MUTATIONS = ("replace", "rename", "unlink", "truncate", "link", "fsync", "mkdir", "rmdir")


class _Fault(BaseException):
    pass


def _inject(at: int, fault: str):
    """Make the ``at``-th file operation from now on die (``kill``) or fail with ENOSPC (``enospc``).

    Operations: opening a file for writing, each write (a kill there writes half of it first), and
    os.replace / rename / unlink / truncate / link / fsync / mkdir / rmdir. Returns a function that undoes it.
    """
    counter = itertools.count(1)
    real = {name: getattr(os, name) for name in MUTATIONS}
    real_open = builtins.open

    def strike(partial=None):
        if next(counter) != at:
            return
        undo.struck = True
        if fault == "kill":
            if partial is not None:
                partial()
            os._exit(KILLED)
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    def wrap(name):
        def op(*args, **kwargs):
            strike()
            return real[name](*args, **kwargs)

        return op

    class Writer:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            strike(lambda: (self._f.write(data[: len(data) // 2]), self._f.flush()))
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def opener(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            strike()
            return Writer(real_open(file, mode, *args, **kwargs))
        return real_open(file, mode, *args, **kwargs)

    for name in MUTATIONS:
        setattr(os, name, wrap(name))
    builtins.open = opener

    def undo():
        for name, fn in real.items():
            setattr(os, name, fn)
        builtins.open = real_open

    undo.struck = False
    return undo


def _deterministic(monkeypatch=None, space=""):
    """Ids and times that are the same in every run, so that two runs of a call give the same bytes."""
    ids = itertools.count()
    stamps = itertools.count()
    new_id = lambda prefix: f"{prefix}_{space}{next(ids):06d}"  # noqa: E731
    stamp = lambda: f"2026-01-01T00:00:{next(stamps) % 60:02d}.000+00:00"  # noqa: E731
    for target, name, value in ((session_module, "new_id", new_id), (session_module, "now", stamp)):
        if monkeypatch is None:
            setattr(target, name, value)
        else:
            monkeypatch.setattr(target, name, value)


def _in_child(path, call, at, fault="kill", space="c"):
    """Run ``call(project)`` in a forked child, faulting at operation ``at``: 'done', 'killed' or 'refused'.

    New ids are ``<prefix>_<space><n>``: the same in every child of one ``space``.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            _deterministic(space=space)
            project = pml.Project.open(path, user="tester")
            undo = _inject(at, fault)
            try:
                call(project)
                code = 5 if undo.struck else 0  # 5: the failure was met and handled (a best-effort step)
            except OSError:
                code = 4
            finally:
                undo()
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, KILLED, 4, 5), f"the child failed with {code}"
    return {0: "done", KILLED: "killed", 4: "refused", 5: "survived"}[code]


def state(path):
    """What the project says it holds: every record of every table and every committed audit event."""
    store = Store(path, create=False)  # the store itself: a member list does not stop the inspection
    return {table: store.mapping(table) for table in TABLES}, store.audit.events()


def _assert_sound(path):
    report = check(path)
    assert report.problems == [], str(report)


# -- the multi-file calls -----------------------------------------------------------------


def _write_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def template(tmp_path_factory):
    """A project with two models, labeled examples and a queued run; an import folder; an export."""
    root = tmp_path_factory.mktemp("template")
    mp = pytest.MonkeyPatch()
    _deterministic(mp)
    try:
        project = pml.Project.open(root / "study", user="setup")
        seg = project.create_model("Seg", problem_type="segmentation", classes=["bg", "lesion", "spare"])
        cls = project.create_model("Cls", problem_type="classification", classes=["a", "b"])
        exs = project.add_examples(seg, [image(8, 8, seed=i) for i in range(6)], subjects=[f"p{i}" for i in range(6)])
        for i, ex in enumerate(exs[:4]):
            project.submit_label(ex, mask=(image(8, 8, seed=10 + i) > 128).astype(np.uint8))
        project.add_examples(cls, [image(8, 8, seed=20 + i) for i in range(3)])
        project.create_run(seg)  # queued: what the worker finishes, deploys and predicts with
        folder = root / "incoming"
        rows = []
        for i in range(3):
            _write_png(folder / f"img{i}.png", image(8, 8, seed=40 + i))
            _write_png(folder / f"mask{i}.png", (image(8, 8, seed=50 + i) > 100).astype(np.uint8))
            rows.append({"image": f"img{i}.png", "subject": f"q{i}", "mask": f"mask{i}.png"})
        with open(folder / "index.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, ["image", "subject", "mask"])
            writer.writeheader()
            writer.writerows(rows)
        project.export_labels(seg, root / "export")
    finally:
        mp.undo()
    return root


CALLS = {
    "add_examples": lambda p: p.add_examples(
        "m_000000", [image(8, 8, seed=70 + i) for i in range(3)], subjects=["p0", "new-a", "new-b"]
    ),
    "import_dataset": lambda p: p.import_dataset(p.path.parent / "export", name="Imported"),
    "delete_example": lambda p: p.delete_example(p.examples("m_000000", status="labeled")[0]),
    "delete_model": lambda p: p.delete_model("m_000000"),
    "remove_class": lambda p: p.remove_class("m_000000", "spare"),
    "batch": lambda p: _mixed_batch(p),
    "submit_label": lambda p: p.submit_label(p.examples("m_000000")[5], mask=np.ones((8, 8), np.uint8)),
    "register_model_code": lambda p: p.register_model_code("net", "def build(in_channels, num_classes):\n    pass\n"),
    "configure_training": lambda p: p.configure_training("m_000000", max_trials=2, budget="1 min"),
    "finish_and_deploy": lambda p: _finish_and_deploy(p),
    "store_predictions": lambda p: _store_predictions(p),
    "volume": lambda p: _volume(p),
    "add_member": lambda p: p.add_member("ana", "labeler"),  # the first list: its maker becomes the owner too
    "configure_reading": lambda p: p.configure_reading("m_000000", readers=2, pool=["ana", "ben", "cy"]),
    "readings": lambda p: _readings(p),
}


def _readings(p):
    """Several readers in one commit: the plan, two readings that make a consensus, a review, an adjudication."""
    with p.batch():
        p.configure_reading("m_000000", readers=2, pool=["ana", "ben"])
        ex = p.examples("m_000000")[5]
        for reader, k in (("ana", 1), ("ben", 2)):
            p.submit_label(ex, mask=(image(8, 8, seed=k) > 128).astype(np.uint8), author=reader)
        p.review(ex, "return", "once more", reader="ben")
        p.submit_label(ex, author="ben")
        p.adjudicate(p.examples("m_000000")[0], mask=np.ones((8, 8), np.uint8))


def _volume(p):
    """A volume added, its 3-D label submitted and a 3-D prediction stored, in one commit."""
    run = p.runs("m_000000")[0].id
    with p.batch():
        ex = p.add_volume("m_000000", image(8, 8, seed=95)[None].repeat(3, axis=0), spacing=(2, 1, 1), subject="vol")
        p.submit_label(ex, mask=np.ones((3, 8, 8), np.uint8))
        entry = {"run_id": run, "example_id": ex.id, "model_id": "m_000000", "created": "t", "uncertainty": 0.5,
                 "probabilities": [0.5, 0.5, 0.0], "mask": np.full((3, 8, 8), 1, np.uint8)}  # fmt: skip
        p.session.store_predictions([entry])


def _finish_and_deploy(p):
    """The worker's last commit: weights, metrics, the decision and the deployment together."""
    run = p.runs("m_000000")[0].id
    with p.session.write():
        p.session.store_artifact(run, b"weights", status="succeeded", metrics={"test": {"dice_mean": 0.5}})
        p.session.deploy(run, actor="system", reason="approved by the promotion rule")


def _store_predictions(p):
    """What the worker commits after deploying: a prediction (and its mask) per example."""
    run = p.runs("m_000000")[0].id
    entries = [
        {"run_id": run, "example_id": ex.id, "model_id": "m_000000", "created": "t", "uncertainty": 0.5,
         "probabilities": [0.5, 0.5, 0.0], "mask": np.full((8, 8), i % 3, np.uint8)}
        for i, ex in enumerate(p.examples("m_000000"))
    ]  # fmt: skip
    p.session.store_predictions(entries)


def _mixed_batch(p):
    with p.batch():
        new = p.add_example("m_000000", image(8, 8, seed=90), subject="batch-patient")
        p.submit_label(new, mask=np.ones((8, 8), np.uint8))
        p.delete_example(p.examples("m_000001")[0])
        p.rename_model("m_000001", "Renamed")
        p.add_example("m_000001", image(8, 8, seed=91))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_call_killed_at_any_file_operation_happened_wholly_or_not_at_all(template, tmp_path, name):
    call = CALLS[name]
    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    before = state(clean / "study")
    assert _in_child(clean / "study", call, at=10**9) == "done"
    after = state(clean / "study")
    assert after != before
    outcomes = []
    for at in itertools.count(1):
        trial = tmp_path / f"trial-{at}"
        shutil.copytree(template, trial)
        outcome = _in_child(trial / "study", call, at)
        now = state(trial / "study")
        assert now in (before, after), f"{name} killed at file operation {at} is half-done"
        _assert_sound(trial / "study")
        outcomes.append("new" if now == after else "old")
        if outcome == "done":
            break
        # the next write tidies what the kill left; the call can then be made again
        if now == before:
            assert _in_child(trial / "study", call, at=10**9) == "done"
            assert state(trial / "study") == after
        shutil.rmtree(trial)
    assert "old" in outcomes and "new" in outcomes and at > 10


def test_an_indexed_folder_import_killed_anywhere_keeps_whole_chunks_and_a_rerun_completes_it(template, tmp_path):
    def call(p):
        p.add_folder("m_000000", p.path.parent / "incoming", index="index.csv", chunk=2)

    def imported(path):
        p = pml.Project.open(path / "study")
        out = {}
        for ex in p.examples("m_000000"):
            if "file" in ex.source:
                label = p.label(ex)
                out[ex.source["file"]] = (ex.subject_id, label and label.status, label and label.mask_ref)
        return out

    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    _in_child(clean / "study", call, at=10**9)
    complete = imported(clean)
    assert len(complete) == 3 and all(v[1] == "submitted" for v in complete.values())
    for at in itertools.count(1):
        trial = tmp_path / f"trial-{at}"
        shutil.copytree(template, trial)
        outcome = _in_child(trial / "study", call, at)
        _assert_sound(trial / "study")
        assert len(imported(trial)) in (0, 2, 3)  # whole chunks
        assert all(imported(trial)[k] == complete[k] for k in imported(trial))  # each with its label
        _in_child(trial / "study", call, at=10**9, space="rerun")  # a rerun, as the README says
        assert imported(trial) == complete
        shutil.rmtree(trial)
        if outcome == "done":
            break


def test_vacuum_killed_at_any_file_operation_removes_only_what_nothing_refers_to(template, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(template, base)
    pml.Project.open(base / "study").delete_model("m_000001")  # its images are left for vacuum
    clean = tmp_path / "clean"
    shutil.copytree(base, clean)
    before = state(clean / "study")
    assert _in_child(clean / "study", lambda p: p.vacuum(), at=10**9) == "done"
    remaining = {ref for ref, _ in pml.Project.open(clean / "study").session.store.blobs.stored()}
    for at in itertools.count(1):
        trial = tmp_path / f"trial-{at}"
        shutil.copytree(base, trial)
        outcome = _in_child(trial / "study", lambda p: p.vacuum(), at)
        assert state(trial / "study") == before
        _assert_sound(trial / "study")  # no record lost a blob it refers to
        _in_child(trial / "study", lambda p: p.vacuum(), at=10**9)
        assert {ref for ref, _ in pml.Project.open(trial / "study").session.store.blobs.stored()} == remaining
        shutil.rmtree(trial)
        if outcome == "done":
            break
    assert at > 3


@pytest.mark.parametrize("name", ["add_examples", "delete_model", "batch", "import_dataset"])
def test_a_call_that_runs_out_of_disk_anywhere_changes_no_byte(template, tmp_path, name):
    call = CALLS[name]
    refused = 0
    for at in itertools.count(1):
        trial = tmp_path / f"trial-{at}"
        shutil.copytree(template, trial)
        before = tree_digest(trial / "study")
        outcome = _in_child(trial / "study", call, at, fault="enospc")
        if outcome == "done":
            break
        if outcome == "refused":
            refused += 1
            assert tree_digest(trial / "study") == before, f"{name} failing at file operation {at} kept something"
        _assert_sound(trial / "study")
        shutil.rmtree(trial)
    assert refused > 10


def test_refused_calls_change_no_byte(project, seg):
    ex = project.add_example(seg, image(seed=1))
    before = tree_digest(project.path)
    with pytest.raises(pml.ValidationError, match="JSON"):
        project.add_example(seg, image(seed=2), subject="new-patient", source={"note": {1, 2}})
    with pytest.raises(pml.ImageError):
        project.add_examples(seg, [image(seed=3), np.full((4, 4), np.nan, np.float32)])
    with pytest.raises(RuntimeError), project.batch():
        project.add_example(seg, image(seed=4))
        project.submit_label(ex, mask=np.ones(ex.shape, np.uint8))
        raise RuntimeError("the block fails")
    with pytest.raises(pml.ValidationError):
        project.submit_label(ex, mask=np.full(ex.shape, 9, np.uint8))
    assert tree_digest(project.path) == before
    numpy_source = project.add_example(seg, image(seed=5), source={"n": np.int64(3), "x": np.float32(0.5)})
    assert numpy_source.source == {"n": 3, "x": 0.5}


# -- damage is loud -------------------------------------------------------------------------


def _labeled(project, seg, n=6):
    exs = project.add_examples(seg, [image(8, 8, seed=i) for i in range(n)])
    for i, ex in enumerate(exs):
        project.submit_label(ex, mask=(image(8, 8, seed=100 + i) > 128).astype(np.uint8))
        if i % 2:
            project.submit_label(ex, mask=(image(8, 8, seed=200 + i) > 128).astype(np.uint8))
    return exs


def _file_of(project, table, key):
    store = project.session.store
    return store.root / "tables" / store._manifest["files"][shard_name(table, shard_of(table, key))]


DAMAGE = {
    "empty": lambda f: f.write_bytes(b""),
    "missing": lambda f: f.unlink(),
    "truncated": lambda f: f.write_bytes(f.read_bytes()[:-7]),
    "a list": lambda f: f.write_bytes(b'{"labels": []}'),
    "not records": lambda f: f.write_bytes(b'{"labels": {"x": 5}}'),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_labels_shard_is_an_error_naming_it_and_repair_restores_every_label(project, seg, damage):
    exs = _labeled(project, seg)
    labels = {ex.id: project.label(ex) for ex in exs}
    masks = {ex.id: project.mask(ex) for ex in exs}
    victim = _file_of(project, "labels", exs[0].id)
    DAMAGE[damage](victim)
    with pytest.raises(pml.StoreError, match=rf"{victim.name}.*check .*--repair"):
        pml.Project.open(project.path).label(exs[0])
    with pytest.raises(pml.StoreError):
        pml.Project.open(project.path).examples(seg)
    report = repair(project.path)
    assert report.ok, str(report)
    assert any("rebuilt from the audit trail" in r for r in report.repaired)
    fixed = pml.Project.open(project.path)
    for ex in exs:
        assert fixed.label(ex) == labels[ex.id]
        assert np.array_equal(fixed.mask(ex), masks[ex.id])
    assert [e["version"] for e in fixed.history(exs[1])] == [1, 2]
    assert fixed.submit_label(exs[0], mask=np.zeros((8, 8), np.uint8)).version == labels[exs[0].id].version + 1


def test_lost_tables_files_manifest_and_blobs_are_errors_not_an_empty_project(project, seg):
    exs = _labeled(project, seg, n=3)
    root = project.path
    _file_of(project, "examples", exs[0].id).unlink()
    with pytest.raises(pml.StoreError, match=r"examples-.*is missing"):
        pml.Project.open(root).examples(seg)
    shutil.rmtree(root / "tables")
    with pytest.raises(pml.StoreError, match="is missing"):
        pml.Project.open(root).models()
    with pytest.raises(pml.StoreError, match="manifest is gone"):
        os.unlink(root / "patientml.json")
        pml.Project.open(root)


def test_a_lost_manifest_is_rebuilt_by_repair(project, seg):
    exs = _labeled(project, seg, n=4)
    project.delete_example(exs[0])
    labels = {ex.id: project.label(ex) for ex in exs[1:]}
    os.unlink(project.path / "patientml.json")
    with pytest.raises(pml.StoreError, match="manifest is gone"):
        pml.Project.open(project.path)
    report = repair(project.path)
    assert report.ok and "repaired" in str(report)
    fixed = pml.Project.open(project.path)
    assert {ex.id: fixed.label(ex) for ex in exs[1:]} == labels and len(fixed.examples(seg)) == 3
    assert fixed.submit_label(exs[1], mask=np.zeros((8, 8), np.uint8)).version == labels[exs[1].id].version + 1


def test_a_missing_blob_is_an_error_and_check_names_it(project, seg):
    (ex, *_) = _labeled(project, seg, n=2)
    project.session.store.blobs.path(project.label(ex).mask_ref).unlink()
    with pytest.raises(pml.StoreError, match="is missing"):
        project.mask(ex)
    report = check(project.path)
    assert any("mask of example" in p for p in report.problems)
    repaired = repair(project.path)
    if project.label(ex).version > 1:  # an older version's mask is there: it comes back as a new version
        assert repaired.ok
    else:
        assert not repaired.ok and any("no older version" in lost for lost in repaired.lost)


def test_a_damaged_audit_line_is_reported_and_repair_keeps_the_rest(project, seg):
    exs = _labeled(project, seg, n=3)
    audit = project.path / "audit.jsonl"
    lines = audit.read_bytes().splitlines(keepends=True)
    lines[1] = b"#" * (len(lines[1]) - 1) + b"\n"  # same length: the commit counter still matches
    audit.write_bytes(b"".join(lines))
    fresh = pml.Project.open(project.path)
    with pytest.raises(pml.StoreError, match=r"line 2 of .*audit\.jsonl is damaged"):
        fresh.history(exs[0])
    with pytest.raises(pml.StoreError, match="line 2"):
        fresh.audit()
    report = repair(project.path)
    assert any("unreadable line" in lost for lost in report.lost) and not report.problems
    assert len(pml.Project.open(project.path).audit()) == len(lines) - 1


def test_check_command_reports_and_repairs(project, seg):
    exs = _labeled(project, seg, n=3)
    _file_of(project, "labels", exs[0].id).write_bytes(b"")
    cmd = [sys.executable, "-m", "patientml_widgets", "check", str(project.path)]
    found = subprocess.run(cmd, capture_output=True, text=True)
    assert found.returncode == 1 and "is empty" in found.stdout
    fixed = subprocess.run([*cmd, "--repair"], capture_output=True, text=True)
    assert fixed.returncode == 0 and "rebuilt from the audit trail" in fixed.stdout, fixed.stdout
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    assert pml.Project.open(project.path).label(exs[0]).status == "submitted"


def test_orphans_from_older_versions_are_found_and_removed(project, seg):
    exs = _labeled(project, seg, n=3)
    store = project.session.store
    with store.transaction():  # as a torn delete_example of schema 1 left it: the label without its example
        store.log({"time": "t", "actor": "x", "action": "delete_example", "example_id": exs[0].id, "model_id": seg.id})
        store.delete("examples", exs[0].id)
    report = check(project.path)
    assert any("has no example" in p for p in report.problems)
    assert repair(project.path).ok
    project = pml.Project.open(project.path)
    project.remove_class(seg, "margin")  # no longer refused forever by a label no one can delete


# -- leftovers and vacuum -------------------------------------------------------------------


def test_leftovers_of_killed_writes_go_at_the_next_open_or_write(template, tmp_path):
    path = tmp_path / "p"
    shutil.copytree(template, path)
    study = path / "study"
    call = CALLS["add_examples"]
    for at in (3, 12, 30):  # after some blobs; mid-blobs; in the shard files
        _in_child(study, call, at)
    (study / ".tmp" / ".x.123.tmp").write_bytes(b"half")
    (study / "tables" / "labels-03.999.json").write_bytes(b"{")
    (study / ".import-abandoned").mkdir()
    (study / ".import-abandoned" / ".in-use").write_bytes(b"")
    (study / ".import-abandoned" / "patient.dcm").write_bytes(b"x")
    project = pml.Project.open(study)  # open tidies when no one else is writing
    assert not list((study / ".tmp").iterdir())
    assert not (study / "tables" / "labels-03.999.json").exists()
    assert not (study / ".import-abandoned").exists()
    assert os.path.getsize(study / "audit.jsonl") == project.session.store._manifest["audit_bytes"]
    assert not [n for n in check(study).notes if "tables/" in n or "temp" in n]
    spare = check(study).notes
    assert any("Project.vacuum()" in n for n in spare)  # blobs the kills wrote
    report = project.vacuum()
    assert report.files > 0 and report.bytes > 0
    assert not any("Project.vacuum()" in n for n in check(study).notes)
    _assert_sound(study)


def test_a_killed_export_leaves_a_partial_that_the_next_export_there_removes(project, seg, tmp_path):
    _labeled(project, seg, n=2)
    out = tmp_path / "exports"
    out.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies when the files are written, before the rename
        from patientml_widgets.exchange import export as exports

        exports._fsync_tree = lambda *a: os._exit(KILLED)
        try:
            project.export_labels(seg, out / "first")
        finally:
            os._exit(3)
    os.waitpid(pid, 0)
    assert [p.name for p in out.iterdir() if ".partial-" in p.name] and not (out / "first").exists()
    project.export_labels(seg, out / "second")
    assert [p.name for p in out.iterdir()] == ["second"]


def test_vacuum_frees_deleted_work_and_keeps_every_label_version(project, seg):
    exs = _labeled(project, seg, n=4)
    history_masks = {e["mask_ref"] for ex in exs for e in project.history(ex)}
    other = project.create_model("Other", problem_type="segmentation", classes=["bg", "fg"])
    gone = project.add_examples(other, [image(64, 64, seed=500 + i) for i in range(3)])
    project.submit_label(gone[0], mask=np.ones((64, 64), np.uint8))
    kept_mask = project.label(gone[0]).mask_ref
    project.delete_model(other)
    assert project.vacuum().files == 6  # the images and thumbnails of the deleted model
    assert project.vacuum().files == 0
    assert all(project.session.store.blobs.exists(ref) for ref in history_masks | {kept_mask})
    for ex in exs:
        assert project.mask(ex) is not None and project.session.store.blobs.exists(ex.image_ref)
    assert not any(project.session.store.blobs.exists(ex.image_ref) for ex in gone)


def test_vacuum_reports_what_it_freed(project, seg):
    other = project.create_model("Other", problem_type="segmentation", classes=["bg", "fg"])
    gone = project.add_examples(other, [image(64, 64, seed=600 + i) for i in range(2)])
    sizes = sum(
        project.session.store.blobs.path(r).stat().st_size for ex in gone for r in (ex.image_ref, ex.thumbnail_ref)
    )
    project.delete_model(other)
    report = project.vacuum()
    assert (report.files, report.bytes) == (4, sizes)
    assert "4 unreferenced blob files" in str(report)


# -- readers while another process writes --------------------------------------------------------


def test_a_reader_never_sees_half_of_another_process_commit(project, seg):
    exs = project.add_examples(seg, [image(8, 8, seed=i) for i in range(8)])
    assert len({shard_of("labels", ex.id) for ex in exs}) > 2  # the commits span several files
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the writer
        try:
            writer = pml.Project.open(project.path, user="writer")
            for round_ in range(40):
                with writer.batch():
                    for ex in exs:
                        writer.submit_label(ex, mask=np.full((8, 8), round_ % 2, np.uint8))
        finally:
            os._exit(0)
    reader = pml.Project.open(project.path, user="reader")
    seen = set()
    while True:
        snapshot = reader.snapshot(seg)  # one call: every label shard from one commit
        versions = [version for rows in snapshot.values() for _, version in rows]
        assert len(versions) in (0, 8) and len(set(versions)) <= 1, f"a read saw several commits: {versions}"
        seen |= set(versions)
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            break
    assert len(seen) > 3


# -- random SIGKILLs ---------------------------------------------------------------------------


def _chaos(path, seed, out):  # pragma: no cover - runs in the child
    rng = random.Random(seed)
    counter = itertools.count()
    session_module.new_id = lambda prefix: f"{prefix}_{seed}_{next(counter)}"
    p = pml.Project.open(path, user=f"chaos-{seed}")

    def ack(*words):
        os.write(out, (" ".join(map(str, words)) + "\n").encode())

    for step in itertools.count():
        models = p.models()
        op = rng.choice(["add", "add", "single", "label", "label", "delete_example", "delete_model", "class", "batch"])
        tag = f"{seed}-{step}"
        if op == "add" or not models:
            model = p.create_model(f"m{tag}", problem_type="segmentation", classes=["bg", "a", "b"])
            exs = p.add_examples(model, [image(8, 8, seed=step * 4 + i) for i in range(4)], sources=[{"tag": tag}] * 4)
            ack("add", tag, model.id, *[e.id for e in exs])
            continue
        model = rng.choice(models)
        if op == "single":
            ex = p.add_example(model, image(8, 8, seed=step), source={"tag": f"s{tag}"})
            ack("single", model.id, ex.id)
        elif op == "label":
            exs = p.examples(model)
            if len(exs) >= 2:
                pair = rng.sample(exs, 2)
                with p.batch():
                    versions = [p.submit_label(ex, mask=np.ones((8, 8), np.uint8)).version for ex in pair]
                ack("label", *[f"{ex.id}:{v}" for ex, v in zip(pair, versions, strict=True)])
        elif op == "delete_example":
            singles = [ex for ex in p.examples(model) if str(ex.source.get("tag", "")).startswith("s")]
            if singles:
                victim = rng.choice(singles)
                p.delete_example(victim)
                ack("deleted", victim.id)
        elif op == "delete_model":
            p.delete_model(model)
            ack("dropped", model.id)
        elif op == "class":
            if "b" in model.class_names:
                p.remove_class(model, "b")
                ack("class", model.id)
        else:
            with p.batch():
                a = p.add_example(model, image(8, 8, seed=step), source={"tag": f"b{tag}"})
                b = p.add_example(model, image(8, 8, seed=step + 1), source={"tag": f"b{tag}"})
                p.submit_label(a, mask=np.zeros((8, 8), np.uint8))
            ack("batch", model.id, a.id, b.id)


@pytest.mark.slow
def test_random_sigkills_over_mixed_calls_lose_nothing_acknowledged_and_tear_nothing(tmp_path):
    path = tmp_path / "study"
    pml.Project.open(path)
    rng = random.Random(20261201)
    acked: dict[str, list[list[str]]] = {}
    dropped, deleted = set(), set()
    trials = int(os.environ.get("PATIENTML_KILL_TRIALS", "200"))
    for trial in range(trials):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            os.close(read)
            try:
                _chaos(path, trial, write)
            finally:
                os._exit(3)
        os.close(write)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read) as f:
            for line in f.read().splitlines():
                kind, *words = line.split()
                acked.setdefault(kind, []).append(words)
                if kind == "dropped":
                    dropped.add(words[0])
                elif kind == "deleted":
                    deleted.add(words[0])
        _assert_sound(path)  # nothing points at a missing record or blob
        p = pml.Project.open(path)
        examples, models = p.session.store.mapping("examples"), p.session.store.mapping("models")
        by_tag: dict[str, list[dict]] = {}
        for ex in examples.values():
            by_tag.setdefault(ex["source"]["tag"], []).append(ex)
        for tag, group in by_tag.items():  # whole calls only
            if tag.startswith("b"):
                assert len(group) == 2 and sum(p.label(ex["id"]) is not None for ex in group) >= 1, tag
            elif not tag.startswith("s"):
                assert len(group) == 4, tag
        # every acknowledged call is there; only the call that was killed (unacknowledged) may have
        # committed unseen: at most one model or one example per trial goes missing without an ack
        mentioned = {w[1] for w in acked.get("add", [])} | {
            w[0] for w in acked.get("single", []) + acked.get("batch", [])
        }
        unexplained_models = {m for m in mentioned if m not in models} - dropped
        assert len(unexplained_models) <= 1
        dropped |= unexplained_models
        for tag, model_id, *ids in acked.get("add", []):
            if model_id not in dropped:
                assert all(i in examples for i in ids) and len(by_tag[tag]) == 4
        unexplained = set()
        for model_id, *ids in acked.get("single", []) + acked.get("batch", []):
            if model_id not in dropped:
                unexplained |= {i for i in ids if i not in examples} - deleted
        assert len(unexplained) <= 1
        deleted |= unexplained
        for words in acked.get("label", []):
            for item in words:
                ex_id, version = item.split(":")
                if ex_id in examples:
                    assert p.label(ex_id).version >= int(version)
        assert not ({w[0] for w in acked.get("dropped", [])} & set(models))
        assert not ({w[0] for w in acked.get("deleted", [])} & set(examples))
        for (model_id,) in acked.get("class", []):
            if model_id in models:
                assert "b" not in [c["name"] for c in models[model_id]["classes"]]
    assert sum(len(v) for v in acked.values()) > trials  # the kills landed in streams of writes


def test_deleting_an_example_or_a_model_takes_its_cached_predictions(project, seg):
    exs = _labeled(project, seg, n=3)
    run = project.create_run(seg)
    store = project.session.store
    with store.transaction():  # as predict() caches them
        for ex in exs:
            store.put("predictions", f"{run.id}:{ex.id}", {"run_id": run.id, "example_id": ex.id, "model_id": seg.id})
    project.delete_example(exs[0])
    assert store.get("predictions", f"{run.id}:{exs[0].id}") is None
    assert store.get("predictions", f"{run.id}:{exs[1].id}") is not None
    _assert_sound(project.path)
    project.delete_model(seg)
    assert store.mapping("predictions") == {}
    _assert_sound(project.path)


# -- found by an adversarial pass ------------------------------------------------------------


def test_a_refused_write_on_a_stale_view_never_cuts_another_kernels_audit(project, seg):
    exs = _labeled(project, seg, n=2)
    stale = pml.Project.open(project.path)
    stale.models()
    other = pml.Project.open(project.path)
    other.submit_label(exs[0], mask=np.zeros((8, 8), np.uint8))
    size = os.path.getsize(project.path / "audit.jsonl")
    manifest = (project.path / "patientml.json").read_bytes()
    (project.path / "patientml.json").write_bytes(b'{"schema_ver')
    with pytest.raises(pml.StoreError):
        stale.create_model("Other", problem_type="classification", classes=["x", "y"])
    assert os.path.getsize(project.path / "audit.jsonl") == size
    (project.path / "patientml.json").write_bytes(manifest)
    assert pml.Project.open(project.path).label(exs[0]).version == 2


def test_vacuum_inside_a_batch_is_refused(project, seg):
    ex = project.add_example(seg, image(8, 8))
    with pytest.raises(pml.StoreError, match="inside a batch"), project.batch():
        project.delete_example(ex)
        project.vacuum()
    assert project.image(ex).shape == (8, 8)


def test_two_kernels_configuring_training_lose_nothing(project, seg):
    a, b = pml.Project.open(project.path), pml.Project.open(project.path)
    a.models(), b.models()
    a.configure_training(seg, max_trials=3)
    b.configure_training(seg, min_margin=0.01)
    training = pml.Project.open(project.path).model(seg).training
    assert training["max_trials"] == 3 and training["min_margin"] == 0.01


def test_readers_in_other_threads_never_see_a_batch_that_is_rolled_back(project, seg):
    import threading

    project.add_examples(seg, [image(8, 8, seed=i) for i in range(4)])
    seen, errors, stop = set(), [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                seen.add(len(project.examples(seg)))
            except Exception as e:
                errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(30):
        with pytest.raises(RuntimeError), project.batch():
            project.add_examples(seg, [image(8, 8, seed=100 + i)])
            time.sleep(0.002)
            raise RuntimeError
    stop.set()
    for t in readers:
        t.join()
    assert seen == {4} and not errors


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: {**r, "status": 5},
        lambda r: {k: v for k, v in r.items() if k != "updated"},
        lambda r: {**r, "version": "1"},
        lambda r: {**r, "mask_ref": "garbage"},
        lambda r: {**r, "example_id": "someone-else"},
    ],
)
def test_a_label_record_of_the_wrong_shape_is_damage_named_by_check(project, seg, edit):
    (ex, *_) = _labeled(project, seg, n=2)
    path = _file_of(project, "labels", ex.id)
    doc = orjson.loads(path.read_bytes())
    doc["labels"][ex.id] = edit(doc["labels"][ex.id])
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(pml.StoreError, match=path.name):
        pml.Project.open(project.path).status_counts(seg)
    assert any(path.name in p for p in check(project.path).problems)
    assert repair(project.path).ok
    assert pml.Project.open(project.path).label(ex).status == "submitted"


def test_labels_missing_from_a_readable_shard_are_found_and_restored(project, seg):
    exs = _labeled(project, seg, n=3)
    path = _file_of(project, "labels", exs[0].id)
    doc = orjson.loads(path.read_bytes())
    del doc["labels"][exs[0].id]
    path.write_bytes(orjson.dumps(doc))
    assert any("missing from tables/" in p for p in check(project.path).problems)
    assert repair(project.path).ok
    assert pml.Project.open(project.path).label(exs[0]).version == project.label(exs[0]).version


def test_a_hand_edited_shard_that_is_still_valid_json_reads(project, seg):
    import json

    (ex, _other) = project.add_examples(seg, [image(8, 8, seed=1), image(8, 8, seed=2)])
    path = _file_of(project, "examples", ex.id)
    doc = orjson.loads(path.read_bytes())
    path.write_text(json.dumps(doc, indent=2))  # pretty-printed, as a person would
    fresh = pml.Project.open(project.path)
    assert fresh.example(ex.id).id == ex.id and len(fresh.examples(seg)) == 2
    assert check(project.path).problems == []


def test_a_project_migrated_under_an_old_kernel_refuses_that_kernels_writes(tmp_path):
    import orjson as _orjson

    p = pml.Project.open(tmp_path / "p")
    p.create_model("Seg", problem_type="segmentation", classes=["bg", "fg"])
    root = p.path
    files = _orjson.loads((root / "patientml.json").read_bytes())["files"]
    for name, file in files.items():
        os.replace(root / "tables" / file, root / "tables" / f"{name}.json")
    (root / "patientml.json").write_bytes(b'{"schema_version": 1}')
    pml.Project.open(root)
    legacy = root / "tables" / "labels-00.json"
    assert legacy.is_dir() and "Upgrade" in (legacy / "UPGRADED").read_text()
    with pytest.raises(IsADirectoryError):  # what the old version's os.replace(tmp, legacy) then meets
        os.replace(root / "patientml.json", legacy)
