"""Content-addressed blob files: images, masks, thumbnails, weights.

A blob's reference is ``<sha256>.<ext>``; the same bytes are stored once. Blobs are
written (durably) before any record that refers to them, so a record never points
at a missing file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import NotFoundError, StoreError
from .files import atomic_write

__all__ = ["BlobStore"]

_REF = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


class BlobStore:
    """Blob files under ``root``, fanned out by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, ref: str) -> Path:
        if not isinstance(ref, str) or not _REF.match(ref):
            raise StoreError(f"not a blob reference: {ref!r}")
        return self.root / ref[:2] / ref

    def put(self, data: bytes, ext: str) -> str:
        """Store ``data`` durably and return its reference."""
        ref = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path = self.path(ref)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        return ref

    def get(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {ref} is missing from {self.root}") from None

    def exists(self, ref: str) -> bool:
        return self.path(ref).exists()
