"""Persistence: TinyDB documents, content-addressed blobs, audit trail, one atomic commit per call."""

from .blobs import BlobStore, blob_ref
from .store import SCHEMA_VERSION, Store, VacuumReport, now

__all__ = ["SCHEMA_VERSION", "BlobStore", "Store", "VacuumReport", "blob_ref", "now"]
