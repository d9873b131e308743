"""The project store: one atomic commit per transaction, however many files it touches.

Layout of a project folder::

    patientml.json                the manifest: schema version, commit counter, the file of
                                  each table shard, and how many bytes of the audit are committed
    tables/labels-07.42.json      shard files: TinyDB documents, written once, never changed
    audit.jsonl                   append-only audit trail
    blobs/ab/ab12....png          content-addressed files
    .tmp/                         temp files of writes in progress
    .lock                         inter-process write lock

A transaction takes the inter-process lock, picks up other processes' commits,
applies its changes in memory, then commits the way git or Delta Lake do: it writes
each changed shard as a *new* file, appends its audit events, and replaces the
manifest (temp file, fsync, rename). The rename is the commit: a kill before it
leaves the previous commit intact (and leftovers the next writer removes), a kill
after it leaves the whole new one. A transaction that raises removes what it wrote.

Readers need no lock: they read the manifest, then the files it names, which never
change. A file a commit replaced is kept for a while (``RETIRED_GRACE_S``), so a
reader between the two never finds it gone. Another process's commits are noticed by
the manifest's commit counter.

The files are TinyDB documents (``{table: {id: record}}``), so TinyDB opens them as
they are (:func:`~.storage.open_tinydb`). Records are kept in plain dicts rather than
TinyDB ``Table`` objects, whose every write rebuilds the whole table (23 ms per write
at 100k records).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from ..errors import SchemaError, StoreError, ValidationError, repair_hint
from .audit import AuditLog, encode_events
from .blobs import BlobStore, is_blob_ref
from .files import atomic_write, fsync_dir, group_shared, make_dirs, remove_abandoned, write_new
from .storage import Records, encode_shard, load_shard

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "VacuumReport", "now", "shard_name"]

#: the newest schema this version reads and writes. Schema 3 is schema 2's layout in a project that uses
#: members or readings: a version that reads only up to 2 would skip the roles and show blind readings, so it
#: refuses such a project (and keeps reading one that uses neither)
SCHEMA_VERSION = 3
LAYOUT_SCHEMA = 2  # shard files written once, named by commit (schema 1 replaced them in place)
TEAM_TABLES = ("members", "readings")
MANIFEST = "patientml.json"
TMP = ".tmp"
AUDIT = "audit.jsonl"
#: derived data kept next to the shard files it comes from (query columns); safe to delete
CACHE = ".cache"
#: scratch folders of zip imports (inside the project: patient data goes nowhere else)
IMPORT_PREFIX = ".import-"
#: how long a shard file a commit replaced stays readable, and how many such files are kept at most
RETIRED_GRACE_S = 30.0
RETIRED_MAX = 256

#: table name -> number of shard files. Big tables are split so that one write
#: rewrites about 1/N of the table (see benchmarks/store.py for where the curve bends).
TABLES: dict[str, int] = {
    "models": 1,
    "subjects": 1,
    "runs": 1,
    "code": 1,
    "members": 1,
    "examples": 32,
    "labels": 32,
    "readings": 32,
    "predictions": 32,
}

_UPGRADED = (
    "This project was upgraded to schema 2 by a newer patientml-widgets; a kernel running an older\n"
    "version cannot write it. Upgrade it: pip install -U patientml-widgets\n"
)
#: names of audit trail files and of shard files (``labels-07.42.json``: shard, commit)
AUDIT_FILE = re.compile(r"^audit(\.\d+)?\.jsonl$")
COMMIT_FILE = re.compile(r"^(?P<shard>[a-z]+(?:-\d\d)?)\.(?P<commit>\d+)\.json$")


def now() -> str:
    """UTC time as an ISO 8601 string with milliseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def schema_for(files: dict[str, str], current: int = LAYOUT_SCHEMA) -> int:
    """The schema a manifest listing ``files`` says: 3 once a team table has a file (it never goes back)."""
    uses_team = any(name.split("-")[0] in TEAM_TABLES for name in files)
    return max(current, SCHEMA_VERSION if uses_team else LAYOUT_SCHEMA)


def shard_name(table: str, shard: int) -> str:
    return table if TABLES[table] == 1 else f"{table}-{shard:02d}"


