"""The append-only audit trail: one JSON line per change.

A commit appends its events, then replaces the manifest, which records how many
bytes of the trail are committed. Readers read only that many bytes, so an event
whose commit never happened (a kill between the two) is never seen, and the next
writer cuts it off. Every committed line must parse: one that does not is damage,
reported as a :class:`StoreError`, never skipped.

Reading is incremental: each read parses just the committed bytes not yet parsed,
and events are indexed by example.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson

from ..errors import StoreError, repair_hint
from .files import open_append

__all__ = ["AuditLog", "encode_events"]


def encode_events(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.committed = 0  #: bytes of the file that committed transactions wrote (set by the store)
        self._mutex = threading.Lock()
        self._offset = 0  # bytes parsed so far (always just after a newline)
        self._line = 0  # lines parsed so far
        self._events: list[dict[str, Any]] = []
        self._by_example: dict[str, list[dict[str, Any]]] = {}

    def append(self, data: bytes, at: int) -> int:
        """Write ``data`` at byte ``at`` (cutting off anything after it: uncommitted); the new length."""
        with open_append(self.path) as f:
            if f.seek(0, os.SEEK_END) != at:
                f.truncate(at)
            f.seek(at)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return at + len(data)

    def events(self) -> list[dict[str, Any]]:
        """Every committed event, oldest first (the log's own dicts: do not change them)."""
        with self._mutex:
            self._catch_up()
            return list(self._events)

    def for_example(self, example_id: str) -> list[dict[str, Any]]:
        """The committed events of one example, oldest first (the log's own dicts: do not change them)."""
        with self._mutex:
            self._catch_up()
            return list(self._by_example.get(example_id, ()))

    def _catch_up(self) -> None:
        if self._offset > self.committed:  # the trail was rebuilt (check --repair): read it again
            self._offset, self._line, self._events, self._by_example = 0, 0, [], {}
        if self._offset == self.committed:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(self.committed - self._offset)
        except FileNotFoundError:
            chunk = b""
        if len(chunk) != self.committed - self._offset or not chunk.endswith(b"\n"):
            raise StoreError(
                f"{self.path} is shorter than the project's commits say ({self._offset + len(chunk)} of "
                f"{self.committed} bytes): the audit trail was cut. {repair_hint(self.path.parent)}"
            )
        events = []
        for number, line in enumerate(chunk.splitlines(), start=self._line + 1):
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                hint = repair_hint(self.path.parent)
                raise StoreError(f"line {number} of {self.path} is damaged (not a JSON event). {hint}")
            events.append(event)
        for event in events:
            self._events.append(event)
            if isinstance(event.get("example_id"), str):
                self._by_example.setdefault(event["example_id"], []).append(event)
        self._line += len(events)
        self._offset = self.committed
