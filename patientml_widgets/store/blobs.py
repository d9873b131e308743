"""Content-addressed blob files: images, masks, thumbnails, weights.

A blob's reference is ``<sha256>.<ext>``; the same bytes are stored once. Blobs are
written only inside a transaction (:meth:`Store.put_blob`), durably and before the
commit that refers to them; a transaction that fails removes the blobs it created,
and :meth:`Store.vacuum` collects those a kill left behind.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from ..errors import StoreError, repair_hint
from .files import atomic_write, make_dirs

__all__ = ["BlobStore", "blob_ref", "is_blob_ref"]

_REF = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


def blob_ref(data: bytes, ext: str) -> str:
    """The reference the bytes ``data`` are stored under."""
    return f"{hashlib.sha256(data).hexdigest()}.{ext}"


def is_blob_ref(value: object) -> bool:
    return isinstance(value, str) and len(value) > 65 and _REF.match(value) is not None


class BlobStore:
    """Blob files under ``root``, fanned out by the first two hex digits."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = Path(root)
        self._tmp = tmp_dir

    def path(self, ref: str) -> Path:
        if not is_blob_ref(ref):
            raise StoreError(f"not a blob reference: {ref!r}")
        return self.root / ref[:2] / ref

    def write(self, data: bytes, ext: str) -> tuple[str, bool]:
        """Store ``data`` durably: ``(ref, created)`` (False when the same bytes were there)."""
        ref = blob_ref(data, ext)
        path = self.path(ref)
        if path.exists():
            return ref, False
        make_dirs(path.parent)
        atomic_write(path, data, tmp_dir=self._tmp, sync_dir=False)  # the commit syncs the folder once
        return ref, True

    def get(self, ref: str) -> bytes:
        path = self.path(ref)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            hint = repair_hint(self.root.parent)
            raise StoreError(f"blob {path} is missing: the project refers to it but the file is gone. {hint}") from None

    def exists(self, ref: str) -> bool:
        return self.path(ref).exists()

    def remove(self, ref: str) -> None:
        path = self.path(ref)
        with suppress(FileNotFoundError):
            os.unlink(path)
        with suppress(OSError):  # the fan-out folder, when that was its last blob
            path.parent.rmdir()

    def stored(self) -> Iterator[tuple[str, Path]]:
        """Every blob file: ``(ref, path)`` (other files in blobs/ are skipped)."""
        try:
            folders = sorted(self.root.iterdir())
        except FileNotFoundError:
            return
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if is_blob_ref(path.name):
                    yield path.name, path
