"""Persistence: TinyDB documents, content-addressed blobs, audit trail, locking."""

from .blobs import BlobStore
from .store import SCHEMA_VERSION, Store, now

__all__ = ["SCHEMA_VERSION", "BlobStore", "Store", "now"]
