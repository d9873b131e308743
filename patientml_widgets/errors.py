"""The errors patientml-widgets raises. Each says what went wrong and what to do."""

from __future__ import annotations

__all__ = [
    "ImageError",
    "NotFoundError",
    "PatientMLError",
    "SchemaError",
    "StoreError",
    "ValidationError",
]


class PatientMLError(Exception):
    """Base class of every error this package raises on purpose."""


class ValidationError(PatientMLError, ValueError):
    """The input was refused; nothing was changed."""


class NotFoundError(PatientMLError, KeyError):
    """An id or name that the project does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ImageError(ValidationError):
    """An image could not be read, or is refused (corrupt, empty, too large)."""


class StoreError(PatientMLError):
    """The project folder cannot be read or written."""


class SchemaError(StoreError):
    """The project was written by a schema this version cannot read."""