def shard_of(table: str, record_id: str) -> int:
    """The shard of a record: by the id before any ``/`` (a reading, ``<example id>/<reader>``, lies in the
    shard index of its example and of the example's label).
    """
    shards = TABLES[table]
    return 0 if shards == 1 else zlib.crc32(record_id.split("/", 1)[0].encode()) % shards


def new_manifest(created: str) -> dict[str, Any]:
    return {
        "schema_version": LAYOUT_SCHEMA,
        "created": created,
        "commit": 0,
        "audit_bytes": 0,
        "files": {},
        "retired": [],
    }


def read_manifest(root: Path, raw: bytes | None = None) -> dict[str, Any]:
    """The project's manifest (or ``raw``, its bytes), checked; a StoreError naming the file when it is not one."""
    path = root / MANIFEST
    try:
        manifest = orjson.loads(path.read_bytes() if raw is None else raw)
        version = manifest["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise TypeError
    except FileNotFoundError:
        raise StoreError(f"{path} is missing: the project's manifest is gone. {repair_hint(root)}") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise StoreError(
            f"{path} is damaged: it does not say which schema the project uses. {repair_hint(root)}"
        ) from None
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{root} was written by a newer patientml-widgets (schema {version}; this "
            f"version reads up to {SCHEMA_VERSION}). Upgrade: pip install -U patientml-widgets"
        )
    if version >= LAYOUT_SCHEMA and not _valid_manifest(manifest):
        raise StoreError(f"{path} is damaged: it does not list the project's files. {repair_hint(root)}")
    return manifest


def _valid_manifest(m: dict[str, Any]) -> bool:
    return (
        isinstance(m.get("commit"), int)
        and isinstance(m.get("audit_bytes"), int)
        and AUDIT_FILE.match(m.get("audit", AUDIT)) is not None
        and m["audit_bytes"] >= 0
        and isinstance(m.get("files"), dict)
        and all(isinstance(k, str) and isinstance(v, str) and COMMIT_FILE.match(v) for k, v in m["files"].items())
        and isinstance(m.get("retired"), list)
        and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) for r in m["retired"])
    )


def blob_refs(value: Any, into: set[str]) -> set[str]:
    """Every blob reference inside a record or event (any field, any depth)."""
    if isinstance(value, str):
        if is_blob_ref(value):
            into.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            blob_refs(v, into)
    elif isinstance(value, list):
        for v in value:
            blob_refs(v, into)
    return into


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        write_new(target, source.read_bytes())


@dataclass
class VacuumReport:
    """What :meth:`Project.vacuum` removed."""

    files: int
    bytes: int

    def __str__(self) -> str:
        return f"vacuum: removed {self.files} unreferenced blob files, {self.bytes / 1e6:.1f} MB freed"


class _Shard:
    __slots__ = ("committed", "data", "dirty", "file", "name", "table")

    def __init__(self, table: str, name: str) -> None:
        self.table, self.name = table, name
        self.file: str | None = None  # the file the last seen commit names (None: empty, no file yet)
        self.data: Records | None = None  # loaded on first use
        self.dirty = False
        self.committed: Records | None = None  # while dirty: the records as committed (readers may hold them)


