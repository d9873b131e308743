"""Fast example queries: per-shard columns of the examples table, rebuilt only where a shard changed.

An example and its label live in the same shard index (both are sharded by example id), so
a label submit re-derives one shard's columns (about 3k rows at 100k examples), and paging,
sorting, filtering and counting run on numpy arrays. Columns are built on first use: a first
page sorted by creation time never pays for the other sort keys.

Sorts run on integer keys whose order is the text's: a time as :func:`~.store.now` writes it
(``2026-12-01T12:43:59.455+00:00``) packed into an int64, an example id (``ex_`` and 12 hex
digits) as its number; these are derived per shard and cached with the columns. Any other text
(or a time or id in another form) is ranked among all rows when first sorted on, and the ranks
kept until an example shard changes (a label submit does not re-rank them). A page needs only
the first rows of an order: a partial sort finds them, the same rows a full stable sort gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .reading import QUEUE_STATES, queue_state
from .store import Store
from .store.files import make_dirs, share_like_folder
from .store.store import CACHE

__all__ = ["REVIEW_CODES", "STATUS_CODES", "ExampleIndex", "source_order"]

STATUS_CODES = {"unlabeled": 0, "draft": 1, "labeled": 2}
#: a label's review: none (not reviewed), a reviewer accepted it, or returned it to its author
REVIEW_CODES = {"none": 0, "accepted": 1, "returned": 2}


_STATUS_OF_LABEL = {"deleted": 0, "draft": 1, "submitted": 2}  # -> STATUS_CODES values


def source_order(record: dict[str, Any]) -> str:
    """The sort key of an example's origin: by subject, then DICOM series in slice order, else file path."""
    source = record.get("source") or {}
    subject = record.get("subject_id") or ""
    if source.get("series_uid"):
        position = int(source.get("series_index") or 0)
        return f"{subject}\x1f{source.get('study_uid', '')}\x1f{source['series_uid']}\x1f{position:09d}"
    return f"{subject}\x1f{source.get('file', '')}"


#: columns that come from the example records alone, and those that need the labels too
_EXAMPLE_COLUMNS = ("model_id", "split", "subject_id", "created", "updated", "source")
_LABEL_COLUMNS = ("status", "label_updated", "review", "waiting")
#: text columns with a per-shard integer sort key (the key column's name)
_KEYED = {"created": "created_key", "updated": "updated_key", "label_updated": "label_updated_key", "id": "id_key"}
_KEY_OF = {key: name for name, key in _KEYED.items()}
#: the columns (text or keys) derived from the labels: they change when a label does
_FROM_LABELS = frozenset({*_LABEL_COLUMNS, _KEYED["label_updated"]})
#: one reader's queue states are the column ``queue-<digest of the name>`` (a file name whatever the name holds)
_QUEUE = "queue-"
_READERS: dict[str, tuple[str, str]] = {}  # column name -> the model and the reader it is of


def queue_column(model_id: str, reader: str) -> str:
    """The column of ``reader``'s queue in one model (a model's readings only: it says the model too)."""
    name = _QUEUE + hashlib.sha256(f"{model_id}\x1f{reader}".encode()).hexdigest()[:24]
    _READERS[name] = (model_id, reader)
    return name


def _from_labels(name: str) -> bool:
    """Whether a column derives from the labels and readings (it changes when a label or a reading does)."""
    return name in _FROM_LABELS or name.startswith(_QUEUE)


_VERSIONS = itertools.count()


