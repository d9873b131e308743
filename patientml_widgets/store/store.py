"""The project store: TinyDB documents split into shard files, blobs, audit trail.

Layout of a project folder::

    patientml.json            schema version and creation time (written once)
    tables/models.json        one TinyDB document per table, or per shard of a big table
    tables/labels-07.json     (examples and labels are split in shards so a write stays small)
    audit.jsonl               append-only audit trail
    blobs/ab/ab12....png      content-addressed files
    .lock                     inter-process write lock

Every change happens in :meth:`Store.transaction`: it takes the inter-process lock,
reloads whatever another process changed, applies the change in memory and commits
each touched file atomically. Readers never need the lock: files are only ever
replaced whole.

The files are TinyDB documents (``{table: {id: record}}``) read and written through
:class:`~.storage.AtomicJSONStorage`, so TinyDB opens them as they are. Records are
written straight into the storage's document rather than through TinyDB's ``Table``,
whose every write rebuilds the whole table (O(n): 23 ms per write at 100k records).
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from ..errors import SchemaError, StoreError
from .audit import AuditLog
from .blobs import BlobStore
from .files import atomic_write
from .storage import AtomicJSONStorage, open_tinydb

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "now"]

SCHEMA_VERSION = 1
META_FILE = "patientml.json"

#: table name -> number of shard files. Big tables are split so that one write
#: rewrites about 1/N of the table (see benchmarks/store.py for where the curve bends).
TABLES: dict[str, int] = {
    "models": 1,
    "subjects": 1,
    "runs": 1,
    "code": 1,
    "examples": 32,
    "labels": 32,
    "predictions": 32,
}

#: schema version -> function that upgrades a store folder from it to the next one.
MIGRATIONS: dict[int, Any] = {}


def now() -> str:
    """UTC time as an ISO 8601 string with milliseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """Records (dicts keyed by string ids) in named tables, plus blobs and an audit log."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True, lock_timeout: float = 60.0) -> None:
        self.root = Path(root)
        self._lock = FileLock(self.root / ".lock", timeout=lock_timeout)
        self._mutex = threading.RLock()
        meta_path = self.root / META_FILE
        if not meta_path.exists():
            self._create(meta_path, create)
        self.meta = self._read_meta(meta_path)
        self.blobs = BlobStore(self.root / "blobs")
        self.audit = AuditLog(self.root / "audit.jsonl")
        self._dbs = {}
        for table, shards in TABLES.items():
            for shard in range(shards):
                name = table if shards == 1 else f"{table}-{shard:02d}"
                self._dbs[table, shard] = open_tinydb(self.root / "tables" / f"{name}.json")
        self._generation = dict.fromkeys(self._dbs, 0)  # bumped whenever a shard's content may change
        self._depth = 0
        self._writes = 0  # puts, deletes and audit events so far (to tell a clean failure from a half-done one)
        self._doomed = False
        self._pending_audit: list[dict[str, Any]] = []
        self.external_changes = 0  #: bumped each time another process's commit is picked up

    # -- opening ---------------------------------------------------------------------

    def _create(self, meta_path: Path, create: bool) -> None:
        if not create:
            raise StoreError(f"{self.root} is not a patientml project (no {META_FILE})")
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a project folder")
        if self.root.exists() and any(p.name != ".lock" for p in self.root.iterdir()):
            raise StoreError(
                f"{self.root} is not empty and is not a patientml project; "
                "choose an empty or new folder (your files are left as they are)"
            )
        (self.root / "tables").mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not meta_path.exists():
                meta = {"schema_version": SCHEMA_VERSION, "created": now()}
                atomic_write(meta_path, orjson.dumps(meta, option=orjson.OPT_INDENT_2))

    def _read_meta(self, meta_path: Path) -> dict[str, Any]:
        try:
            meta = orjson.loads(meta_path.read_bytes())
            version = int(meta["schema_version"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise StoreError(f"{meta_path} is damaged: it does not say which schema the project uses") from None
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.root} was written by a newer patientml-widgets (schema {version}; this "
                f"version reads up to {SCHEMA_VERSION}). Upgrade: pip install -U patientml-widgets"
            )
        while version < SCHEMA_VERSION:  # pragma: no cover - no older schema exists yet
            if version not in MIGRATIONS:
                raise SchemaError(f"{self.root} uses schema {version}, which cannot be migrated")
            with self._lock:
                MIGRATIONS[version](self.root)
                version += 1
                meta["schema_version"] = version
                atomic_write(meta_path, orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return meta

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all or (on an exception) none of them reach the disk.

        Nested calls join the outer transaction. Audit events are appended before the
        records are committed; each touched file is replaced atomically.
        """
        with self._mutex:
            if self._depth:
                self._depth += 1
                writes = self._writes
                try:
                    yield
                except BaseException:
                    if self._writes != writes:  # it changed things before failing: the outer
                        self._doomed = True  # transaction cannot commit a half-done change
                    raise
                finally:
                    self._depth -= 1
                return
            try:
                self._lock.acquire()
            except Timeout:
                raise StoreError(f"{self.root} is locked by another process that does not let go") from None
            self._depth = 1
            try:
                self.refresh()
                yield
                if self._doomed:
                    raise StoreError("an operation inside this batch failed half-way; none of the batch was saved")
                self.audit.append(self._pending_audit)
                for db in self._dbs.values():
                    db.storage.flush()
            except BaseException:
                for key, db in self._dbs.items():
                    if db.storage.dirty:
                        db.storage.invalidate()
                        self._generation[key] += 1
                raise
            finally:
                self._pending_audit = []
                self._depth = 0
                self._doomed = False
                self._lock.release()

    def _require_transaction(self) -> None:
        if not self._depth:
            raise StoreError("writes must happen inside Store.transaction()")

    def refresh(self) -> bool:
        """Reload the files another process has replaced; True when there were any."""
        with self._mutex:
            changed = False
            for key, db in self._dbs.items():
                if db.storage.changed_on_disk():
                    db.storage.invalidate()
                    self._generation[key] += 1
                    changed = True
            if changed:
                self.external_changes += 1
            return changed

    # -- records ---------------------------------------------------------------------

    def _shard(self, table: str, record_id: str) -> tuple[str, int]:
        shards = TABLES[table]
        return table, 0 if shards == 1 else zlib.crc32(record_id.encode()) % shards

    def _db(self, table: str, record_id: str):
        return self._dbs[self._shard(table, record_id)]

    def shards(self, table: str) -> int:
        """How many shard files a table has (examples and labels: the same, shard by example id)."""
        return TABLES[table]

    def shard(self, table: str, shard: int) -> tuple[int, dict[str, dict[str, Any]]]:
        """``(generation, {id: record})`` of one shard; the generation changes whenever its content may have."""
        with self._mutex:
            return self._generation[table, shard], self._dbs[table, shard].storage.read().get(table, {})

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        """The record, or None. The dict is the store's own: do not change it."""
        with self._mutex:
            return self._db(table, record_id).storage.read().get(table, {}).get(record_id)

    def mapping(self, table: str) -> dict[str, dict[str, Any]]:
        """``{id: record}`` for a whole table (the store's own record dicts: do not change them)."""
        with self._mutex:
            out: dict[str, dict[str, Any]] = {}
            for shard in range(TABLES[table]):
                out.update(self._dbs[table, shard].storage.read().get(table, {}))
            return out

    def records(self, table: str) -> list[dict[str, Any]]:
        """Every record of a table (the store's own dicts: do not change them)."""
        return list(self.mapping(table).values())

    def put(self, table: str, record_id: str, record: dict[str, Any]) -> None:
        """Insert or replace a record (committed when the transaction ends)."""
        storage = self._storage_for(table, record_id)
        storage.read().setdefault(table, {})[record_id] = record
        storage.dirty = True
        self._writes += 1
        self._generation[self._shard(table, record_id)] += 1

    def delete(self, table: str, record_id: str) -> None:
        storage = self._storage_for(table, record_id)
        if storage.read().get(table, {}).pop(record_id, None) is not None:
            storage.dirty = True
            self._writes += 1
            self._generation[self._shard(table, record_id)] += 1

    def _storage_for(self, table: str, record_id: str) -> AtomicJSONStorage:
        self._require_transaction()
        return self._db(table, record_id).storage

    def log(self, event: dict[str, Any]) -> None:
        """Queue an audit event; it is written when the transaction commits."""
        self._require_transaction()
        self._pending_audit.append(event)
        self._writes += 1
