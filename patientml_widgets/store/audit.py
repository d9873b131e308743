"""The append-only audit trail: one JSON line per change, fsynced.

Within a transaction the audit lines are appended *before* the records are
committed. A kill between the two leaves an event whose version the records never
reached; readers drop such events (see :func:`committed_events`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["AuditLog"]


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

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

    def events(self) -> Iterator[dict[str, Any]]:
        """Every complete event, oldest first; torn or damaged lines are skipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for line in raw.splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                yield event
