"""The append-only audit trail: one JSON line per change, fsynced.

Within a transaction the audit lines are appended *before* the records are
committed. A kill between the two leaves an event whose version the records never
reached; :meth:`Project.history` drops such events.

Reading is incremental: the file only grows, so each read parses just the bytes
appended since the last one, and events are indexed by example.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["AuditLog"]


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mutex = threading.Lock()
        self._offset = 0  # bytes parsed so far (always just after a newline)
        self._events: list[dict[str, Any]] = []
        self._by_example: dict[str, list[dict[str, Any]]] = {}

    def append(self, events: Iterable[dict[str, Any]]) -> None:
        lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
        if not lines:
            return
        with open(self.path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # a torn last line (a kill mid-append) must not swallow ours
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    lines = b"\n" + lines
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def events(self) -> list[dict[str, Any]]:
        """Every complete event, oldest first (the log's own dicts: do not change them)."""
        with self._mutex:
            self._catch_up()
            return list(self._events)

    def for_example(self, example_id: str) -> list[dict[str, Any]]:
        """The events of one example, oldest first (the log's own dicts: do not change them)."""
        with self._mutex:
            self._catch_up()
            return list(self._by_example.get(example_id, ()))

    def _catch_up(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a torn last line waits (it stays torn, and is skipped later)
        for line in chunk[:end].splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._events.append(event)
                if isinstance(event.get("example_id"), str):
                    self._by_example.setdefault(event["example_id"], []).append(event)
        self._offset += end
