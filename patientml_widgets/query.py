"""Fast example queries: per-shard columns of the examples table, rebuilt only where a shard changed.

An example and its label live in the same shard index (both are sharded by example id), so
a label submit re-derives one shard's columns (about 3k rows at 100k examples), and paging,
sorting, filtering and counting run on numpy arrays. Columns are built on first use: a first
page sorted by creation time never pays for the other sort keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .store import Store

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


class _Block:
    """One shard's examples with their labels, and the columns derived from them so far."""

    def __init__(self, key: tuple[int, int], examples: dict[str, Any], labels: dict[str, Any]) -> None:
        self.key = key
        self.records = list(examples.values())
        self.labels = [labels.get(r["id"]) for r in self.records]
        self.columns: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            records, labels = self.records, self.labels
            if name == "status":
                codes = [0 if lab is None else _STATUS_OF_LABEL[lab["status"]] for lab in labels]
                self.columns[name] = np.array(codes, dtype=np.int8)
                return self.columns[name]
            if name == "label_updated":
                values = ["" if lab is None or lab["status"] == "deleted" else lab["updated"] for lab in labels]
            elif name == "subject_id":
                values = [r["subject_id"] or "" for r in records]
            elif name == "source":
                values = [source_order(r) for r in records]
            elif name == "created":  # the position within the batch breaks ties in the time
                values = [f"{r['created']}{r.get('seq', 0):07d}" for r in records]
            else:
                values = [r[name] for r in records]
            self.columns[name] = np.array(values, dtype=str) if values else np.array([], dtype="U1")
        return self.columns[name]


class ExampleIndex:
    """Columns of all examples, kept current shard by shard."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._blocks: dict[int, _Block] = {}
        self._merged: dict[str, tuple[tuple, np.ndarray]] = {}

    def _current_blocks(self) -> list[_Block]:
        blocks = []
        for shard in range(self._store.shards("examples")):
            ex_gen, examples = self._store.shard("examples", shard)
            lab_gen, labels = self._store.shard("labels", shard)
            block = self._blocks.get(shard)
            if block is None or block.key != (ex_gen, lab_gen):
                block = self._blocks[shard] = _Block((ex_gen, lab_gen), examples, labels)
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
