"""Checks of what a user passes in: the right kind of value, or a ValidationError saying what to pass.

Every public call funnels its plain arguments (choices, counts, flags, mappings, lists) through
these, so a wrong type is a :class:`~patientml_widgets.errors.ValidationError` naming the argument,
never a TypeError or ValueError from deep inside (or a numpy "truth value is ambiguous").
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ValidationError

__all__ = ["choice", "flag", "integer", "mapping", "number", "path", "sequence"]


def choice(value: Any, choices: Iterable[str], what: str) -> str:
    """One of ``choices`` (text compared exactly)."""
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise ValidationError(f"{what} must be one of {', '.join(map(repr, options))}, not {_short(value)}")
    return value


def flag(value: Any, what: str) -> bool:
    """True or False (numpy booleans and the integers 0 and 1 too)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise ValidationError(f"{what} must be True or False, not {_short(value)}")


def integer(value: Any, what: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number (a float with no fraction too) within the bounds."""
    if isinstance(value, bool | np.bool_):
        raise ValidationError(f"{what} must be a whole number, not {_short(value)}")
    whole = isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer()
    if isinstance(value, numbers.Integral) or whole:
        result = int(value)
    else:
        raise ValidationError(f"{what} must be a whole number, not {_short(value)}")
    if minimum is not None and result < minimum:
        raise ValidationError(f"{what} must be at least {minimum}, not {result}")
    if maximum is not None and result > maximum:
        raise ValidationError(f"{what} must be at most {maximum}, not {result}")
    return result


def number(value: Any, what: str, *, minimum: float | None = None) -> float:
    """A finite real number, at least ``minimum``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValidationError(f"{what} must be a finite number, not {_short(value)}")
    if minimum is not None and float(value) < minimum:
        raise ValidationError(f"{what} must be at least {minimum}, not {value}")
    return float(value)


def mapping(value: Any, what: str) -> dict[str, Any]:
    """A dict with text keys (a copy)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValidationError(f"{what} must be a dict with string keys, not {_short(value)}")
    return dict(value)


def sequence(value: Any, what: str) -> list[Any]:
    """A list of items (a list, tuple, array or other iterable; not text, bytes or a dict)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValidationError(f"{what} must be a list, not {_short(value)}")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        raise ValidationError(f"{what} must be a list, not a single value")
    return list(value)


def path(value: Any, what: str) -> Path:
    """A file system path given as text or a path object (not bytes, not holding a NUL)."""
    if not isinstance(value, str | os.PathLike) or isinstance(value, bytes):
        raise ValidationError(f"{what} is a path (text or pathlib.Path), not {_short(value)}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{what} is a path (text or pathlib.Path), not {_short(value)}")
    if "\x00" in text:
        raise ValidationError(f"{what} {text!r} holds a NUL character; no file can have that name")
    return Path(text)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, np.ndarray) else f"an array of shape {value.shape}"
    return text if len(text) <= 80 else text[:77] + "..."
