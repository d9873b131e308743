"""Durable file writes: temp file, fsync, ``os.replace``, fsync of the folder.

A kill at any instant leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "inside"]


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


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see all of it or none of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
