"""A project folder shared by a team: two real OS users of one group write one project at the same time.

The other users are real user ids (the kernel checks every open, rename and lock against them), made by
forking this process and dropping to them, with the usual umask 022: a file one of them writes must stay
readable and replaceable by the other, the lock takeable, the audit trail appendable.
"""

import os
import shutil
import stat
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

import patientml_widgets as pml

GROUP = 42_420  # ids no account uses: the kernel needs no name for them
READERS = {"ana": 42_421, "ben": 42_422}

needs_root = pytest.mark.skipif(
    os.name != "posix" or not hasattr(os, "fork") or os.geteuid() != 0,
    reason="making processes of other OS users needs root (CI runs as root)",
)


def as_os_user(uid: int, work) -> int:
    """Fork; the child becomes ``uid`` of GROUP (umask 022), runs ``work()`` and exits 0 (1 if it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's outcome is its exit code
        code = 1
        try:
            os.setgroups([GROUP])
            os.setgid(GROUP)
            os.setuid(uid)
            os.umask(0o022)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait_all(pids: list[int], timeout: float = 120) -> list[int]:
    codes, deadline = {}, time.monotonic() + timeout
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            codes[pid] = -9
    return [codes[p] for p in pids]


def masks(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        m = np.zeros((24, 24), np.uint8)
        m[2 + i % 10 : 12 + i % 10, 4:14] = 1
        out.append(m)
    return out


@pytest.fixture
def team_folder():
    """A folder under the system temp dir that the other ids can reach, holding the project folder an
    administrator prepared as the README says: owned by the team's group, group-writable, setgid."""
    base = Path(tempfile.mkdtemp(prefix="pml-team-"))
    base.chmod(0o755)
    folder = base / "project"
    folder.mkdir()
    os.chown(folder, 0, GROUP)
    folder.chmod(0o2770)
    # warm every lazy import here: after dropping to another id the interpreter's own files may be unreadable
    warm = pml.Project.open(base / "warm", user="warm")
    model = warm.create_model("Warm", problem_type="segmentation", classes=["background", "lesion"])
    (ex,) = warm.add_examples(model, [np.zeros((24, 24), np.uint8)])
    warm.save_label(ex, mask=masks(1)[0])
    warm.submit_label(ex, mask=masks(1)[0])
    warm.examples(model)
    warm.history(ex)
    warm.configure_reading(model, readers=2, pool=["a", "b"])
    for reader in ("a", "b"):
        pml.Project.open(base / "warm", user=reader).submit_label(ex, mask=masks(1)[0])
    warm.queue(model, reader="a")
    warm.readings(ex)
    yield folder
    shutil.rmtree(base, ignore_errors=True)


@needs_root
@pytest.mark.slow
def test_two_os_users_of_one_group_label_one_project_at_once_and_nothing_is_lost(team_folder):
    n = 16

    def create():
        project = pml.Project.open(team_folder, user="ana")
        model = project.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
        project.add_examples(model, [np.full((24, 24), 10 * i, np.uint8) for i in range(n)])

    assert wait_all([as_os_user(READERS["ana"], create)]) == [0]

    def label(user: str, part: int):
        def work():
            project = pml.Project.open(team_folder, user=user)
            model = project.model("Lesions")
            examples = project.examples(model, sort="created")
            for ex, mask in list(zip(examples, masks(n)))[part::2]:
                project.save_label(ex, mask=mask)  # a draft, then the submit: two commits each
                project.submit_label(ex, mask=mask)

        return work

    pids = [as_os_user(READERS["ana"], label("ana", 0)), as_os_user(READERS["ben"], label("ben", 1))]
    assert wait_all(pids) == [0, 0]

    project = pml.Project.open(team_folder, user="admin")
    model = project.model("Lesions")
    examples = project.examples(model, sort="created")
    assert project.status_counts(model)["labeled"] == n
    for i, (ex, mask) in enumerate(zip(examples, masks(n))):
        label_ = project.label(ex)
        assert label_.author == ("ana" if i % 2 == 0 else "ben") and label_.status == "submitted"
        assert np.array_equal(project.mask(ex), mask)
    actors = {e.get("author") or e.get("actor") for e in project.audit(model)}
    assert {"ana", "ben"} <= actors
    # every file and folder the two wrote stays the team's: its group, group-writable; folders setgid
    owners = set()
    for path in [team_folder, *team_folder.rglob("*")]:
        st = path.lstat()
        owners.add(st.st_uid)
        assert st.st_gid == GROUP, path
        assert st.st_mode & stat.S_IRGRP and st.st_mode & stat.S_IWGRP, (path, oct(st.st_mode))
        if path.is_dir():
            assert st.st_mode & stat.S_ISGID, path
    assert {READERS["ana"], READERS["ben"]} <= owners

    # a later write by either still works on what the other wrote
    def relabel():
        p = pml.Project.open(team_folder, user="ben")
        p.submit_label(p.examples(p.model("Lesions"), sort="created")[0], mask=masks(n)[5])

    assert wait_all([as_os_user(READERS["ben"], relabel)]) == [0]
    project.poll()
    assert project.label(examples[0]).author == "ben"


