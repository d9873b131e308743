"""Shard files: TinyDB documents (``{table: {id: record}}``), read and checked loudly.

Each commit writes the shards it changed as new, immutable files, so a file is
never changed once written. :func:`open_tinydb` opens one of them with TinyDB for
querying (read only: changes go through :class:`~patientml_widgets.Project`).
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

__all__ = ["REQUIRED", "StrIdTable", "decode_shard", "open_tinydb"]

#: the fields every record of a table has (a record without them is damage, not data)
REQUIRED: dict[str, tuple[str, ...]] = {
    "models": ("id", "name", "problem_type", "classes"),
    "subjects": ("id",),
    "runs": ("id", "model_id", "status"),
    "code": ("name", "source_ref"),
    "examples": ("id", "model_id", "image_ref", "width", "height", "split"),
    "labels": ("example_id", "model_id", "status", "version"),
    "predictions": ("run_id", "model_id"),
}


def decode_shard(raw: bytes, table: str, where: Path | str) -> dict[str, dict[str, Any]]:
    """The ``{id: record}`` of one shard file's bytes, or a StoreError saying what is wrong with it."""
    if not raw:
        raise StoreError(f"{where} is empty")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise StoreError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get(table, {}), dict):
        raise StoreError(f"{where} does not hold a TinyDB document of {table} records")
    records = data.get(table, {})
    required = REQUIRED.get(table, ())
    for key, record in records.items():
        if not isinstance(record, dict) or any(k not in record for k in required):
            raise StoreError(f"{where}: record {key!r} is not a {table} record (it lacks {', '.join(required)})")
    return records


class _ReadOnlyStorage(Storage):
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        raw = self.path.read_bytes()
        return orjson.loads(raw) if raw else {}

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        raise StoreError("project files are changed through Project, not TinyDB (each commit writes new files)")


class StrIdTable(Table):
    """A TinyDB table keyed by our string ids (for querying a project file with TinyDB)."""

    document_id_class = str  # type: ignore[assignment]


class _TinyDB(TinyDB):
    table_class = StrIdTable


def open_tinydb(path: Path) -> TinyDB:
    """A TinyDB over one shard file, for queries (read only)."""
    return _TinyDB(path, storage=_ReadOnlyStorage)
