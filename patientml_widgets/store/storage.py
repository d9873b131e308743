"""A TinyDB storage that reads its file once and writes through atomically.

TinyDB's stock ``JSONStorage`` rewrites its file in place (a kill can leave it
unparseable) and its ``CachingMiddleware`` loses acknowledged writes. This storage
keeps the document in memory, notices when another process replaced the file, and
commits with temp file + fsync + ``os.replace``. Writes are deferred until the
owning :class:`~patientml_widgets.store.store.Store` commits its transaction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from ..errors import StoreError
from .files import atomic_write

__all__ = ["AtomicJSONStorage", "StrIdTable", "open_tinydb"]

Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class AtomicJSONStorage(Storage):
    """One JSON file, cached in memory, replaced atomically on :meth:`flush`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._data: dict[str, dict[str, Any]] | None = None
        self._stamp: Stamp | None = _stamp(self.path)  # the version of the file we last saw
        self.dirty = False

    def read(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            self._load()
        return self._data  # type: ignore[return-value]

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self._data = data
        self.dirty = True

    def _load(self) -> None:
        stamp = _stamp(self.path)
        if stamp is None:
            self._data, self._stamp = {}, None
            return
        raw = self.path.read_bytes()
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as e:
            raise StoreError(f"{self.path} is not valid JSON ({e}); restore it from a backup") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.path} does not hold a TinyDB document")
        self._data, self._stamp = data, stamp

    def changed_on_disk(self) -> bool:
        """True when another writer replaced the file since we last saw it."""
        return _stamp(self.path) != self._stamp

    def invalidate(self) -> None:
        """Forget the cached document (and any uncommitted change); reload on next read."""
        self._data, self.dirty = None, False
        self._stamp = _stamp(self.path)

    def flush(self) -> None:
        if not self.dirty:
            return
        atomic_write(self.path, orjson.dumps(self._data))
        self._stamp = _stamp(self.path)
        self.dirty = False


class StrIdTable(Table):
    """A TinyDB table keyed by our string ids (for querying a project file with TinyDB)."""

    document_id_class = str  # type: ignore[assignment]


class _TinyDB(TinyDB):
    table_class = StrIdTable


def open_tinydb(path: Path) -> TinyDB:
    """A TinyDB over one project file, backed by :class:`AtomicJSONStorage`."""
    return _TinyDB(path, storage=AtomicJSONStorage)