@needs_root
@pytest.mark.slow
def test_two_os_users_and_a_third_reader_read_one_project_at_once_and_every_reading_is_kept(team_folder):
    """Three readers (two OS users, and a third reader in a process of its own) read their queues at once."""
    n, pool = 12, ["ana", "ben", "cy"]

    def create():
        project = pml.Project.open(team_folder, user="ana")
        model = project.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
        project.add_examples(model, [np.full((24, 24), 10 * i, np.uint8) for i in range(n)])
        for reader in pool[1:]:
            project.add_member(reader, "labeler")
        project.configure_reading(model, readers=2, pool=pool)

    assert wait_all([as_os_user(READERS["ana"], create)]) == [0]

    def read(user: str, shift: int):
        def work():
            project = pml.Project.open(team_folder, user=user)
            for entry in project.queue("Lesions"):
                project.save_label(entry.example, mask=masks(n)[shift])
                project.submit_label(entry.example, mask=masks(n)[shift])

        return work

    third = os.fork()
    if third == 0:  # pragma: no cover - the child's outcome is its exit code
        code = 1
        try:
            read("cy", 2)()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    pids = [as_os_user(READERS["ana"], read("ana", 0)), as_os_user(READERS["ben"], read("ben", 1)), third]
    assert wait_all(pids) == [0, 0, 0]
    project = pml.Project.open(team_folder, user="ana")
    model = project.model("Lesions")
    assert [project.queue_counts(model, reader=r)["submitted"] for r in pool] == [8, 8, 8]
    for ex in project.examples(model):
        readings = project.readings(ex)
        assert len(readings) == 2 and all(r.status == "submitted" and r.author == r.reader for r in readings)
        for r in readings:
            assert np.array_equal(project.reading_mask(ex, r.reader), masks(n)[pool.index(r.reader)])
        assert project.label(ex).source == "consensus" and project.label(ex).readers == tuple(
            r.reader for r in readings
        )
    submits = [e for e in project.audit(model) if e.get("action") == "submit" and e.get("reader")]
    assert len(submits) == 2 * n and all(e["actor"] == e["reader"] for e in submits)


def test_a_group_shared_project_folder_passes_group_write_on_whatever_the_umask(tmp_path):
    shared, private = tmp_path / "shared", tmp_path / "private"
    shared.mkdir()
    shared.chmod(0o2770)
    old = os.umask(0o077)  # the strictest a team member might have
    try:
        for folder in (shared, private):
            project = pml.Project.open(folder, user="ana")
            model = project.create_model("M", problem_type="segmentation", classes=["background", "lesion"])
            (ex,) = project.add_examples(model, [np.zeros((24, 24), np.uint8)])
            project.submit_label(ex, mask=masks(1)[0])
            project.examples(model)
    finally:
        os.umask(old)
    made = [p for p in shared.rglob("*")]
    assert any(p.is_dir() for p in made) and any(p.name == "audit.jsonl" for p in made)
    for path in made:
        mode = path.lstat().st_mode
        assert mode & stat.S_IRGRP and mode & stat.S_IWGRP, (path, oct(mode))
        assert not path.is_dir() or mode & stat.S_ISGID
    # a folder that is not shared keeps what the umask says
    assert all(not p.lstat().st_mode & (stat.S_IRGRP | stat.S_IWGRP) for p in private.rglob("*") if p.name != ".lock")
