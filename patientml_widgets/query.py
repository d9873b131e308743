"""Fast example queries: per-shard columns of the examples table, rebuilt only where a shard changed.

An example and its label live in the same shard index (both are sharded by example id), so
a label submit re-derives one shard's columns (about 3k rows at 100k examples), and paging,
sorting, filtering and counting run on numpy arrays. Columns are built on first use: a first
page sorted by creation time never pays for the other sort keys.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .store import Store
from .store.store import CACHE

__all__ = ["STATUS_CODES", "ExampleIndex", "source_order"]

STATUS_CODES = {"unlabeled": 0, "draft": 1, "labeled": 2}


_STATUS_OF_LABEL = {"deleted": 0, "draft": 1, "submitted": 2}  # -> STATUS_CODES values


def source_order(record: dict[str, Any]) -> str:
    """The sort key of an example's origin: by subject, then DICOM series in slice order, else file path."""
    source = record.get("source") or {}
    subject = record.get("subject_id") or ""
    if source.get("series_uid"):
        position = int(source.get("series_index") or 0)
        return f"{subject}\x1f{source.get('study_uid', '')}\x1f{source['series_uid']}\x1f{position:09d}"
    return f"{subject}\x1f{source.get('file', '')}"


#: columns that come from the example records alone, and those that need the labels too
_EXAMPLE_COLUMNS = ("model_id", "split", "subject_id", "created", "updated", "source")
_LABEL_COLUMNS = ("status", "label_updated")


