r"""The one way this package writes and reads CSV files (``index.csv`` of exports, index CSVs of imports).

Writing: every cell is text (``None`` is empty). A cell a spreadsheet would run as a formula -
one that starts with ``= + - @``, a tab or a carriage return (OWASP, "CSV Injection") - gets
the guard character ``'`` in front; so does a cell that starts with the guard itself, which
keeps the guard unambiguous. A cell is put in double quotes when it holds a comma, a double
quote, a line break (``\n`` or ``\r``), the guard, or space at either end (tools that trim
unquoted cells then leave it alone). Rows end in ``\n``; the file is UTF-8.

Reading: UTF-8 (with or without a byte order mark), Python's ``csv`` reader (any line ending,
quoted line breaks), and the guard removed again: a cell that starts with ``'`` followed by a
guarded character loses that one ``'``. So ``read(write(text)) == text`` for any text.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ValidationError

__all__ = ["GUARD", "guard_cell", "read_csv", "unguard_cell", "write_csv"]

GUARD = "'"
#: first characters a spreadsheet evaluates (and the guard itself, so that guarding is reversible)
GUARDED_STARTS = frozenset("=+-@\t\r" + GUARD)
_QUOTE_IF = frozenset(',"\n\r' + GUARD)


def guard_cell(value: Any) -> str:
    """The cell text of ``value``, guarded if a spreadsheet would evaluate it."""
    text = "" if value is None else str(value)
    return GUARD + text if text[:1] in GUARDED_STARTS else text


def unguard_cell(text: str) -> str:
    """Undo :func:`guard_cell` (a cell written by hand that starts with ``'=`` reads as ``=``, as intended)."""
    return text[1:] if text[:1] == GUARD and text[1:2] in GUARDED_STARTS else text


def _quoted(text: str) -> str:
    if text != text.strip() or any(c in _QUOTE_IF for c in text):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    """A CSV file of ``rows`` (missing keys are empty cells), every cell guarded and quoted as needed."""
    lines = [_line([guard_cell(c) for c in columns])]
    lines += [_line([guard_cell(row.get(c, "")) for c in columns]) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _line(cells: list[str]) -> str:
    line = ",".join(_quoted(c) for c in cells)
    return line or '""'  # one empty cell: a blank line would read as no row at all


def read_csv(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV file, cells unguarded and exactly as written (nothing stripped).

    ValidationError (saying what to do) for a file that is not UTF-8 text in CSV form.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValidationError(f"cannot read {path} ({e.strerror or e}); check that it is a readable file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        hint = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ValidationError(
            f"{path.name} is not UTF-8 text{hint} (byte {e.start}); save it as 'CSV UTF-8' and import again"
        ) from None
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:  # e.g. a cell over the csv module's 128 KiB
        raise ValidationError(f"{path.name} is not a readable CSV file ({e}); check its quotes and cells") from None
    if not table:
        raise ValidationError(f"{path.name} is empty; a CSV index needs a header row (image, subject, ...)")
    header, *rows = table
    return [unguard_cell(c) for c in header], [[unguard_cell(c) for c in row] for row in rows]
