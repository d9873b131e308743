"""The errors patientml-widgets raises. Each says what went wrong and what to do."""

from __future__ import annotations

__all__ = [
    "ImageError",
    "NotFoundError",
    "PatientMLError",
    "PermissionDenied",
    "SchemaError",
    "StoreError",
    "UntrustedCodeError",
    "ValidationError",
    "repair_hint",
]


class PatientMLError(Exception):
    """Base class of every error this package raises on purpose."""


class ValidationError(PatientMLError, ValueError):
    """The input was refused; nothing was changed."""


class NotFoundError(PatientMLError, KeyError):
    """An id or name that the project does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PermissionDenied(PatientMLError, PermissionError):
    """The current user's role in the project does not allow the call (or they are not a member); nothing was
    changed.
    """


class ImageError(ValidationError):
    """An image could not be read, or is refused (corrupt, empty, too large)."""


class StoreError(PatientMLError):
    """The project folder cannot be read or written."""


class SchemaError(StoreError):
    """The project was written by a schema this version cannot read."""


class UntrustedCodeError(PatientMLError):
    """Model code stored in a project that the current user has not trusted, so it does not run."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name  #: the model code's name (``Project.trust_code(name)`` trusts it)


def repair_hint(root: object) -> str:
    """What to do about a damaged project folder."""
    return (
        f"Run `python -m patientml_widgets check {root}` to see every problem, and add --repair to "
        "rebuild what the audit trail proves (it says what it could not)"
    )