class Store:
    """Records (dicts keyed by string ids) in named tables, plus blobs and an audit log."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True, lock_timeout: float = 60.0) -> None:
        self.root = Path(root)
        # a folder shared with a group: the lock file too, or the others could not take it
        self._lock = FileLock(self.root / ".lock", timeout=lock_timeout, mode=0o664 if group_shared(self.root) else -1)
        self._mutex = threading.RLock()
        self._tables = self.root / "tables"
        self._tmp = self.root / TMP
        if not (self.root / MANIFEST).exists():
            self._create(create)
        self.blobs = BlobStore(self.root / "blobs", self._tmp)
        self.audit = AuditLog(self.root / AUDIT)
        self._shards = {(t, s): _Shard(t, shard_name(t, s)) for t, n in TABLES.items() for s in range(n)}
        self._generation = dict.fromkeys(self._shards, 0)  # bumped whenever a shard's content may change
        self._manifest: dict[str, Any] = {"commit": None}
        self._manifest_raw: bytes | None = None  # the manifest's bytes as last read or written
        manifest = read_manifest(self.root)
        if manifest["schema_version"] < LAYOUT_SCHEMA:
            manifest = self._migrate()
        self._apply(manifest)
        self._depth = 0
        self._writes = 0  # puts, deletes and audit events so far (to tell a clean failure from a half-done one)
        self._doomed = False
        self._pending_audit: list[dict[str, Any]] = []
        self._new_blobs: list[str] = []  # blobs this transaction created (removed if it fails)
        self._written: list[Path] = []  # shard files this commit wrote (removed if it fails)
        self._appended = False  # this commit appended to the audit trail (cut back if it fails)
        self.external_changes = 0  #: bumped each time another process's commit is picked up
        self._moved: set[str] = set()  # tables other processes' commits changed, since take_moved()
        self._tidy_if_free()

    @property
    def commit(self) -> int:
        """The number of the last commit this store has seen."""
        return int(self._manifest["commit"])

    # -- opening ---------------------------------------------------------------------

    def _create(self, create: bool) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a project folder")
        if (self.root / "tables").is_dir() or (self.root / "audit.jsonl").exists():
            raise StoreError(
                f"{self.root / MANIFEST} is missing: the project's manifest is gone. {repair_hint(self.root)}"
            )
        if not create:
            raise StoreError(f"{self.root} is not a patientml project (no {MANIFEST})")
        if self.root.exists() and any(p.name != ".lock" for p in self.root.iterdir()):
            raise StoreError(
                f"{self.root} is not empty and is not a patientml project; "
                "choose an empty or new folder (your files are left as they are)"
            )
        make_dirs(self._tables)
        make_dirs(self._tmp)
        with self._lock:
            if not (self.root / MANIFEST).exists():
                atomic_write(self.root / MANIFEST, orjson.dumps(new_manifest(now())), tmp_dir=self._tmp)

    def _migrate(self) -> dict[str, Any]:
        """Schema 1 (shard files replaced in place, audit appended before the records) to 2."""
        with self._lock:
            old = read_manifest(self.root)
            if old["schema_version"] >= LAYOUT_SCHEMA:
                return old
            make_dirs(self._tmp)
            files = {}
            for (table, shard), _ in self._shards.items():
                name = shard_name(table, shard)
                if (self._tables / f"{name}.json").exists():
                    new = f"{name}.0.json"  # a second name: a kill mid-migration leaves schema 1 whole
                    _link_or_copy(self._tables / f"{name}.json", self._tables / new)
                    files[name] = new
            audit = self.root / "audit.jsonl"
            raw = audit.read_bytes() if audit.exists() else b""
            lines = []  # a kill under schema 1 could leave a torn line; it was never an event
            for line in raw.splitlines():
                with suppress(orjson.JSONDecodeError):
                    if isinstance(orjson.loads(line), dict):
                        lines.append(line + b"\n")
            clean = b"".join(lines)
            if clean != raw:
                atomic_write(audit, clean, tmp_dir=self._tmp)
            for leftover in [
                *self.root.glob(".*.tmp"),
                *self._tables.glob(".*.tmp"),
                *self.root.glob("blobs/*/.*.tmp"),
            ]:
                with suppress(OSError):
                    leftover.unlink()
            manifest = new_manifest(str(old.get("created") or now()))
            manifest.update(files=files, audit_bytes=len(clean))
            atomic_write(self.root / MANIFEST, orjson.dumps(manifest), tmp_dir=self._tmp)
            # a kernel still running schema-1 code writes tables/<shard>.json in place: make each of those
            # names a folder, so that its next write fails loudly instead of being silently ignored
            for table, shard in self._shards:
                legacy = self._tables / f"{shard_name(table, shard)}.json"
                with suppress(FileNotFoundError):
                    legacy.unlink()
                with suppress(FileExistsError):
                    legacy.mkdir()
                    (legacy / "UPGRADED").write_text(_UPGRADED)
            return manifest

    def _apply(self, manifest: dict[str, Any]) -> set[str]:
        """Make ``manifest`` the commit this store reads (shards whose file changed reload on use).

        Returns the tables whose content changed.
        """
        files = manifest["files"]
        moved = set()
        for key, shard in self._shards.items():
            file = files.get(shard.name)
            if file != shard.file or shard.dirty:
                shard.file, shard.data, shard.dirty, shard.committed = file, None, False, None
                self._generation[key] += 1
                moved.add(key[0])
        name = manifest.get("audit", AUDIT)
        if self.audit.path.name != name:  # check --repair wrote the trail anew, as a new file
            self.audit = AuditLog(self.root / name)
        self.audit.committed = manifest["audit_bytes"]
        self._manifest = manifest
        return moved

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all or (on an exception) none of them reach the disk, as one commit.

        Nested calls join the outer transaction; a nested call that fails after changing
        records dooms the outer one (it cannot commit half of itself).
        """
        with self._mutex:
            if self._depth:
                self._depth += 1
                writes, blobs = self._writes, len(self._new_blobs)
                try:
                    yield
                except BaseException:
                    if self._writes != writes:
                        self._doomed = True
                    else:  # it changed no record: only its own new blobs to take back
                        self._drop_blobs(blobs)
                    raise
                finally:
                    self._depth -= 1
                return
            try:
                self._lock.acquire()
            except Timeout:
                raise StoreError(f"{self.root} is locked by another process that does not let go") from None
            try:
                self.refresh()
                self._tidy()
                self._depth = 1
                yield
                if self._doomed:
                    raise StoreError("an operation inside this batch failed half-way; none of the batch was saved")
                self._commit()
            except BaseException:
                self._rollback()
                raise
            finally:
                self._pending_audit, self._new_blobs, self._written = [], [], []
                self._appended = False
                self._depth = 0
                self._doomed = False
                self._lock.release()

    def _require_transaction(self) -> None:
        if not self._depth:
            raise StoreError("writes must happen inside Store.transaction()")

    def _commit(self) -> None:
        dirty = [shard for shard in self._shards.values() if shard.dirty]
        if not dirty and not self._pending_audit:
            self._drop_blobs(0)  # blobs no record refers to
            return
        old = self._manifest
        number = old["commit"] + 1
        try:  # everything is encoded before anything is written
            payloads = []
            for shard in dirty:
                assert shard.data is not None  # a changed shard holds its records
                payloads.append((shard, encode_shard(shard.table, shard.data)))
            audit = encode_events(self._pending_audit)
        except TypeError as e:  # orjson.JSONEncodeError
            raise ValidationError(f"a value cannot be stored (only JSON values can: {e}); nothing was saved") from None
        for folder in {self.blobs.path(ref).parent for ref in self._new_blobs}:  # new blobs' names, durable
            fsync_dir(folder)
        files, retired, stamp = dict(old["files"]), list(old["retired"]), time.time()
        for shard, data in payloads:
            name = f"{shard.name}.{number}.json"
            self._written.append(self._tables / name)
            write_new(self._tables / name, data)
            if shard.file is not None:
                retired.append([shard.file, stamp])
            files[shard.name] = name
        if payloads:
            fsync_dir(self._tables)
        if audit:
            self._appended = True
        audit_bytes = self.audit.append(audit, at=old["audit_bytes"]) if audit else old["audit_bytes"]
        keep = [r for r in retired if stamp - float(r[1]) < RETIRED_GRACE_S][-RETIRED_MAX:]
        expired = [r[0] for r in retired if r not in keep]
        manifest = {**old, "commit": number, "files": files, "audit_bytes": audit_bytes, "retired": keep}
        manifest["schema_version"] = schema_for(files, old["schema_version"])
        raw = orjson.dumps(manifest)
        atomic_write(self.root / MANIFEST, raw, tmp_dir=self._tmp)
        # committed: from here on nothing is taken back
        self._manifest_raw = raw
        self._written, self._new_blobs = [], []
        for shard, _ in payloads:
            shard.file, shard.dirty, shard.committed = files[shard.name], False, None
        self._manifest = manifest
        self.audit.committed = audit_bytes
        for name in expired:
            with suppress(OSError):
                os.unlink(self._tables / name)
            self._drop_cache(name)

    def _drop_cache(self, file: str) -> None:
        """Remove what the cache derived from a shard file that is gone."""
        cache = self.root / CACHE
        if file.startswith("examples"):
            for folder in cache.glob(f"{glob.escape(file)}@*"):
                shutil.rmtree(folder, ignore_errors=True)
        elif file.startswith("labels"):
            for path in cache.glob(f"*/{glob.escape(file)}@*"):
                with suppress(OSError):
                    path.unlink()

    def _rollback(self) -> None:
        """Undo a transaction that did not commit: memory and disk as they were."""
        with suppress(StoreError):
            disk = read_manifest(self.root)
            if disk.get("commit") != self._manifest["commit"]:  # the rename happened after all: it did commit
                self._written, self._new_blobs = [], []
                self._apply(disk)
        for path in self._written:
            with suppress(OSError):
                os.unlink(path)
        if self._appended:  # only what this transaction appended (never on a view that may be stale)
            with suppress(OSError):
                if os.stat(self.audit.path).st_size > self.audit.committed:
                    os.truncate(self.audit.path, self.audit.committed)
        self._drop_blobs(0)
        for key, shard in self._shards.items():
            if shard.dirty:  # back to the records as committed
                shard.data, shard.dirty, shard.committed = shard.committed, False, None
                self._generation[key] += 1

    def _drop_blobs(self, start: int) -> None:
        for ref in self._new_blobs[start:]:
            self.blobs.remove(ref)
        del self._new_blobs[start:]

    def _tidy(self) -> None:
        """Remove what killed writers left (under the lock, so nothing is in progress)."""
        with suppress(FileNotFoundError):
            if os.stat(self.audit.path).st_size > self.audit.committed:  # events of a commit that never happened
                os.truncate(self.audit.path, self.audit.committed)
        referenced = set(self._manifest["files"].values()) | {r[0] for r in self._manifest["retired"]}
        for folder, keep in ((self._tables, referenced), (self._tmp, set())):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                make_dirs(folder)
                continue
            for entry in entries:
                if entry.name not in keep and entry.is_file():
                    with suppress(OSError):
                        os.unlink(entry.path)
        for old in self.root.glob("audit*.jsonl"):  # a trail check --repair replaced
            if old.name != self.audit.path.name and AUDIT_FILE.match(old.name):
                with suppress(OSError):
                    old.unlink()
        remove_abandoned(self.root, IMPORT_PREFIX)

    def _tidy_if_free(self) -> None:
        """Tidy at open when no other process is writing (a read-only folder is left as it is)."""
        lock = FileLock(self.root / ".lock", timeout=0)
        try:
            lock.acquire()
        except (Timeout, OSError):
            return
        try:
            with self._mutex:
                self.refresh()
                self._tidy()
                self._tidy_cache()
        except OSError:
            pass
        finally:
            lock.release()

    def _tidy_cache(self) -> None:
        cache = self.root / CACHE
        named = set(self._manifest["files"].values()) | {r[0] for r in self._manifest["retired"]}
        for folder in cache.iterdir() if cache.is_dir() else ():
            if folder.name.split("@")[0] not in named:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for path in folder.iterdir():  # <labels file>@<stamp>.<column>.npy, -.<column>.npy, x.<column>.npy
                label_part = path.name.split("@")[0] if "@" in path.name else path.name.split(".")[0]
                if label_part not in named | {"-", "x"}:
                    with suppress(OSError):
                        path.unlink()

    def refresh(self) -> bool:
        """Pick up the latest commit; True when another process (or store object) made one."""
        with self._mutex:
            if self._depth:  # we hold the lock: no one else commits
                return False
            try:
                raw = (self.root / MANIFEST).read_bytes()
            except FileNotFoundError:
                raw = None  # read_manifest says what is wrong
            if raw is not None and raw == self._manifest_raw:  # the common case: nothing new, nothing to parse
                return False
            manifest = read_manifest(self.root, raw)
            self._manifest_raw = raw
            if manifest["commit"] == self._manifest["commit"]:
                return False
            self._moved |= self._apply(manifest)
            self.external_changes += 1
            return True

    def take_moved(self) -> frozenset[str]:
        """The tables other processes' commits changed since the last call (then forgets them)."""
        with self._mutex:
            moved, self._moved = frozenset(self._moved), set()
            return moved

    # -- records ---------------------------------------------------------------------

    def _records(self, key: tuple[str, int]) -> Records:
        shard = self._shards[key]
        if shard.data is None:
            shard.data = self._load(shard)
        return shard.data

    def _load(self, shard: _Shard) -> Records:
        if shard.file is None:
            return Records(shard.table, shard.name)
        path = self._tables / shard.file
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if self.refresh() and shard.file != path.name:  # a newer commit replaced it: read that one
                return self._load(shard)
            raise StoreError(
                f"{path} is missing: commit {self.commit} of the project refers to it. {repair_hint(self.root)}"
            ) from None
        return load_shard(raw, shard.table, path)

    def shards(self, table: str) -> int:
        """How many shard files a table has (examples and labels: the same, shard by example id)."""
        return TABLES[table]

    def shard(self, table: str, shard: int) -> tuple[int, Records]:
        """``(generation, {id: record})`` of one shard; the generation changes whenever its content may have."""
        with self._mutex:
            records = self._records((table, shard))
            return self._generation[table, shard], records

    def shard_file(self, table: str, shard: int) -> str | None:
        """The file whose content the shard holds now: None while it is empty or changed in a transaction."""
        shard_ = self._shards[table, shard]
        return None if shard_.dirty else shard_.file

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        """The record, or None. The dict is the store's own: do not change it."""
        if not isinstance(record_id, str):
            return None
        with self._mutex:
            return self._records((table, shard_of(table, record_id))).get(record_id)

    def mapping(self, table: str) -> dict[str, dict[str, Any]]:
        """``{id: record}`` for a whole table (the store's own record dicts: do not change them)."""
        with self._mutex:
            out: dict[str, dict[str, Any]] = {}
            for shard in range(TABLES[table]):
                out.update(self._records((table, shard)))
            return out

    def records(self, table: str) -> list[dict[str, Any]]:
        """Every record of a table (the store's own dicts: do not change them)."""
        return list(self.mapping(table).values())

    def put(self, table: str, record_id: str, record: dict[str, Any]) -> None:
        """Insert or replace a record (committed when the transaction ends)."""
        self._require_transaction()
        key = (table, shard_of(table, record_id))
        self._writable(key)[record_id] = record
        self._touch(key)

    def delete(self, table: str, record_id: str) -> None:
        self._require_transaction()
        key = (table, shard_of(table, record_id))
        if record_id in self._records(key):
            del self._writable(key)[record_id]
            self._touch(key)

    def _writable(self, key: tuple[str, int]) -> Records:
        """The shard's records to change: a copy at the first change, so what readers hold stays as committed."""
        shard = self._shards[key]
        records = self._records(key)
        if not shard.dirty:
            shard.committed, shard.data = records, records.copy()
            shard.dirty = True
        return shard.data  # type: ignore[return-value]

    def _touch(self, key: tuple[str, int]) -> None:
        self._writes += 1
        self._generation[key] += 1

    def log(self, event: dict[str, Any]) -> None:
        """Queue an audit event; it is written as part of the transaction's commit."""
        self._require_transaction()
        self._pending_audit.append(event)
        self._writes += 1

    def put_blob(self, data: bytes, ext: str) -> str:
        """Store ``data`` as a blob (inside a transaction) and return its reference."""
        self._require_transaction()
        ref, created = self.blobs.write(data, ext)
        if created:
            self._new_blobs.append(ref)
        return ref

    # -- upkeep ----------------------------------------------------------------------

    def vacuum(self) -> VacuumReport:
        """Remove the blobs no record and no audit event refers to (every label version stays restorable)."""
        if self._depth:
            raise StoreError("vacuum() cannot run inside a batch (its changes are not committed yet)")
        with self.transaction():  # the lock: no blob is being written meanwhile
            keep: set[str] = set()
            for key in self._shards:
                blob_refs(list(self._records(key).values()), keep)
            blob_refs(self.audit.events(), keep)
            files = freed = 0
            for ref, path in list(self.blobs.stored()):
                if ref not in keep:
                    with suppress(OSError):
                        size = path.stat().st_size
                        path.unlink()
                        files, freed = files + 1, freed + size
            for leftover in self.blobs.root.glob("*/.*.tmp"):  # from versions that wrote temp files there
                with suppress(OSError):
                    leftover.unlink()
        return VacuumReport(files, freed)