class ColumnCache:
    """Columns derived from shard files, kept in ``.cache/`` next to them.

    Shard files never change once written, so the columns of a file never go stale: a
    project opened again loads them instead of parsing every record. Entries are named
    by the file and its size and modification time (``labels-07.42.json@1234-<ns>``), so
    a file damaged after it was written is read again (and its damage reported). Best
    effort: a read-only folder or a damaged cache file only means the columns are computed.
    """

    def __init__(self, folder: Path, tables: Path) -> None:
        self.folder, self._tables = folder, tables

    def _stamped(self, file: str) -> str:
        st = os.stat(self._tables / file)
        return f"{file}@{st.st_size}-{st.st_mtime_ns}"

    def _path(self, name: str, ex_file: str, lab_file: str | None) -> Path:
        label_part = (self._stamped(lab_file) if lab_file else "-") if name in _LABEL_COLUMNS else "x"
        return self.folder / self._stamped(ex_file) / f"{label_part}.{name}.npy"

    def load(self, name: str, ex_file: str, lab_file: str | None, rows: int | None) -> np.ndarray | None:
        try:
            column = np.load(self._path(name, ex_file, lab_file), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if column.ndim != 1 or column.dtype.kind not in "iuU" or (rows is not None and len(column) != rows):
            return None
        return column

    def save(self, name: str, ex_file: str, lab_file: str | None, column: np.ndarray) -> None:
        try:
            path = self._path(name, ex_file, lab_file)
        except OSError:
            return
        buf = io.BytesIO()
        np.save(buf, column, allow_pickle=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(OSError):  # not fsynced: derived data, and a torn file is refused by load
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, path)


class _Block:
    """One shard's examples with their labels, and the columns derived from them so far."""

    def __init__(self, key: tuple, examples, labels, files: tuple[str | None, str | None], cache) -> None:
        self.key = key
        self._examples, self._labels = examples, labels
        self._files, self._cache = files, cache
        self.columns: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            ex_file, lab_file = self._files
            cacheable = ex_file is not None  # the examples are those of a file, not changed in a transaction
            if name in _LABEL_COLUMNS and lab_file is None and len(self._labels):
                cacheable = False  # the labels changed in a transaction
            column = None
            if cacheable:
                rows = None if name == "id" else len(self.column("id"))
                column = self._cache.load(name, ex_file, lab_file, rows)
            if column is None:
                column = self._compute(name)
                if cacheable:
                    self._cache.save(name, ex_file, lab_file, column)
            self.columns[name] = column
        return self.columns[name]

    def _compute(self, name: str) -> np.ndarray:
        ids = list(self._examples)
        if name == "id":
            values = ids
        elif name in _LABEL_COLUMNS:
            found = self._labels  # len() indexes its lines once (before, each lookup scans the file's bytes)
            labels = [found.get(i) for i in ids] if len(found) else [None] * len(ids)
            if name == "status":
                return np.array([0 if lab is None else _STATUS_OF_LABEL[lab["status"]] for lab in labels], np.int8)
            values = ["" if lab is None or lab["status"] == "deleted" else lab["updated"] for lab in labels]
        else:
            records = [self._examples[i] for i in ids]
            if name == "subject_id":
                values = [r["subject_id"] or "" for r in records]
            elif name == "source":
                values = [source_order(r) for r in records]
            elif name == "created":  # the position within the batch breaks ties in the time
                values = [f"{r['created']}{r.get('seq', 0):07d}" for r in records]
            else:
                values = [r[name] for r in records]
        return np.array(values, dtype=str) if values else np.array([], dtype="U1")


class ExampleIndex:
    """Columns of all examples, kept current shard by shard."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache = ColumnCache(store.root / CACHE, store.root / "tables")
        self._blocks: dict[int, _Block] = {}
        self._merged: dict[str, tuple[tuple, np.ndarray]] = {}

    def _current_blocks(self) -> list[_Block]:
        blocks = []
        store = self._store
        for shard in range(store.shards("examples")):
            ex_gen, examples = store.shard("examples", shard)
            lab_gen, labels = store.shard("labels", shard)
            block = self._blocks.get(shard)
            if block is None or block.key != (ex_gen, lab_gen):
                files = (store.shard_file("examples", shard), store.shard_file("labels", shard))
                block = self._blocks[shard] = _Block((ex_gen, lab_gen), examples, labels, files, self._cache)
            blocks.append(block)
        return blocks

    def column(self, name: str, blocks: list[_Block] | None = None) -> np.ndarray:
        blocks = blocks if blocks is not None else self._current_blocks()
        signature = tuple(b.key for b in blocks)
        cached = self._merged.get(name)
        if cached is None or cached[0] != signature:
            cached = self._merged[name] = (signature, np.concatenate([b.column(name) for b in blocks]))
        return cached[1]

    def select(
        self,
        model_id: str,
        *,
        statuses: set[str] | None = None,
        subject: str | None = None,
        split: str | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """A lazy view of the columns, and the positions of the rows that match."""
        blocks = self._current_blocks()
        cols = _Columns(self, blocks)
        keep = cols["model_id"] == model_id
        if statuses is not None:
            keep &= np.isin(cols["status"], [STATUS_CODES[s] for s in statuses])
        if subject is not None:
            keep &= cols["subject_id"] == subject
        if split is not None:
            keep &= cols["split"] == split
        return cols, np.flatnonzero(keep)

    @staticmethod
    def order(cols, rows: np.ndarray, sort: str, descending: bool) -> np.ndarray:
        """``rows`` sorted by a column; a stable sort keeps ties in storage order, so pages are stable.

        Examples added together share their creation time; ``created`` sorts them in the order
        they were added (an import adds a DICOM series in slice order, so Previous / Next walk it).
        """
        if len(rows) == 0:
            return rows
        order = np.argsort(cols[sort][rows], kind="stable")
        return rows[order[::-1] if descending else order]

    def counts(self, model_id: str) -> dict[str, int]:
        blocks = self._current_blocks()
        codes = self.column("status", blocks)[self.column("model_id", blocks) == model_id]
        found = np.bincount(codes, minlength=3)
        return {name: int(found[code]) for name, code in STATUS_CODES.items()}


class _Columns:
    """Mapping-like access to merged columns, built on first use."""

    def __init__(self, index: ExampleIndex, blocks: list[_Block]) -> None:
        self._index, self._blocks = index, blocks

    def __getitem__(self, name: str) -> np.ndarray:
        return self._index.column(name, self._blocks)