class ColumnCache:
    """Columns derived from shard files, kept in ``.cache/`` next to them.

    Shard files never change once written, so the columns of a file never go stale: a
    project opened again loads them instead of parsing every record. Entries are named
    by the file and its size and modification time (``labels-07.42.json@1234-<ns>``), so
    a file damaged after it was written is read again (and its damage reported). Best
    effort: a read-only folder or a damaged cache file only means the columns are computed.
    """

    def __init__(self, folder: Path, tables: Path) -> None:
        self.folder, self._tables = folder, tables

    def _stamped(self, file: str) -> str:
        st = os.stat(self._tables / file)
        return f"{file}@{st.st_size}-{st.st_mtime_ns}"

    def _path(self, name: str, ex_file: str, lab_files: tuple[str | None, ...]) -> Path:
        label_part = "+".join(self._stamped(f) if f else "-" for f in lab_files) if _from_labels(name) else "x"
        return self.folder / self._stamped(ex_file) / f"{label_part}.{name}.npy"

    def load(self, name: str, ex_file: str, lab_file: tuple[str | None, ...], rows: int | None) -> np.ndarray | None:
        try:
            column = np.load(self._path(name, ex_file, lab_file), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if column.ndim != 1 or column.dtype.kind not in "iuU" or (rows is not None and len(column) != rows):
            return None
        return column

    def save(self, name: str, ex_file: str, lab_file: tuple[str | None, ...], column: np.ndarray) -> None:
        try:
            path = self._path(name, ex_file, lab_file)
        except OSError:
            return
        buf = io.BytesIO()
        np.save(buf, column, allow_pickle=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(OSError):  # not fsynced: derived data, and a torn file is refused by load
            make_dirs(path.parent)
            with open(tmp, "wb") as f:
                share_like_folder(tmp, f.fileno())
                f.write(buf.getvalue())
            os.replace(tmp, path)


class _Records:
    """One shard's records, taken from the store only when a column has to be computed from them.

    A shard file never changes once written, so its name tells its records apart (``token``);
    while the shard is empty or changed in a transaction, its records are in memory and their
    generation does. Columns of a file in the cache need no records at all (a first page does
    not read the label shards).
    """

    def __init__(self, store: Store, table: str, shard: int) -> None:
        self._store, self._table, self._shard = store, table, shard
        self.file = store.shard_file(table, shard)
        self._records = None
        self.exact = True  # whether the records are the file's (False: a commit came before they were taken)
        if self.file is None:
            generation, self._records = store.shard(table, shard)
            self.token: Any = ("generation", generation)
        else:
            self.token = self.file

    def get(self):
        if self._records is None:
            store, table, shard = self._store, self._table, self._shard
            generation, records = store.shard(table, shard)
            self.exact = store.shard_file(table, shard) == self.file and store.shard(table, shard)[0] == generation
            self._records = records
        return self._records


class _LabelSide:
    """One shard's labels and readings: what the label columns derive from (a change to either renews them)."""

    def __init__(self, labels: _Records, readings: _Records) -> None:
        self.labels, self.readings = labels, readings
        self.token = (labels.token, readings.token)
        self.file = (labels.file, readings.file)

    @property
    def exact(self) -> bool:
        return self.labels.exact and self.readings.exact

    def from_files(self) -> bool:
        """Whether both come from shard files (or are empty): their columns may be cached by the files' names."""
        return all(part.file is not None or not len(part.get()) for part in (self.labels, self.readings))


class _Block:
    """One shard's examples with their labels, and the columns derived from them so far.

    ``version`` tells blocks apart (merged columns are kept per version), ``examples_version``
    blocks with the same example columns (kept when only a label changed).
    """

    def __init__(self, examples: _Records, labels: _LabelSide, cache: ColumnCache, kept: _Block | None = None) -> None:
        self.key = (examples.token, labels.token)
        self._examples, self._labels = examples, labels
        self.files = (examples.file, labels.file)
        self._cache = cache
        self.version = next(_VERSIONS)
        self.examples_version: int = self.version if kept is None else kept.examples_version
        self.columns: dict[str, np.ndarray | None] = {}
        if kept is not None:
            self.columns = {n: c for n, c in kept.columns.items() if not _from_labels(n)}

    @property
    def exact(self) -> tuple[bool, bool]:
        """Whether the example and the label records it read were those its files name (no commit came between)."""
        return self._examples.exact, self._labels.exact

    def _cacheable(self, name: str) -> bool:
        """Whether the column derives from files (not from records changed in a transaction, or newer ones)."""
        examples, labels = self._examples, self._labels
        if examples.file is None or not examples.exact:
            return False
        if _from_labels(name):
            return labels.exact and labels.from_files()
        return True

    def column(self, name: str) -> np.ndarray | None:
        """A column of the shard (None only for a sort key whose text has no integer form)."""
        if name not in self.columns:
            column = None
            ex_file, lab_file = self.files
            if self._cacheable(name) and ex_file is not None:
                rows = None if name == "id" else len(self.ids())
                column = self._cache.load(name, ex_file, lab_file, rows)
                if column is not None and name in _KEY_OF and column.dtype != np.int64:
                    column = None
            if column is None:
                column = self._compute(name)
                if column is not None and self._cacheable(name) and ex_file is not None:
                    self._cache.save(name, ex_file, lab_file, column)
            self.columns[name] = column
        return self.columns[name]

    def ids(self) -> np.ndarray:
        """The shard's example ids (always present)."""
        ids = self.column("id")
        assert ids is not None
        return ids

    def text(self, name: str) -> np.ndarray:
        """A text column (never None: only sort keys may be)."""
        column = self.column(name)
        assert column is not None
        return column

    def _compute(self, name: str) -> np.ndarray | None:
        if name in _KEY_OF:  # from the text, which need not stay in memory
            text = _KEY_OF[name]
            held = text in self.columns
            key = sort_key(text, self.text(text))
            if not held:
                del self.columns[text]
            return key
        if name == "id":
            return _texts(list(self._examples.get()))
        if name.startswith(_QUEUE):
            return _queue_states(list(self._examples.get()), self._labels.readings.get(), *_READERS[name])
        group = self._derive(_LABEL_COLUMNS if name in _LABEL_COLUMNS else _EXAMPLE_COLUMNS)
        column = group.pop(name)()
        for other, derive in group.items():  # parsing the records was the cost: cache what else they give
            if other in self.columns or not self._cacheable(other):
                continue
            try:
                values = derive()
            except (KeyError, TypeError, ValueError):  # a record without the field: said when it is asked for
                continue
            key = sort_key(other, values) if other in _KEYED else None
            ex_file, lab_file = self.files
            assert ex_file is not None  # cacheable
            self._cache.save(other if key is None else _KEYED[other], ex_file, lab_file, values if key is None else key)
        return column

    def _derive(self, names: tuple[str, ...]) -> dict[str, Callable[[], np.ndarray]]:
        """How to compute each column of the example records, or of the labels, parsing them once."""
        examples = self._examples.get()
        ids = list(examples)
        if names == _LABEL_COLUMNS:
            found = self._labels.labels.get()  # len() indexes its lines once (before, each lookup scans the bytes)
            labels = [found.get(i) for i in ids] if len(found) else [None] * len(ids)
            return {
                "review": lambda: np.array([_review_code(lab) for lab in labels], np.int8),
                "waiting": lambda: np.array([_waiting(lab) for lab in labels], np.int32),
                "status": lambda: np.array(
                    [0 if lab is None else _STATUS_OF_LABEL[lab["status"]] for lab in labels], np.int8
                ),
                "label_updated": lambda: _texts(
                    ["" if lab is None or lab["status"] == "deleted" else lab["updated"] for lab in labels]
                ),
            }
        records = [examples[i] for i in ids]
        return {
            "model_id": lambda: _texts([r["model_id"] for r in records]),
            "split": lambda: _texts([r["split"] for r in records]),
            "subject_id": lambda: _texts([r["subject_id"] or "" for r in records]),
            # the position within the batch breaks ties in the time
            "created": lambda: _texts([f"{r['created']}{r.get('seq', 0):07d}" for r in records]),
            "updated": lambda: _texts([r["updated"] for r in records]),
            "source": lambda: _texts([source_order(r) for r in records]),
        }


def _waiting(label: dict[str, Any] | None) -> int:
    """-1 unless the label is a consensus of readings no reviewer has settled (adjudicated or accepted); then
    its agreement in millionths (1.0 when unknown): the adjudication queue, least agreement first.
    """
    if label is None or label["status"] == "deleted" or label.get("source") != "consensus":
        return -1
    if (label.get("review") or {}).get("state") == "accepted":
        return -1
    agreement = label.get("agreement")
    known = isinstance(agreement, int | float) and math.isfinite(agreement)
    return round(1e6 * min(max(float(agreement), 0.0), 1.0)) if known else 1_000_000  # type: ignore[arg-type]


def _review_code(label: dict[str, Any] | None) -> int:
    if label is None or label["status"] == "deleted":
        return 0
    return REVIEW_CODES.get((label.get("review") or {}).get("state", "none"), 0)


def _queue_states(ids: list[str], readings: Any, model_id: str, reader: str) -> np.ndarray:
    """Where each example stands in ``reader``'s queue of one model (an index of ``QUEUE_STATES``; -1: not
    theirs). A reading whose fields are not what they should be counts as not theirs (``check`` reports it).
    """
    out = np.full(len(ids), -1, np.int8)
    if not len(readings):
        return out
    suffix = f"/{reader}"
    position = {example_id: i for i, example_id in enumerate(ids)}
    for key, record in readings.unchecked().items():
        if not key.endswith(suffix) or not isinstance(record, dict) or record.get("reader") != reader:
            continue
        if record.get("model_id") != model_id:
            continue
        at = position.get(record.get("example_id"))  # type: ignore[arg-type]
        try:
            state = QUEUE_STATES.index(queue_state(record))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if at is not None:
            out[at] = state
    return out


def _texts(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.array([], dtype="U1")


class ExampleIndex:
    """Columns of all examples, kept current shard by shard."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache = ColumnCache(store.root / CACHE, store.root / "tables")
        self._blocks: dict[int, _Block] = {}
        self._merged: dict[Any, tuple[tuple, Any]] = {}

    def _current_blocks(self) -> list[_Block]:
        blocks = []
        store = self._store
        for shard in range(store.shards("examples")):
            examples = _Records(store, "examples", shard)
            labels = _LabelSide(_Records(store, "labels", shard), _Records(store, "readings", shard))
            block = self._blocks.get(shard)
            if block is None or block.key != (examples.token, labels.token) or block.exact != (True, True):
                same = block is not None and block.key[0] == examples.token and block.exact[0]
                block = self._blocks[shard] = _Block(examples, labels, self._cache, block if same else None)
            blocks.append(block)
        return blocks

    def _memo(self, what: Any, blocks: list[_Block], from_labels: bool, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept until a shard it comes from changes (the example shards, and the labels if asked)."""
        signature = tuple(b.version if from_labels else b.examples_version for b in blocks)
        cached = self._merged.get(what)
        if cached is None or cached[0] != signature:
            cached = self._merged[what] = (signature, compute())
        return cached[1]

    def column(self, name: str, blocks: list[_Block] | None = None) -> np.ndarray:
        blocks = blocks if blocks is not None else self._current_blocks()
        return self._memo(name, blocks, _from_labels(name), lambda: np.concatenate([b.column(name) for b in blocks]))

    def key(self, name: str, blocks: list[_Block] | None = None) -> np.ndarray:
        """Integer keys of a column in its order: ``key[i] < key[j]`` exactly where ``column[i] < column[j]``."""
        blocks = blocks if blocks is not None else self._current_blocks()
        if name == "status":
            return self.column(name, blocks)
        packed = self._packed(name, blocks) if name in _KEYED else None
        if packed is not None:
            return packed
        return self._memo(("rank", name), blocks, name in _FROM_LABELS, lambda: _ranks(self.column(name, blocks)))

    def _packed(self, name: str, blocks: list[_Block]) -> np.ndarray | None:
        """The per-shard sort keys of a text column over all rows (None if a shard's texts have none)."""
        parts = [b.column(_KEYED[name]) for b in blocks]
        present = [p for p in parts if p is not None]
        if len(present) != len(parts):
            return None
        return self._memo(_KEYED[name], blocks, name in _FROM_LABELS, lambda: np.concatenate(present))

    def label_state(self, rows: np.ndarray, blocks: list[_Block] | None = None) -> tuple[list[int], list[str]]:
        """The status codes (``STATUS_CODES``) at ``rows``, and the times of their labels ("" if none)."""
        blocks = blocks if blocks is not None else self._current_blocks()
        packed = self._packed("label_updated", blocks)
        if packed is None:
            times = self.column("label_updated", blocks)[rows].tolist()
        else:  # the key holds each field of the time: its text again, without the text column
            times = [time_text(k) for k in packed[rows].tolist()]
        return self.column("status", blocks)[rows].tolist(), times

    def _in_model(self, model_id: str, blocks: list[_Block]) -> np.ndarray:
        """Which rows are the model's examples."""
        return self._memo(("model", model_id), blocks, False, lambda: self.column("model_id", blocks) == model_id)

    def select(
        self,
        model_id: str,
        *,
        statuses: set[str] | None = None,
        subject: str | None = None,
        split: str | None = None,
        reader: str | None = None,
        queue: set[str] | None = None,
        review: set[str] | None = None,
    ) -> tuple[_Columns, np.ndarray]:
        """A lazy view of the columns, and the positions of the rows that match; with ``reader``, only the
        examples assigned to them (their queue), in the ``queue`` states (``reading.QUEUE_STATES``) if given.
        """
        blocks = self._current_blocks()
        cols = _Columns(self, blocks)
        if reader is not None:  # the reader's queue in the model: the model's rows without its column
            states = self.queue_states(model_id, reader, blocks)
            if queue is None:
                keep = states >= 0
            else:
                wanted = np.zeros(len(QUEUE_STATES) + 1, bool)
                wanted[[QUEUE_STATES.index(q) for q in queue]] = True
                keep = wanted[states]
        else:
            keep = self._in_model(model_id, blocks)
        if statuses is not None:
            wanted = np.zeros(len(STATUS_CODES), bool)
            wanted[[STATUS_CODES[s] for s in statuses]] = True
            keep = keep & wanted[cols["status"]]
        if review is not None:
            wanted = np.zeros(len(REVIEW_CODES), bool)
            wanted[[REVIEW_CODES[r] for r in review]] = True
            keep = keep & wanted[cols["review"]]
        if subject is not None:
            keep = keep & (cols["subject_id"] == subject)
        if split is not None:
            keep = keep & (cols["split"] == split)
        return cols, np.flatnonzero(keep)

    def adjudication(self, model_id: str) -> tuple[_Columns, np.ndarray]:
        """The rows of the model's examples waiting for a reviewer, least agreement first (then oldest label)."""
        blocks = self._current_blocks()
        cols = _Columns(self, blocks)
        waiting = cols["waiting"]
        rows = np.flatnonzero(self._in_model(model_id, blocks) & (waiting >= 0))
        times = cols.key("label_updated")[rows]
        return cols, rows[np.lexsort((times, waiting[rows]))]

    def queue_states(self, model_id: str, reader: str, blocks: list[_Block] | None = None) -> np.ndarray:
        """Per row, where the example stands in ``reader``'s queue of the model (an index of ``QUEUE_STATES``;
        -1: not theirs, or not the model's).
        """
        blocks = blocks if blocks is not None else self._current_blocks()
        return self.column(queue_column(model_id, reader), blocks)

    @staticmethod
    def order(cols, rows: np.ndarray, sort: str, descending: bool, limit: int | None = None) -> np.ndarray:
        """``rows`` sorted by a column; a stable sort keeps ties in storage order, so pages are stable.

        Examples added together share their creation time; ``created`` sorts them in the order
        they were added (an import adds a DICOM series in slice order, so Previous / Next walk it).
        ``descending`` is the ascending order reversed (ties last-stored first). With ``limit``,
        only the first ``limit`` rows of that order (``order(...)[:limit]``, found by a partial sort).
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        if len(rows) == 0:
            return rows
        keys = cols.key(sort) if isinstance(cols, _Columns) else np.asarray(cols[sort])
        return rows[first_in_order(keys[rows], descending, limit)]

    def counts(self, model_id: str) -> dict[str, int]:
        blocks = self._current_blocks()
        codes = self.column("status", blocks)[self._in_model(model_id, blocks)]
        found = np.bincount(codes, minlength=3)
        return {name: int(found[code]) for name, code in STATUS_CODES.items()}


class _Columns:
    """Mapping-like access to merged columns, built on first use."""

    def __init__(self, index: ExampleIndex, blocks: list[_Block]) -> None:
        self._index, self._blocks = index, blocks

    def __getitem__(self, name: str) -> np.ndarray:
        return self._index.column(name, self._blocks)

    def key(self, name: str) -> np.ndarray:
        """Integer sort keys of a column (see :meth:`ExampleIndex.key`)."""
        return self._index.key(name, self._blocks)

    def label_state(self, rows: np.ndarray) -> tuple[list[int], list[str]]:
        """Status codes and label times at ``rows`` (see :meth:`ExampleIndex.label_state`)."""
        return self._index.label_state(rows, self._blocks)

    def queue_states(self, model_id: str, reader: str) -> np.ndarray:
        """Where each row stands in ``reader``'s queue of the model (see :meth:`ExampleIndex.queue_states`)."""
        return self._index.queue_states(model_id, reader, self._blocks)


def first_in_order(keys: np.ndarray, descending: bool = False, limit: int | None = None) -> np.ndarray:
    """Positions of ``keys`` in stable sorted order (``descending``: that order reversed), the first ``limit``.

    A short page of a long column comes from a partial sort: every key before the page's last
    one, then as many keys equal to it as the page has room for, first-stored first (descending:
    last-stored first) - the rows, in the order, that the full stable sort gives.
    """
    n = len(keys)
    if limit is not None and limit <= 0:
        return np.zeros(0, np.intp)
    if limit is None or limit > n // 8 or keys.dtype.kind not in "biu":
        order = np.argsort(keys, kind="stable")
        order = order[::-1] if descending else order
        return order if limit is None else order[:limit]
    at = n - limit if descending else limit - 1
    kth = np.partition(keys, at)[at]
    tied = np.flatnonzero(keys == kth)
    if descending:
        beyond = np.flatnonzero(keys > kth)
        tied = tied[len(tied) - (limit - len(beyond)) :]
    else:
        beyond = np.flatnonzero(keys < kth)
        tied = tied[: limit - len(beyond)]
    pick = np.sort(np.concatenate([beyond, tied]))
    pick = pick[np.argsort(keys[pick], kind="stable")]
    return pick[::-1] if descending else pick


def _ranks(values: np.ndarray) -> np.ndarray:
    """Dense int64 ranks of ``values`` in their order (equal values share a rank)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    steps = np.zeros(len(values), np.int64)
    steps[1:] = ordered[1:] != ordered[:-1]
    ranks = np.empty(len(values), np.int64)
    ranks[order] = np.cumsum(steps)
    return ranks


#: a time as ``store.now()`` writes it (``d``: a digit)
_TIME = "dddd-dd-ddTdd:dd:dd.ddd+00:00"
_TIME_DIGITS = np.array([i for i, c in enumerate(_TIME) if c == "d"])
_TIME_TEXT = np.array([i for i, c in enumerate(_TIME) if c != "d"])
_TIME_CHARS = np.array([ord(_TIME[i]) for i in _TIME_TEXT], np.uint32)
#: (digits, bits in the key, smallest value) of the year, month, day, hour, minute, second and millisecond:
#: packed in this order, the fields take 44 bits, and keys compare as the texts do while each field fits
_TIME_FIELDS = ((4, 8, 1900), (2, 4, 0), (2, 5, 0), (2, 5, 0), (2, 6, 0), (2, 6, 0), (3, 10, 0))
_SEQ_BITS = 19  # the position within a batch, below the time in a creation key (63 bits in all)
_EX = np.array([ord(c) for c in "ex_"], np.uint32)


def sort_key(name: str, values: np.ndarray) -> np.ndarray | None:
    """int64 keys of a text column (``created``, ``updated``, ``label_updated`` or ``id``) in its order.

    Keys compare as the texts do (equal exactly where the texts are), so a stable sort on them is
    the stable sort on the texts, ties and all. None when a value is not in the form a key is made for.
    """
    if len(values) == 0:
        return np.zeros(0, np.int64)
    if name == "id":  # "ex_" and 12 lowercase hex digits ("0-9" sort before "a-f", as their values do)
        chars = _chars(values, 15)
        if chars is None or (chars[:, :3] != _EX).any():
            return None
        hexes = chars[:, 3:].T.astype(np.int64)
        digits = np.where(hexes >= 97, hexes - 87, hexes - 48)
        if ((digits < 0) | (digits > 15) | ((hexes > 57) & (hexes < 97))).any():
            return None
        return _number(digits, 16)
    if name == "label_updated":  # "" (no label) first
        keys = np.full(len(values), -1, np.int64)
        labeled = values != ""
        if not labeled.any():
            return keys
        chars = _chars(values, len(_TIME))
        times = None if chars is None else _time_key(chars[labeled])
        if times is None:
            return None
        keys[labeled] = times
        return keys
    if name == "updated":
        chars = _chars(values, len(_TIME))
        return None if chars is None else _time_key(chars)
    if name == "created":  # the time, then the position within its batch (7 digits)
        chars = _chars(values, len(_TIME) + 7)
        if chars is None:
            return None
        times, seq = _time_key(chars[:, : len(_TIME)]), _digits(chars[:, len(_TIME) :])
        if times is None or seq is None:
            return None
        seq = _number(seq, 10)
        if seq.max() >= 1 << _SEQ_BITS:
            return None
        return (times << _SEQ_BITS) | seq
    raise ValueError(f"no integer sort key for {name!r}")


def _chars(values: np.ndarray, width: int) -> np.ndarray | None:
    """The code points of texts of one width, one row per text (None if the column's width is another)."""
    if values.dtype.kind != "U" or values.dtype.itemsize != 4 * width:
        return None
    return np.ascontiguousarray(values).view(np.uint32).reshape(len(values), width)


def _digits(chars: np.ndarray) -> np.ndarray | None:
    """Decimal digits as their values, one row per place (None if a character is not a digit)."""
    digits = chars.T.astype(np.int64) - 48
    return None if ((digits < 0) | (digits > 9)).any() else digits


def _number(digits: np.ndarray, base: int) -> np.ndarray:
    """The numbers that digits spell (one row per place, the most significant first)."""
    number = digits[0].copy()
    for row in digits[1:]:
        number *= base
        number += row
    return number


def _time_key(chars: np.ndarray) -> np.ndarray | None:
    """Rows of times as ``now()`` writes them, packed field by field into int64s that sort as the texts do."""
    if (chars[:, _TIME_TEXT] != _TIME_CHARS).any():
        return None
    digits = _digits(chars[:, _TIME_DIGITS])
    if digits is None:
        return None
    keys = np.zeros(len(chars), np.int64)
    at = 0
    for width, bits, low in _TIME_FIELDS:
        field = _number(digits[at : at + width], 10) - low
        if field.min() < 0 or field.max() >= 1 << bits:  # beyond the field's bits: no key
            return None
        keys <<= bits
        keys |= field
        at += width
    return keys


def time_text(key: int) -> str:
    """The time whose :func:`sort_key` is ``key`` (-1: "", no label), as ``now()`` wrote it."""
    if key < 0:
        return ""
    fields = []
    for _, bits, low in reversed(_TIME_FIELDS):
        fields.append((key & ((1 << bits) - 1)) + low)
        key >>= bits
    year, month, day, hour, minute, second, ms = reversed(fields)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}+00:00"
