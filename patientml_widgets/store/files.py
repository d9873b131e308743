"""Durable file writes, and scratch folders that a later process can tell are abandoned.

``atomic_write``: temp file, fsync, ``os.replace``, fsync of the folder - a kill at any
instant leaves either the old file or the new one, never a torn one.

A folder shared with its group (group-writable, usually setgid so new files take its group) passes
that on: files and folders made in it are group-writable too, whatever the writer's umask, so that a
project written by one OS user of a team stays writable by the others (:func:`make_dirs`,
:func:`share_like_folder`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = [
    "atomic_write",
    "fsync_dir",
    "group_shared",
    "inside",
    "make_dirs",
    "open_append",
    "publish",
    "remove_abandoned",
    "scratch_folder",
    "share_like_folder",
    "write_new",
]

_GROUP_RW = stat.S_IRGRP | stat.S_IWGRP

#: a scratch folder this young without its lock file may be one being set up right now
_SETUP_GRACE_S = 60.0


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def group_shared(folder: Path) -> bool:
    """Whether ``folder`` is shared with its group: group-writable."""
    try:
        return bool(os.stat(folder).st_mode & stat.S_IWGRP)
    except OSError:
        return False


def share_like_folder(path: Path, fd: int | None = None) -> None:
    """Make the new file or folder ``path`` (or the open ``fd``) group-writable when its folder is shared
    (folders also setgid, so what is made in them keeps the group). Best effort: only the owner may change it.
    """
    if not group_shared(path.parent):
        return
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode if fd is not None else os.stat(path).st_mode)
        wanted = mode | _GROUP_RW | (stat.S_IXGRP | stat.S_ISGID if path.is_dir() else 0)
        if wanted != mode:
            os.fchmod(fd, wanted) if fd is not None else os.chmod(path, wanted)
    except OSError:
        pass


def make_dirs(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``; each folder it makes is shared like its own folder."""
    missing = []
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        with suppress(FileExistsError):
            new.mkdir()
            share_like_folder(new)


def open_append(path: Path):
    """``open(path, "ab+")``; a file it creates is shared like its folder."""
    f = open(path, "ab+")  # noqa: SIM115 - the caller closes it
    if f.tell() == 0:
        share_like_folder(path, f.fileno())
    return f


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (for files nothing refers to until a later commit)."""
    with open(path, "wb") as f:
        share_like_folder(path, f.fileno())
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True, tmp_dir: Path | None = None) -> None:
    """Replace ``path`` with ``data`` so that readers see all of it or none of it.

    ``tmp_dir`` (on the same file system) holds the temp file, so that one folder holds
    every leftover of a killed write.
    """
    tmp = (tmp_dir or path.parent) / f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` (backslashes read as ``/``) if it stays inside ``root`` with links resolved, else None.

    The one check for every name that comes from outside: index CSVs, COCO files, archives, exports.
    """
    relative = relative.replace("\\", "/")
    if not relative or relative.startswith("/") or Path(relative).is_absolute():
        return None
    target = (root / relative).resolve()
    return target if target.is_relative_to(root.resolve()) else None


_LOCK_NAME = ".in-use"


@contextmanager
def scratch_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder ``parent/<prefix><random>``, locked while in use and removed afterwards.

    A process killed while using it leaves the folder behind, unlocked: the next
    :func:`remove_abandoned` of the same ``parent`` and ``prefix`` removes it.
    """
    folder = parent / f"{prefix}{secrets.token_hex(4)}"
    folder.mkdir()
    share_like_folder(folder)
    lock = FileLock(folder / _LOCK_NAME)
    try:
        lock.acquire()
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.release()


def publish(folder: Path, target: Path) -> None:
    """Rename a finished scratch folder to ``target`` (without its lock file)."""
    with suppress(FileNotFoundError):
        os.unlink(folder / _LOCK_NAME)
    os.replace(folder, target)
    fsync_dir(target.parent)


def remove_abandoned(parent: Path, prefix: str, contains: str = "") -> int:
    """Remove the scratch folders ``parent/<prefix>...<contains>...`` whose process is gone; how many."""
    removed = 0
    try:
        candidates = [
            p
            for p in parent.iterdir()
            if p.name.startswith(prefix) and contains in p.name[len(prefix) :] and p.is_dir()
        ]
    except OSError:
        return 0
    for folder in candidates:
        marker = folder / _LOCK_NAME
        try:
            if not marker.exists():  # killed before it took its lock, or being set up right now
                if time.time() - folder.stat().st_mtime < _SETUP_GRACE_S:
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
                continue
            lock = FileLock(marker, timeout=0)
            lock.acquire()
        except (Timeout, OSError):
            continue  # in use by a live process (or not ours to touch)
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        finally:
            lock.release()
    return removed
