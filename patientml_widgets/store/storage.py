"""Shard files: TinyDB documents (``{table: {id: record}}``), read and checked loudly.

Each commit writes the shards it changed as new, immutable files, so a file is
never changed once written. A file holds one record per line: a reader splits it
into lines and parses a record when it is first used (a page of 50 examples at 100k
parses 50 records, not 100k), and a commit writes unchanged records as they were read.
:func:`open_tinydb` opens one of them with TinyDB for querying (read only: changes go
through :class:`~patientml_widgets.Project`).
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from ..errors import StoreError, repair_hint
from ..team import ROLES
from .blobs import is_blob_ref

__all__ = ["SCHEMA", "Records", "StrIdTable", "decode_shard", "encode_shard", "load_shard", "open_tinydb"]


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _text_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _ref(v: Any) -> bool:
    return is_blob_ref(v)


def _ref_or_none(v: Any) -> bool:
    return v is None or is_blob_ref(v)


def _indices(v: Any) -> bool:
    return isinstance(v, list) and all(_count(c) for c in v)


def _classes(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(c, dict) and _count(c.get("index")) and _text(c.get("name")) for c in v
    )


def _one_of(*values: str):
    return lambda v: v in values


#: what every record of a table holds (a record without it is damage, not data): field -> check
SCHEMA: dict[str, dict[str, Any]] = {
    "models": {
        "id": _text, "name": _text, "problem_type": _one_of("classification", "segmentation"),
        "classes": _classes, "created": _text,
    },
    "subjects": {"id": _text},
    "runs": {"id": _text, "model_id": _text, "status": _text},
    "code": {"name": _text, "source_ref": _ref},
    "members": {"user": _text, "role": _one_of(*ROLES)},
    "examples": {
        "id": _text, "model_id": _text, "subject_id": _text_or_none, "split": _one_of("train", "val", "test"),
        "width": _count, "height": _count, "image_ref": _ref, "thumbnail_ref": _ref,
        "source": lambda v: isinstance(v, dict), "created": _text,
    },
    "labels": {
        "example_id": _text, "model_id": _text, "status": _one_of("draft", "submitted", "deleted"),
        "version": _count, "classes": _indices, "mask_ref": _ref_or_none, "updated": _text,
    },
    "readings": {
        "example_id": _text, "model_id": _text, "reader": _text,
        "status": _one_of("assigned", "draft", "submitted", "deleted"), "version": _count, "classes": _indices,
        "mask_ref": _ref_or_none, "updated": _text,
    },
    "predictions": {"run_id": _text, "model_id": _text},
}  # fmt: skip


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _dict(v: Any) -> bool:
    return isinstance(v, dict)


def _dict_or_none(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(t, str) for t in v)


def _text_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(t, str) for t in v.values())


def _dicts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(d, dict) for d in v)


def _real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _spacing(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(_real(x) and x > 0 for x in v)


def _affine(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 4
        and all(isinstance(r, list) and len(r) == 4 and all(map(_real, r)) for r in v)
    )


def _counts(v: Any) -> bool:
    return isinstance(v, list) and all(_count(x) for x in v)


def _snapshot(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(pairs, list)
        and all(isinstance(p, list) and len(p) == 2 and _text(p[0]) and _count(p[1]) for p in pairs)
        for pairs in v.values()
    )


#: fields a record may lack (older versions did not write them) but, when present, must hold this
#: kind of value: the code reads them without checking again, so a crafted value is damage too
OPTIONAL: dict[str, dict[str, Any]] = {
    "models": {
        "description": _text, "retired_classes": _classes, "multi_label": _flag, "champion_run_id": _text_or_none,
        "training": _dict, "retrain": _dict, "updated": _text, "reading": _dict,
    },
    "subjects": {"name": _text, "tags": _texts, "created": _text, "external_ids": _text_map, "metadata": _dict},
    "examples": {
        "channels": _count, "dtype": _text, "updated": _text, "seq": _count, "depth": _count, "spacing": _spacing,
        "affine": _affine,
    },
    "labels": {
        "kind": _one_of("mask", "classes"), "author": _text, "time_spent": _number_or_none, "source": _text,
        "created": _text, "slices": _counts, "made_with": _dict, "review": _dict, "readers": _texts,
        "agreement": _number_or_none, "pairs": _dict,
    },
    "readings": {
        "kind": _one_of("mask", "classes"), "author": _text, "time_spent": _number_or_none, "source": _text,
        "created": _text, "slices": _counts, "made_with": _dict, "review": _dict,
    },
    "runs": {
        "slug": _text, "trigger": _text, "snapshot": _snapshot, "hyperparameters": _dict, "metrics": _dict,
        "approvals": _dicts, "history": _dicts, "progress": _dict, "error": _text_or_none, "created": _text,
        "started": _text_or_none, "ended": _text_or_none, "artifact_ref": _ref_or_none, "classes": _classes,
        "spec": _dict, "test_examples": _dicts, "fingerprint": _dict, "plan": _dict,
        "hardware": _dict, "training": _dict, "champion": _dict, "traceback": _text_or_none,
        "trials": _dicts, "worker": _dict, "evaluation": _dict, "thresholds": _dict, "model_card": _dict,
    },
    "code": {"factory": _text, "train_step": _text_or_none, "author": _text, "created": _text},
    "members": {"added": _text, "added_by": _text},
    "predictions": {"example_id": _text_or_none, "mask_ref": _ref_or_none, "uncertainty": _number_or_none},
}  # fmt: skip
#: the field that repeats a record's id
KEY_FIELD = {
    "models": "id",
    "subjects": "id",
    "runs": "id",
    "code": "name",
    "members": "user",
    "examples": "id",
    "labels": "example_id",
}


def _hint(where: Path | str) -> str:
    return f". {repair_hint(where.parent.parent)}" if isinstance(where, Path) else ""


def _check_record(table: str, key: str, record: Any, where: Path | str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise StoreError(f"{where}: record {key!r} is not a {table} record{_hint(where)}")
    for name, valid in SCHEMA.get(table, {}).items():
        if name not in record or not valid(record[name]):
            what = "lacks" if name not in record else f"has a bad {name!r} ({record[name]!r:.40}) - it lacks"
            raise StoreError(f"{where}: {table} record {key!r} {what} a valid {name!r}{_hint(where)}")
    for name, valid in OPTIONAL.get(table, {}).items():
        if name in record and not valid(record[name]):
            raise StoreError(f"{where}: {table} record {key!r} has a bad {name!r} ({record[name]!r:.40}){_hint(where)}")
    field = KEY_FIELD.get(table)
    if table == "readings" and f"{record['example_id']}/{record['reader']}" != key:
        raise StoreError(f"{where}: readings record {key!r} is not <example id>/<reader>{_hint(where)}")
    if field is not None and record[field] != key:
        raise StoreError(f"{where}: {table} record {key!r} says its id is {record[field]!r}{_hint(where)}")
    return record


def decode_shard(raw: bytes, table: str, where: Path | str) -> dict[str, dict[str, Any]]:
    """The ``{id: record}`` of one shard file's bytes, every record checked, or a StoreError saying what is wrong."""
    if not raw:
        raise StoreError(f"{where} is empty{_hint(where)}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise StoreError(f"{where} is not valid JSON ({e}){_hint(where)}") from None
    if not isinstance(data, dict) or list(data) != [table] or not isinstance(data[table], dict):
        raise StoreError(f"{where} does not hold a TinyDB document of {table} records{_hint(where)}")
    records = data[table]
    for key, record in records.items():
        _check_record(table, key, record, where)
    return records


def encode_shard(table: str, records: Records) -> bytes:
    """A TinyDB document with one record per line (so that a reader can parse just the records it needs)."""
    lines = b",\n".join(records.lines())
    return b"{" + orjson.dumps(table) + (b":{\n" + lines + b"\n}}" if lines else b":{}}")


def load_shard(raw: bytes, table: str, where: Path | str) -> Records:
    """The records of a shard file, parsed one by one as they are used (any TinyDB document is read)."""
    head = b"{" + orjson.dumps(table) + b":{\n"
    if raw.startswith(head) and raw.endswith(b"\n}}"):
        body = raw[len(head) - 1 : -2]
        held = _NOT_NEWLINE.search(body) is not None  # not body.strip(): that copies the whole shard again
        return Records(table, where, body) if held else Records(table, where)
    if raw == head[:-1] + b"}}":
        return Records(table, where)
    return Records.of(decode_shard(raw, table, where), table, where)


_INDEXING = threading.Lock()
_NOT_NEWLINE = re.compile(rb"[^\n]")
_KEYS = re.compile(rb'\n"([^"\\\n]*)":')


def _key_of(line: bytes, table: str, where: Path | str) -> str:
    end = line.find(b'":')
    key = line[1:end]
    if line[:1] != b'"' or end < 0 or b"\\" in key or b'"' in key:
        return _parse_line(line, table, where)[0]  # an escaped key: parse the line to read it
    return key.decode()


def _parse_line(line: bytes, table: str, where: Path | str) -> tuple[str, dict[str, Any]]:
    try:
        item = orjson.loads(b"{" + line + b"}")
    except orjson.JSONDecodeError as e:
        raise StoreError(f"{where}: a {table} record is damaged ({e}){_hint(where)}") from None
    if len(item) != 1:
        raise StoreError(f"{where}: a line holds {len(item)} {table} records, not one{_hint(where)}")
    ((key, record),) = item.items()
    return key, _check_record(table, key, record, where)


class Records(MutableMapping):
    """``{id: record}`` of one shard; each record is parsed from its line the first time it is used.

    Until something needs every id (iteration, a change), a lookup finds its line in the
    file's bytes (each line starts with its quoted id; no record holds a raw newline).
    """

    __slots__ = ("_body", "_lines", "_parsed", "_table", "_where")

    def __init__(self, table: str, where: Path | str, body: bytes | None = None) -> None:
        self._table, self._where = table, where
        self._body = body  # "\n" + the record lines joined by ",\n" + "\n", as in the file
        self._lines: dict[str, bytes | None] | None = None if body else {}  # id -> its line (None: changed)
        self._parsed: dict[str, dict[str, Any]] = {}

    @classmethod
    def of(cls, records: dict[str, dict[str, Any]], table: str, where: Path | str = "") -> Records:
        out = cls(table, where)
        out._lines = dict.fromkeys(records)
        out._parsed = dict(records)
        return out

    def copy(self) -> Records:
        """A copy to change (a transaction changes a copy, so that readers keep the committed records)."""
        out = Records(self._table, self._where, self._body)
        out._lines = None if self._lines is None else dict(self._lines)
        out._parsed = dict(self._parsed)
        return out

    def _index(self) -> dict[str, bytes | None]:
        if self._lines is None:
            with _INDEXING:  # one thread builds it; the others then use it
                if self._lines is None:
                    body = self._body
                    lines = body[1:-1].split(b",\n")  # type: ignore[index]
                    keys = _KEYS.findall(body)  # type: ignore[arg-type]
                    try:
                        if len(keys) == len(lines):  # every id plain (no escapes): read in one pass
                            self._lines = dict(zip((k.decode() for k in keys), lines, strict=True))
                        else:
                            self._lines = {_key_of(line, self._table, self._where): line for line in lines}
                    except StoreError:  # not one record per line (edited by hand): read it as a document
                        raw = b"{" + orjson.dumps(self._table) + b":{" + body + b"}}"  # type: ignore[operator]
                        self._parsed = decode_shard(raw, self._table, self._where)
                        self._lines = dict.fromkeys(self._parsed)
                    self._body = None
        return self._lines

    def _line(self, key: str) -> bytes | None:
        body = self._body  # read once: another thread may index it meanwhile (then this is None)
        if body is None:
            return self._lines.get(key)  # type: ignore[union-attr]
        needle = b"\n" + orjson.dumps(key) + b":"
        start = body.find(needle)
        if start < 0:  # not there, or on a line edited by hand: the index knows
            return self._index().get(key)
        end = body.find(b",\n", start + len(needle))
        return body[start + 1 : end if end >= 0 else len(body) - 1]

    def __getitem__(self, key: str) -> dict[str, Any]:
        record = self._parsed.get(key)
        if record is None:
            line = self._line(key)
            record = self._parsed.get(key)  # the index may have read the whole document
            if record is not None:
                return record
            if line is None:
                raise KeyError(key)
            try:
                parsed_key, record = _parse_line(line, self._table, self._where)
            except StoreError:
                if self._body is None:
                    raise
                self._index()  # not one record per line after all (edited by hand): read the whole document
                return self[key]
            if parsed_key != key:
                raise StoreError(
                    f"{self._where}: record {key!r} is damaged (it reads as {parsed_key!r}){_hint(self._where)}"
                )
            self._parsed[key] = record
        return record

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, record: dict[str, Any]) -> None:
        self._index()[key] = None
        self._parsed[key] = record

    def __delitem__(self, key: str) -> None:
        del self._index()[key]
        self._parsed.pop(key, None)

    def __iter__(self):
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._parsed or self._line(key) is not None)

    def unchecked(self) -> dict[str, Any]:
        """Every record in one parse, not checked against the schema: for deriving columns that check the
        few fields they read (``records[key]`` checks a record in full). A shard that does not parse as one
        document (damaged) is read record by record, which says what is wrong.
        """
        index = self._index()
        lines = [line for line in index.values() if line is not None]
        try:
            out = orjson.loads(b"{" + b",".join(lines) + b"}") if lines else {}
        except orjson.JSONDecodeError:
            return {key: self[key] for key in index}
        if not isinstance(out, dict):
            return {key: self[key] for key in index}
        out.update({key: self._parsed[key] for key, line in index.items() if line is None})
        return out

    def lines(self) -> list[bytes]:
        """Each record as a line of the shard file (unchanged records as they were read)."""
        return [
            line if line is not None else orjson.dumps(key) + b":" + orjson.dumps(self._parsed[key])
            for key, line in self._index().items()
        ]


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
