"""The facade users script against: ``Project.open(path)`` and ``Project.demo()``.

Everything a widget can do goes through here: models and their classes, subjects,
examples, labels (draft / submitted / deleted, with an audit trail), runs. Each
change is committed durably before the call returns, then observers are told.
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import logging
import os
import re
import secrets
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from . import imaging, imports
from .errors import ImageError, NotFoundError, PatientMLError, ValidationError
from .query import ExampleIndex
from .records import Change, Example, Label, Model, Prediction, Run, Subject
from .store import Store, VacuumReport, blob_ref, now
from .store.files import scratch_folder
from .store.store import IMPORT_PREFIX
from .training.metrics import OBJECTIVE_CHOICES as _OBJECTIVES

if TYPE_CHECKING:
    from .runs import RunHandle

__all__ = ["ImportReport", "Project", "split_for"]

log = logging.getLogger(__name__)

PROBLEM_TYPES = ("classification", "segmentation")
SPLITS = ("train", "val", "test")
#: fractions of subjects that go to train and val; the rest go to test.
SPLIT_FRACTIONS = (0.7, 0.15)
#: an import commits early when its pending images reach this many encoded bytes (memory stays bounded)
IMPORT_CHUNK_BYTES = 256 * 2**20
SORT_KEYS = ("created", "updated", "label_updated", "status", "subject_id", "split", "id", "source")
STATUSES = ("unlabeled", "draft", "labeled")
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

ModelRef = Model | str
ExampleRef = Example | str
RunRef = Run | str


def split_for(key: str) -> str:
    """The split of a subject (or of an example with no subject): stable, from a hash."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    if h < SPLIT_FRACTIONS[0]:
        return "train"
    return "val" if h < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1] else "test"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@dataclass
class ImportReport:
    """What :meth:`Project.add_folder` imported, and what it skipped and why."""

    added: list[Example] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    labels: int = 0
    #: files (or frames) skipped because this model already has them from the same file
    already: int = 0
    #: the model :meth:`Project.import_dataset` created
    model: Model | None = None

    def __str__(self) -> str:
        lines = [f"added {len(self.added)} examples ({self.labels} with labels), skipped {len(self.skipped)} files"]
        if self.already:
            lines[0] += f", {self.already} already imported"
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        lines += [f"  warning: {text}" for text in self.warnings]
        return "\n".join(lines)


class Project:
    """A labeling project in one folder. Safe to share between processes and kernels."""

    def __init__(self, store: Store, *, user: str | None = None, max_image_pixels: int | None = None) -> None:
        self._store = store
        self.user = user or _default_user()
        self.max_image_pixels = max_image_pixels
        self._observers: list[Callable[[Change], Any]] = []
        self._pending: list[Change] = []
        self._depth = 0
        self._lock = threading.RLock()  # one writer thread at a time; events go to the right batch
        self._seen_external = store.external_changes
        self._index = ExampleIndex(store)

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        create: bool = True,
        user: str | None = None,
        max_image_pixels: int | None = None,
    ) -> Project:
        """Open the project in ``path``, creating the folder if it is new (unless ``create=False``)."""
        return cls(Store(path, create=create), user=user, max_image_pixels=max_image_pixels)

    @classmethod
    def demo(cls, path: str | os.PathLike | None = None, *, fresh: bool = False, user: str | None = None) -> Project:
        """A ready demo project (built offline and deterministically on first use, then reused)."""
        from .demo import open_demo

        return open_demo(path, fresh=fresh, user=user)

    @property
    def path(self) -> Path:
        return self._store.root

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    # -- events ------------------------------------------------------------------------

    def observe(self, callback: Callable[[Change], Any]) -> Callable[[Change], Any]:
        """Call ``callback(change)`` after every committed change (usable as a decorator)."""
        self._observers.append(callback)
        return callback

    def unobserve(self, callback: Callable[[Change], Any]) -> None:
        """Stop calling ``callback`` (no error if it was not observing)."""
        if callback in self._observers:
            self._observers.remove(callback)

    def poll(self) -> bool:
        """Pick up changes made by other processes; tells observers (kind ``external``) if any."""
        self._store.refresh()
        if self._store.external_changes == self._seen_external:
            return False
        self._seen_external = self._store.external_changes
        self._dispatch([Change("external")])
        return True

    def _dispatch(self, changes: list[Change]) -> None:
        for change in changes:
            for callback in list(self._observers):
                try:
                    callback(change)
                except Exception as e:  # a broken view must not undo or hide a committed change
                    log.exception("project observer %r failed on %r", callback, change)
                    warnings.warn(f"project observer {callback!r} failed on {change.kind}: {e!r}", stacklevel=3)

    @contextmanager
    def batch(self) -> Iterator[Project]:
        """Group many changes into one transaction: one lock, one commit, then the events.

        If the block raises, none of its changes are kept.
        """
        with self._write():
            yield self

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                with self._store.transaction():
                    yield
            except BaseException:
                if outer:
                    self._pending = []
                raise
            finally:
                self._depth -= 1
            if not outer:
                return
            changes, self._pending = self._pending, []
        self._dispatch(changes)

    def _emit(self, change: Change) -> None:
        self._pending.append(change)

    def _read(self) -> Store:
        self._store.refresh()
        return self._store

    # -- models ------------------------------------------------------------------------

    def create_model(
        self,
        name: str,
        *,
        problem_type: str,
        classes: Sequence[str | dict[str, Any]],
        description: str = "",
        multi_label: bool = False,
    ) -> Model:
        """Create a model config. ``classes`` are names or dicts (name, color, description).

        Class indices are given in order from 0 and never reused; for segmentation,
        class 0 is the background (what unpainted pixels are). Dicts may instead all carry
        an ``index`` (as an export records them); unused indices below the highest count
        as retired and are never given out.
        """
        if problem_type not in PROBLEM_TYPES:
            raise ValidationError(f"problem_type must be one of {PROBLEM_TYPES}, not {problem_type!r}")
        if multi_label and problem_type != "classification":
            raise ValidationError("multi_label applies to classification models only")
        name = _clean_name(name, "model name")
        class_records, retired = _class_records(classes)
        _check_class_names([c["name"] for c in class_records])
        if problem_type == "segmentation" and 0 not in {c["index"] for c in class_records}:
            raise ValidationError("a segmentation model needs class 0 (the background)")
        minimum = 1 if multi_label else 2
        if len(class_records) < minimum:
            raise ValidationError(f"a {problem_type} model needs at least {minimum} classes")
        if len(class_records) > 256:
            raise ValidationError("a model can have at most 256 classes")
        stamp = now()
        record = {
            "id": _new_id("m"),
            "name": name,
            "description": str(description),
            "problem_type": problem_type,
            "classes": class_records,
            "retired_classes": retired,
            "multi_label": bool(multi_label),
            "champion_run_id": None,
            "training": {},
            "retrain": {},
            "created": stamp,
            "updated": stamp,
        }
        with self._write():
            self._check_unique_name(name)
            self._store.put("models", record["id"], record)
            self._emit(Change("model_created", model_id=record["id"]))
        return Model.from_record(record)

    def models(self) -> list[Model]:
        """All models, oldest first."""
        records = sorted(self._read().records("models"), key=lambda r: r["created"])
        return [Model.from_record(r) for r in records]

    def model(self, ref: ModelRef) -> Model:
        """A model by id, name, or (refreshed) Model."""
        return Model.from_record(self._model_record(ref))

    def rename_model(self, model: ModelRef, name: str) -> Model:
        name = _clean_name(name, "model name")
        return self._update_model(model, name=name)

    def describe_model(self, model: ModelRef, description: str) -> Model:
        return self._update_model(model, description=str(description))

    def add_class(self, model: ModelRef, name: str, *, color: str | None = None, description: str = "") -> Model:
        """Add a class; it gets a fresh index (never one a removed class had)."""
        with self._write():
            record = self._model_record(model)
            used = [c["index"] for c in record["classes"] + record["retired_classes"]]
            index = max(used) + 1
            if index > 255:
                raise ValidationError("this model has used all 256 class indices")
            new = _class_record(index, {"name": name, "color": color, "description": description})
            _check_class_names([c["name"] for c in record["classes"]] + [new["name"]])
            return self._update_model(record, classes=record["classes"] + [new])

    def remove_class(self, model: ModelRef, ref: int | str) -> Model:
        """Retire a class. Refused while a label uses it; its index is never given out again."""
        with self._write():
            record = self._model_record(model)
            index = Model.from_record(record).class_index(ref)
            if record["problem_type"] == "segmentation" and index == 0:
                raise ValidationError("class 0 is the background of a segmentation model and cannot be removed")
            in_use = sum(
                1
                for label in self._store.records("labels")
                if label["model_id"] == record["id"] and label["status"] != "deleted" and index in label["classes"]
            )
            if in_use:
                raise ValidationError(f"class {ref!r} is used by {in_use} labels; relabel or delete them first")
            keep = [c for c in record["classes"] if c["index"] != index]
            retired = record["retired_classes"] + [c for c in record["classes"] if c["index"] == index]
            return self._update_model(record, classes=keep, retired_classes=retired)

    def delete_model(self, model: ModelRef) -> None:
        """Delete a model with its examples and labels (the audit trail keeps the history)."""
        with self._write():
            record = self._model_record(model)
            stamp = now()
            for ex in [e for e in self._store.records("examples") if e["model_id"] == record["id"]]:
                self._store.delete("examples", ex["id"])
                self._store.delete("labels", ex["id"])
            for run in [r for r in self._store.records("runs") if r["model_id"] == record["id"]]:
                self._store.delete("runs", run["id"])
            for key, cached in list(self._store.mapping("predictions").items()):
                if cached["model_id"] == record["id"]:
                    self._store.delete("predictions", key)
            self._store.delete("models", record["id"])
            self._store.log(
                {
                    "time": stamp,
                    "actor": self.user,
                    "action": "delete_model",
                    "model_id": record["id"],
                    "name": record["name"],
                }
            )
            self._emit(Change("model_deleted", model_id=record["id"]))

    def _update_model(self, model: ModelRef | dict[str, Any], **changes: Any) -> Model:
        with self._write():
            record = dict(self._model_record(model["id"] if isinstance(model, dict) else model))
            if "name" in changes and changes["name"] != record["name"]:
                self._check_unique_name(changes["name"], exclude=record["id"])
            record.update(changes, updated=now())
            self._store.put("models", record["id"], record)
            self._emit(Change("model_updated", model_id=record["id"]))
        return Model.from_record(record)

    def _check_unique_name(self, name: str, exclude: str | None = None) -> None:
        for other in self._store.records("models"):
            if other["id"] != exclude and other["name"].casefold() == name.casefold():
                raise ValidationError(f"a model named {other['name']!r} already exists; choose another name")

    def _model_record(self, ref: ModelRef) -> dict[str, Any]:
        store = self._read()
        key = ref.id if isinstance(ref, Model) else ref
        if not isinstance(key, str):
            raise NotFoundError(f"not a model: {ref!r}")
        record = store.get("models", key)
        if record is None:
            record = next((r for r in store.records("models") if r["name"] == key), None)
        if record is None:
            raise NotFoundError(f"no model {key!r} in {self.path}")
        return record

    # -- subjects ----------------------------------------------------------------------

    def add_subject(
        self,
        subject_id: str,
        *,
        name: str | None = None,
        external_ids: dict[str, str] | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, str] | None = None,
    ) -> Subject:
        """Create or update a subject (a patient); examples refer to it by ``subject_id``."""
        subject_id = _clean_name(subject_id, "subject id")
        with self._write():
            old = self._store.get("subjects", subject_id)
            record = {
                "id": subject_id,
                "name": str(name) if name is not None else (old["name"] if old else subject_id),
                "external_ids": {
                    str(k): str(v) for k, v in (external_ids or (old or {}).get("external_ids", {})).items()
                },
                "tags": sorted({str(t) for t in tags} | set((old or {}).get("tags", []))),
                "metadata": {str(k): str(v) for k, v in (metadata or (old or {}).get("metadata", {})).items()},
                "created": old["created"] if old else now(),
            }
            self._store.put("subjects", subject_id, record)
            self._emit(Change("subject_changed", subject_id=subject_id))
        return Subject.from_record(record)

    def subjects(self) -> list[Subject]:
        return [Subject.from_record(r) for r in sorted(self._read().records("subjects"), key=lambda r: r["id"])]

    def subject(self, subject_id: str) -> Subject:
        record = self._read().get("subjects", subject_id)
        if record is None:
            raise NotFoundError(f"no subject {subject_id!r}")
        return Subject.from_record(record)

    # -- examples ----------------------------------------------------------------------

    def add_example(
        self,
        model: ModelRef,
        image: Any,
        *,
        subject: str | None = None,
        split: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> Example:
        """Add one image: a numpy array, or the path of a PNG/JPEG/TIFF/.npy or single-frame DICOM file."""
        return self.add_examples(model, [image], subjects=[subject], splits=[split], sources=[source])[0]

    def add_examples(
        self,
        model: ModelRef,
        images: Sequence[Any],
        *,
        subjects: Sequence[str | None] | None = None,
        splits: Sequence[str | None] | None = None,
        sources: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[Example]:
        """Add many images in one transaction: all of them, or (on any bad image) none.

        The split of each example comes from a hash of its subject (so a patient
        never spans splits) unless given explicitly. A DICOM file's subject defaults to
        its PatientID; multi-frame files go through :meth:`add_folder`.
        """
        model_record = self._model_record(model)
        n = len(images)
        subjects = list(subjects) if subjects is not None else [None] * n
        splits = list(splits) if splits is not None else [None] * n
        sources = list(sources) if sources is not None else [None] * n
        if not (len(subjects) == len(splits) == len(sources) == n):
            raise ValidationError("images, subjects, splits and sources must have the same length")
        for s in splits:
            if s is not None and s not in SPLITS:
                raise ValidationError(f"split must be one of {SPLITS}, not {s!r}")
        items = []
        for i, (image, subject, split, source) in enumerate(zip(images, subjects, splits, sources, strict=True)):
            if isinstance(image, (str, os.PathLike)) and imaging.is_dicom(image):
                (item,) = self._dicom_items(Path(image), Path(image).name, single=True)
                item.update(split=split, source={**item["source"], **(source or {})})
                item["subject"] = subject if subject is not None else item["subject"]
            else:
                name = str(image) if isinstance(image, (str, os.PathLike)) else (f"image {i}" if n > 1 else None)
                item = {"fields": self._prepare_image(image, name, source), "subject": subject, "split": split}
                item["source"] = dict(source or {})
                if isinstance(image, (str, os.PathLike)):
                    item["source"].setdefault("file", Path(image).name)
            if item["subject"] is not None:
                item["subject"] = _clean_name(item["subject"], "subject id")
            items.append(item)
        return self._insert_examples(model_record, items)

    def _prepare_image(self, image: Any, name: str | None, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read, check and encode an image (outside the lock); its blobs are written when the examples commit."""
        arr = imaging.read_image(image, max_pixels=self.max_image_pixels, name=name)
        data, ext = imaging.encode_image(arr)
        source = source or {}
        thumbnail = imaging.make_thumbnail(arr, window=source.get("window"), invert=bool(source.get("invert")))
        return {
            "width": int(arr.shape[1]),
            "height": int(arr.shape[0]),
            "channels": 1 if arr.ndim == 2 else int(arr.shape[2]),
            "dtype": str(arr.dtype),
            "image_ref": blob_ref(data, ext),
            "thumbnail_ref": blob_ref(thumbnail, "jpg"),
            "_blobs": ((data, ext), (thumbnail, "jpg")),
        }

    def _dicom_items(
        self, path: Path, rel: str, *, single: bool = False, entry: imports.Entry | None = None
    ) -> list[dict[str, Any]]:
        """One import item per frame of a DICOM file (ImageError if it cannot be read)."""
        header = entry.dicom if entry is not None else imaging.read_dicom_header(path, name=rel)
        frames = header.frames
        if single and frames != 1:
            raise ValidationError(f"{rel} has {frames} frames; add_folder(model, path) adds one example per frame")
        limit = self.max_image_pixels or imaging.DEFAULT_MAX_PIXELS
        items = []
        for array, frame_source in imaging.read_dicom_frames(path, max_pixels=limit, name=rel):
            frame = frame_source.get("frame", 0)
            name = f"{rel} frame {frame + 1}" if frames > 1 else rel
            source = {"file": rel, **frame_source}
            if entry is not None and header.series_uid:
                source.update(series_index=entry.series_start + frame, series_size=entry.series_size)
            items.append(
                {
                    "fields": self._prepare_image(array, name, source),
                    "source": source,
                    "subject": entry.subject if entry is not None else (header.patient_id or None),
                    "split": entry.split if entry is not None else None,
                    "subject_info": _dicom_subject_info(header),
                }
            )
        return items

    def _insert_examples(self, model_record, items: list[dict[str, Any]]) -> list[Example]:
        """Commit prepared items (fields, source, subject, split, and optionally subject_info, label)."""
        records = []
        stamp = now()
        for item in items:  # checked before anything is written
            item["source"] = _json_clean(item.get("source") or {}, "source")
        with self._write():
            self._model_record(model_record["id"])  # still there?
            for seq, item in enumerate(items):
                example_id = _new_id("ex")
                subject = item.get("subject")
                if subject is not None:
                    self._ensure_subject(subject, item.get("subject_info") or {}, stamp)
                fields = dict(item["fields"])
                for data, ext in fields.pop("_blobs"):
                    self._store.put_blob(data, ext)
                record = {
                    "id": example_id,
                    "model_id": model_record["id"],
                    "subject_id": subject,
                    "split": item.get("split") or split_for(subject or example_id),
                    **fields,
                    "source": item["source"],
                    "created": stamp,
                    "updated": stamp,
                    "seq": seq,
                }
                self._store.put("examples", example_id, record)
                records.append(record)
                label = item.get("label")
                if label:
                    self._write_label(
                        example_id, label["status"], label.get("mask"), label.get("classes"),
                        label.get("author"), None, "import",
                    )  # fmt: skip
            self._emit(
                Change("examples_added", model_id=model_record["id"], example_ids=tuple(r["id"] for r in records))
            )
        return [Example.from_record(r, self._store.get("labels", r["id"])) for r in records]

    def _ensure_subject(self, subject: str, info: dict[str, Any], stamp: str) -> None:
        old = self._store.get("subjects", subject)
        external = {**info.get("external_ids", {}), **((old or {}).get("external_ids") or {})}
        metadata = {**info.get("metadata", {}), **((old or {}).get("metadata") or {})}
        if old is not None and external == old.get("external_ids") and metadata == old.get("metadata", {}):
            return
        record = {"id": subject, "name": subject, "tags": [], "created": stamp, **(old or {})}
        record.update(external_ids=external, metadata=metadata)
        self._store.put("subjects", subject, record)

    def add_folder(
        self,
        model: ModelRef,
        folder: str | os.PathLike,
        *,
        index: str | os.PathLike | None = None,
        subject_from: str | Callable[[Path], str | None] = "auto",
        split_from: str = "auto",
        recursive: bool = True,
        chunk: int = 64,
        progress: Callable[[int, int], Any] | None = None,
    ) -> ImportReport:
        """Import the images under ``folder`` (or one file, or a .zip archive): PNG/JPEG/TIFF/.npy and DICOM.

        A DICOM file gives one example per frame; series are imported together, slices in
        order along the slice normal (``source["series_index"]`` counts from 0), with the
        header's window as the default display. ``index``: a CSV (relative to ``folder``)
        listing the files to import in an ``image`` column, and optionally ``subject``,
        ``split``, ``mask`` (a PNG of class indices), ``classes`` (names joined by ``|``),
        ``status`` (``submitted`` by default) and ``author`` - labels given there are imported.

        ``subject_from``: ``"auto"`` (the CSV's subject, else DICOM PatientID, else the parent
        folder), ``"folder"``, ``"dicom"``, ``"none"``, or a function of the file's path.
        ``split_from``: ``"auto"`` (the CSV's split, else a train/val/test folder on the path,
        else the hash of the subject) or ``"hash"``.
        Unreadable files are skipped and reported with the reason; the rest imports, ``chunk``
        examples per transaction, so an interrupted import keeps what it did (and a rerun adds
        only what is new). ``progress(done, total)`` is called after each file (e.g. to move a
        progress bar).
        """
        root = Path(folder)
        if not root.exists():
            raise NotFoundError(f"no folder or file {root}")
        model_record = self._model_record(model)
        if root.is_file() and root.suffix.lower() == ".zip":
            return self._import_zip(model_record, root, index, subject_from, split_from, chunk, progress)
        plan = imports.plan_folder(
            root, index=index, subject_from=subject_from, split_from=split_from, recursive=recursive
        )
        return self._import_plan(model_record, plan, chunk, progress)

    def _import_zip(
        self, model_record, archive: Path, index, subject_from, split_from, chunk, progress
    ) -> ImportReport:
        """Unpack into a scratch folder inside the project (patient data goes nowhere else), import, remove it.

        A killed import leaves the folder unlocked; the project's next open or write removes it.
        """
        with scratch_folder(self.path, IMPORT_PREFIX) as scratch:
            skipped = imports.extract_zip(archive, scratch)
            plan = imports.plan_folder(scratch, index=index, subject_from=subject_from, split_from=split_from)
            plan.skipped[:0] = skipped
            return self._import_plan(model_record, plan, chunk, progress)

    def _import_plan(
        self, model_record: dict[str, Any], plan: imports.Plan, chunk: int = 64, progress=None, retrain: bool = True
    ) -> ImportReport:
        model_view = Model.from_record(model_record)
        report = ImportReport(skipped=list(plan.skipped), warnings=list(plan.warnings))
        known = {
            _import_key(r["image_ref"], r["source"])
            for r in self._read().records("examples")
            if r["model_id"] == model_record["id"]
        }
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        decoded: dict[Path, list] = {}
        for done, entry in enumerate(plan.entries, start=1):
            try:
                items = self._entry_items(entry, model_view, decoded)
            except (ImageError, ValidationError) as e:
                report.skipped.append((entry.rel, str(e)))
                items = []
            for item in items:
                key = _import_key(item["fields"]["image_ref"], item["source"])
                if key in known:
                    report.already += 1  # a rerun (after an interruption, say) adds only what is new
                else:
                    known.add(key)
                    pending.append(item)
                    pending_bytes += sum(len(data) for data, _ in item["fields"]["_blobs"])
            if len(pending) >= chunk or pending_bytes >= IMPORT_CHUNK_BYTES:
                self._commit_import(model_record, pending, report)
                pending, pending_bytes = [], 0
            if progress is not None:
                progress(done, len(plan.entries))
        if pending:
            self._commit_import(model_record, pending, report)
        if report.labels and retrain:
            self._maybe_retrain(model_record["id"])
        return report

    # -- exchange with other tools ---------------------------------------------------------------

    def export_labels(
        self,
        model: ModelRef,
        folder: str | os.PathLike,
        *,
        layout: str = "folder",
        include_drafts: bool = False,
        include_subjects: bool = True,
        include_metadata: bool = False,
    ) -> Path:
        """Write the model's submitted labels (and drafts, if asked) with their images to a new ``folder``.

        ``layout="folder"``: ``images/``, ``masks/`` (PNG of class indices), ``index.csv`` and
        ``dataset.json`` (model, classes, label versions); classification labels are the
        ``classes`` column of ``index.csv``. ``layout="coco"``: ``annotations.json`` with one RLE
        annotation per class and image. Subject ids are written (for patient-level splits)
        unless ``include_subjects=False``; patient names and DICOM identifiers are not, unless
        ``include_metadata=True``. :meth:`import_dataset` reads either layout back.
        """
        from .exports import export_labels

        return export_labels(
            self, self.model(model), folder, layout=layout, include_drafts=include_drafts,
            include_subjects=include_subjects, include_metadata=include_metadata,
        )  # fmt: skip

    def export_snapshot(self, run: RunRef, folder: str | os.PathLike, *, include_subjects: bool = True) -> Path:
        """Write the exact label versions a run's snapshot froze, with the images, as an export folder."""
        from .exports import export_snapshot

        return export_snapshot(self, self._run_record(run)["id"], folder, include_subjects=include_subjects)

    def import_dataset(self, folder: str | os.PathLike, *, name: str | None = None) -> ImportReport:
        """Create a model from an export (either layout), or from any COCO folder, with its labels.

        An export brings its model name (or ``name``), classes with their indices and colours,
        subjects, splits, and each label's status and author. A plain COCO folder
        (``annotations.json`` with RLE or polygon annotations) becomes a segmentation model
        named after the folder, category ids as class indices and 0 as the background.
        The report's ``model`` is the new model. Unreadable files are skipped and reported, as in
        :meth:`add_folder`; the rest is one commit: a full disk or a kill leaves no part of it
        (other processes' writes wait until it is done).
        """
        from . import exports

        root = Path(folder)
        if not root.is_dir():
            raise NotFoundError(f"no folder {root}")
        if (root / "dataset.json").exists():
            manifest = exports.read_manifest(root)
            info = manifest.get("model") or {}
            keys = ("index", "name", "color", "description")
            spec = {
                "name": name or str(info.get("name") or root.name),
                "problem_type": str(info.get("problem_type")),
                "classes": [{k: c[k] for k in keys if k in c} for c in manifest["classes"]],
                "description": str(info.get("description") or ""),
                "multi_label": bool(info.get("multi_label")),
            }
            layout = manifest["layout"]
        else:
            categories, _ = exports.read_coco(root)
            classes = [{"index": 0, "name": "background"}]
            classes += [{"index": int(c["id"]), "name": str(c["name"])} for c in categories]
            spec = {"name": name or root.name, "problem_type": "segmentation", "classes": classes}
            layout = "coco"
        if any(m.name.casefold() == spec["name"].casefold() for m in self.models()):
            raise ValidationError(
                f"this project already has a model named {spec['name']!r}; "
                "import_dataset(folder, name=...) imports under another name"
            )
        # plan before creating the model: an unreadable export leaves the project as it was
        plan = (
            imports.plan_folder(root, index="index.csv")
            if layout == "folder"
            else imports.plan_coco(root, *exports.read_coco(root))
        )
        with self._write():  # one commit: the model with all its examples and labels, or nothing
            model = self.create_model(**spec)
            report = self._import_plan(self._model_record(model.id), plan, retrain=False)
        report.model = self.model(model.id)
        return report

    def _entry_items(self, entry: imports.Entry, model: Model, decoded: dict[Path, list] | None = None):
        """The import items of one planned file; ``decoded`` keeps the last DICOM file's frames
        (index rows that label frames of one file one by one decode it once).
        """
        if entry.dicom is not None:
            decoded = {} if decoded is None else decoded
            if entry.path not in decoded:
                decoded.clear()
                decoded[entry.path] = self._dicom_items(entry.path, entry.rel, entry=entry)
            items = [dict(item) for item in decoded[entry.path]]
            if entry.frame is not None:
                items = [item for item in items if item["source"].get("frame", 0) == entry.frame]
                if not items:
                    raise ValidationError(f"{entry.rel} has no frame {entry.frame} (it has {entry.dicom.frames})")
        else:
            source = {"file": entry.rel, **entry.display}
            fields = self._prepare_image(entry.path, entry.rel, source)
            items = [{"fields": fields, "source": source, "subject": entry.subject, "split": entry.split}]
        if entry.subject is not None:
            for item in items:
                item["subject"] = _clean_name(entry.subject, "subject id")
        if entry.label:
            if len(items) != 1:
                raise ValidationError(
                    f"a label is given for a file of {len(items)} frames; give each frame its row (a frame column)"
                )
            items[0]["label"] = _import_label(entry, model, items[0]["fields"])
        return items

    def _commit_import(self, model_record, items: list[dict[str, Any]], report: ImportReport) -> None:
        report.added += self._insert_examples(model_record, items)
        report.labels += sum(1 for item in items if item.get("label"))

    def example(self, ref: ExampleRef) -> Example:
        record = self._example_record(ref)
        return Example.from_record(record, self._store.get("labels", record["id"]))

    def examples(
        self,
        model: ModelRef,
        *,
        status: str | Iterable[str] | None = None,
        subject: str | None = None,
        split: str | None = None,
        sort: str = "created",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Example]:
        """The model's examples, filtered, sorted and paged.

        ``status``: ``"unlabeled"``, ``"draft"``, ``"labeled"`` or several of them.
        ``sort``: one of ``created, updated, label_updated, status, subject_id, split, id, source``
        (``source``: by subject, then DICOM series in slice order, else by file path).
        """
        if sort not in SORT_KEYS:
            raise ValidationError(f"sort must be one of {SORT_KEYS}, not {sort!r}")
        if offset < 0 or (limit is not None and limit < 0):
            raise ValidationError("offset and limit must not be negative")
        cols, rows = self._select(model, status=status, subject=subject, split=split)
        rows = ExampleIndex.order(cols, rows, sort, descending)
        page = rows[offset : None if limit is None else offset + limit]
        store = self._store
        return [
            Example.from_record(store.get("examples", example_id), store.get("labels", example_id))
            for example_id in cols["id"][page]
        ]

    def count_examples(self, model: ModelRef, **filters: Any) -> int:
        """How many examples :meth:`examples` would list with these filters (no paging)."""
        return len(self._select(model, **filters)[1])

    def status_counts(self, model: ModelRef) -> dict[str, int]:
        """``{"unlabeled": n, "draft": n, "labeled": n}`` for the model."""
        return self._index.counts(self._model_record(model)["id"])

    def _select(self, model, *, status=None, subject=None, split=None):
        model_id = self._model_record(model)["id"]
        wanted = {status} if isinstance(status, str) else (set(status) if status is not None else None)
        if wanted is not None and not wanted <= set(STATUSES):
            raise ValidationError(f"status must be among {STATUSES}, not {sorted(wanted - set(STATUSES))}")
        if split is not None and split not in SPLITS:
            raise ValidationError(f"split must be one of {SPLITS}, not {split!r}")
        return self._index.select(model_id, statuses=wanted, subject=subject, split=split)

    def delete_example(self, example: ExampleRef) -> None:
        """Delete an example and its label (the audit trail keeps the history)."""
        with self._write():
            record = self._example_record(example)
            label = self._store.get("labels", record["id"])
            self._store.log(
                {
                    "time": now(),
                    "actor": self.user,
                    "action": "delete_example",
                    "example_id": record["id"],
                    "model_id": record["model_id"],
                    "version": (label["version"] if label else 0) + 1,
                }
            )
            self._store.delete("examples", record["id"])
            self._store.delete("labels", record["id"])
            for run in self._store.records("runs"):
                if run["model_id"] == record["model_id"]:
                    self._store.delete("predictions", f"{run['id']}:{record['id']}")
            self._emit(Change("example_deleted", model_id=record["model_id"], example_ids=(record["id"],)))

    def image(self, example: ExampleRef) -> np.ndarray:
        """The example's image as stored (16-bit stays 16-bit)."""
        ref = self._example_record(example)["image_ref"]
        return imaging.decode_image(self._store.blobs.get(ref), ref.rsplit(".", 1)[1])

    def thumbnail(self, example: ExampleRef) -> bytes:
        """A JPEG preview of the example (cached in the project when the example was added)."""
        ref = example.thumbnail_ref if isinstance(example, Example) else self._example_record(example)["thumbnail_ref"]
        return self._store.blobs.get(ref)

    def _example_record(self, ref: ExampleRef) -> dict[str, Any]:
        key = ref.id if isinstance(ref, Example) else ref
        record = self._read().get("examples", key) if isinstance(key, str) else None
        if record is None:
            raise NotFoundError(f"no example {key!r} in {self.path}")
        return record

    # -- labels ------------------------------------------------------------------------

    def label(self, example: ExampleRef) -> Label | None:
        """The example's current label (draft or submitted), or None."""
        record = self._store.get("labels", self._example_record(example)["id"])
        if record is None or record["status"] == "deleted":
            return None
        return Label.from_record(record)

    def mask(self, example: ExampleRef) -> np.ndarray | None:
        """The current label's mask (uint8 class indices), or None."""
        label = self.label(example)
        if label is None or label.mask_ref is None:
            return None
        return imaging.decode_mask_png(self._store.blobs.get(label.mask_ref))

    def save_label(
        self,
        example: ExampleRef,
        *,
        mask: np.ndarray | None = None,
        classes: Any = None,
        author: str | None = None,
        time_spent: float | None = None,
        source: str = "human",
    ) -> Label:
        """Save a draft: kept and shown, never used for training until submitted."""
        return self._write_label(example, "draft", mask, classes, author, time_spent, source)

    def submit_label(
        self,
        example: ExampleRef,
        *,
        mask: np.ndarray | None = None,
        classes: Any = None,
        author: str | None = None,
        time_spent: float | None = None,
        source: str = "human",
    ) -> Label:
        """Confirm a label; the next training run will use it. Without a mask or
        classes, the current draft is submitted as it is.
        """
        return self._write_label(example, "submitted", mask, classes, author, time_spent, source)

    def delete_label(self, example: ExampleRef, *, author: str | None = None) -> None:
        """Delete the example's label; it becomes unlabeled (the history stays in the audit trail)."""
        with self._write():
            record = self._example_record(example)
            old = self._store.get("labels", record["id"])
            if old is None or old["status"] == "deleted":
                raise NotFoundError(f"example {record['id']} has no label to delete")
            stamp = now()
            new = {**old, "status": "deleted", "mask_ref": None, "classes": [], "version": old["version"] + 1}
            new.update(author=author or self.user, updated=stamp)
            self._store.log(_label_event("delete", new, old))
            self._store.put("labels", record["id"], new)
            self._emit(Change("label_deleted", model_id=record["model_id"], example_ids=(record["id"],)))

    def history(self, example: ExampleRef) -> list[dict[str, Any]]:
        """The audit trail of one example's label, oldest first."""
        key = example.id if isinstance(example, Example) else example
        current = self._read().get("labels", key)
        by_version: dict[int, dict[str, Any]] = {}
        for event in self._store.audit.for_example(key):
            if "version" in event:
                by_version[event["version"]] = event  # a retried version replaces an uncommitted one
        top = current["version"] if current else max(by_version, default=0)
        return copy.deepcopy([by_version[v] for v in sorted(by_version) if v <= top])

    def audit(self, model: ModelRef | None = None) -> list[dict[str, Any]]:
        """Every audit event (of one model, if given), oldest first."""
        model_id = self._model_record(model)["id"] if model is not None else None
        events = self._store.audit.events()
        return copy.deepcopy([e for e in events if model_id is None or e.get("model_id") == model_id])

    def vacuum(self) -> VacuumReport:
        """Remove the stored files nothing refers to any more, and say how many bytes that freed.

        Images and thumbnails of deleted examples and models, and whatever a killed call
        wrote, go; every mask the audit trail refers to stays, so each label version can
        still be restored.
        """
        return self._store.vacuum()

    def _write_label(self, example, status, mask, classes, author, time_spent, source) -> Label:
        with self._write():
            record = self._example_record(example)
            model = Model.from_record(self._model_record(record["model_id"]))
            old = self._store.get("labels", record["id"])
            live = old if old is not None and old["status"] != "deleted" else None
            if model.problem_type == "segmentation":
                if classes is not None:
                    raise ValidationError("a segmentation label is a mask; pass mask=, not classes=")
                if mask is None:
                    if live is None or live["mask_ref"] is None:
                        raise ValidationError(f"example {record['id']} has no mask yet; pass mask=")
                    mask_ref, present = live["mask_ref"], live["classes"]
                else:
                    valid = [c.index for c in model.classes]
                    mask = imaging.validate_mask(mask, (record["height"], record["width"]), valid)
                    mask_ref = self._store.put_blob(imaging.encode_mask_png(mask), "png")
                    present = imaging.present_classes(mask)
            else:
                if mask is not None:
                    raise ValidationError("a classification label is a set of classes; pass classes=, not mask=")
                if classes is None:
                    if live is None:
                        raise ValidationError(f"example {record['id']} has no label yet; pass classes=")
                    present = live["classes"]
                else:
                    present = _class_indices(model, classes)
                mask_ref = None
            stamp = now()
            new = {
                "example_id": record["id"],
                "model_id": record["model_id"],
                "kind": "mask" if model.problem_type == "segmentation" else "classes",
                "status": status,
                "classes": present,
                "mask_ref": mask_ref,
                "author": author or self.user,
                "time_spent": None if time_spent is None else float(time_spent),
                "source": str(source),
                "version": (old["version"] if old else 0) + 1,
                "created": live["created"] if live else stamp,
                "updated": stamp,
            }
            self._store.log(_label_event("submit" if status == "submitted" else "save", new, old))
            self._store.put("labels", record["id"], new)
            kind = "label_submitted" if status == "submitted" else "label_saved"
            self._emit(Change(kind, model_id=record["model_id"], example_ids=(record["id"],)))
        if status == "submitted" and self._depth == 0:
            self._maybe_retrain(record["model_id"])
        return Label.from_record(new)

    # -- runs --------------------------------------------------------------------------

    def snapshot(self, model: ModelRef) -> dict[str, list[list[Any]]]:
        """The submitted labels training would use now: ``{split: [[example_id, version], ...]}``."""
        snap: dict[str, list[list[Any]]] = {s: [] for s in SPLITS}
        cols, rows = self._select(model, status="labeled")
        for example_id, split in zip(cols["id"][rows].tolist(), cols["split"][rows].tolist(), strict=True):
            snap[split].append([example_id, self._store.get("labels", example_id)["version"]])
        for items in snap.values():
            items.sort()
        return snap

    def create_run(
        self, model: ModelRef, *, trigger: str = "manual", hyperparameters: dict[str, Any] | None = None
    ) -> Run:
        """Record a queued run over a frozen snapshot of the submitted labels."""
        with self._write():
            model_record = self._model_record(model)
            count = sum(1 for r in self._store.records("runs") if r["model_id"] == model_record["id"])
            record = {
                "id": _new_id("run"),
                "model_id": model_record["id"],
                "slug": f"run-{count + 1}",
                "status": "queued",
                "trigger": str(trigger),
                "snapshot": self.snapshot(model_record["id"]),
                "hyperparameters": dict(hyperparameters or {}),
                "metrics": {},
                "approvals": [],
                "history": [],
                "progress": {},
                "error": None,
                "created": now(),
                "started": None,
                "ended": None,
            }
            self._store.put("runs", record["id"], record)
            self._emit(Change("run_created", model_id=model_record["id"], run_id=record["id"]))
        return Run.from_record(record)

    def runs(self, model: ModelRef) -> list[Run]:
        """The model's runs, oldest first."""
        from .runs import reap_dead_runs

        model_id = self._model_record(model)["id"]
        records = sorted(
            (r for r in self._store.records("runs") if r["model_id"] == model_id), key=lambda r: r["created"]
        )
        reap_dead_runs(self, records)
        return [Run.from_record(self._run_record(r["id"])) for r in records]

    def run(self, run: RunRef) -> Run:
        return Run.from_record(self._run_record(run))

    def _run_record(self, run: RunRef) -> dict[str, Any]:
        key = run if isinstance(run, str) else run.id
        record = self._read().get("runs", key)
        if record is None:
            raise NotFoundError(f"no run {key!r}")
        return record

    def _update_run(self, run: RunRef, **fields: Any) -> None:
        with self._write():
            record = {**self._run_record(run), **fields}
            self._store.put("runs", record["id"], record)
            self._emit(Change("run_updated", model_id=record["model_id"], run_id=record["id"]))

    # -- training ----------------------------------------------------------------------

    def configure_training(
        self,
        model: ModelRef,
        *,
        hyperparameters: dict[str, Any] | None = None,
        search_space: dict[str, Any] | None = None,
        max_trials: int | None = None,
        objective: str | None = None,
        direction: str | None = None,
        min_margin: float | None = None,
        auto_deploy: bool | None = None,
        model_code: str | None = None,
        budget: float | str | None = None,
    ) -> Model:
        """Set how runs of this model train and when they are promoted; unset arguments stay as they are.

        ``budget`` is the time the optimisation steps may take (``"3 min"``, ``"90 s"``, seconds;
        0 or "" goes back to the machine's default: 3 min on a CPU, 10 min on a GPU); training
        stops earlier when the validation objective stops improving.
        ``hyperparameters`` override what the run's plan derives from the data and the machine
        (resolution ``image_size``, ``batch_size``, ``steps``, ``lr``, ``base_channels``, ``depth``,
        ``precision`` "auto" | "fp32" | "bf16" | "fp16", ``augment``, ``tta``, ``seed``; see
        ``training.spec.TrainSpec``);
        ``search_space`` (with ``max_trials``) makes each run train several trials and keep
        the best on the validation split; ``objective``/``direction``/``min_margin`` is the
        promotion rule; ``auto_deploy`` deploys an approved run; ``model_code`` names code
        registered with :meth:`register_model_code` ("" for the built-in network).
        """
        from .training.search import validate_space
        from .training.spec import parse_budget

        with self._write():  # read and change in one commit: two kernels configuring lose nothing
            record = self._model_record(model)
            config = copy.deepcopy(record.get("training") or {})
            updates = {
                "hyperparameters": hyperparameters,
                "search_space": validate_space(search_space) if search_space is not None else None,
                "max_trials": max_trials,
                "objective": objective,
                "direction": direction,
                "min_margin": min_margin,
                "auto_deploy": auto_deploy,
                "model_code": model_code,
                "budget_s": None if budget is None else parse_budget(budget),
            }
            kind = "multi-label classification" if record.get("multi_label") else record["problem_type"]
            if objective is not None and objective not in _OBJECTIVES[kind]:
                metrics = ", ".join(_OBJECTIVES[kind])
                raise ValidationError(f"objective {objective!r} is not a {kind} metric ({metrics})")
            if objective is not None and direction is None:
                updates["direction"] = "min" if objective == "loss" else "max"  # lower loss is better
            if direction is not None and direction not in ("max", "min"):
                raise ValidationError("direction is 'max' (higher is better) or 'min'")
            if max_trials is not None and int(max_trials) < 1:
                raise ValidationError("max_trials must be at least 1")
            if model_code and self._read().get("code", model_code) is None:
                raise NotFoundError(f"no registered model code {model_code!r}; register_model_code() it first")
            config.update({k: v for k, v in updates.items() if v is not None})
            if hyperparameters is not None and not config.get("model_code"):
                from .training.spec import TrainSpec

                TrainSpec.build(record["problem_type"], hyperparameters, num_classes=len(record["classes"]))
            return self._update_model(record, training=config)

    def set_retrain_policy(self, model: ModelRef, *, after_labels: int | None) -> Model:
        """Start a run by itself once ``after_labels`` new labels were submitted since the last run.

        ``None``: runs start only on demand.
        """
        if after_labels is not None and int(after_labels) < 1:
            raise ValidationError("after_labels must be at least 1, or None")
        return self._update_model(model, retrain={"after_labels": None if after_labels is None else int(after_labels)})

    def register_model_code(self, name: str, code: Any, *, factory: str | None = None, train_step: Any = None) -> None:
        """Register your own network (the notebook form of a model-code container).

        ``code`` is a factory function ``f(in_channels, num_classes) -> torch.nn.Module``,
        a module, a ``.py`` file or source text. The source is stored in the project and
        run in the training worker, so a function must do its own imports (or pass a module
        or file). ``train_step(model, images, targets, optimizer) -> float`` optionally
        replaces the built-in step (forward, loss, backward, optimizer step).
        """
        import inspect
        import textwrap
        import types

        name = _clean_name(name, "model code name")
        if isinstance(code, types.FunctionType):
            source, factory = textwrap.dedent(inspect.getsource(code)), code.__name__
        elif isinstance(code, types.ModuleType):
            source = inspect.getsource(code)
        elif isinstance(code, (os.PathLike, str)) and str(code).endswith(".py") and Path(code).is_file():
            source = Path(code).read_text()
        elif isinstance(code, str):
            source = code
        else:
            raise ValidationError("model code is a function, a module, a .py file or source text")
        step_name = None
        if train_step is not None:
            if isinstance(train_step, types.FunctionType):
                step_name = train_step.__name__
                if f"def {step_name}(" not in source:
                    source += "\n\n" + textwrap.dedent(inspect.getsource(train_step))
            else:
                step_name = str(train_step)
        factory = factory or "build"
        try:
            compile(source, f"<model code {name!r}>", "exec")
        except SyntaxError as e:
            raise ValidationError(f"the model code does not compile: {e}") from None
        if f"def {factory}(" not in source:
            raise ValidationError(f"the model code defines no function {factory!r}; pass factory=")
        with self._write():
            ref = self._store.put_blob(source.encode(), "py")
            self._store.put(
                "code",
                name,
                {"name": name, "source_ref": ref, "factory": factory, "train_step": step_name, "created": now()},
            )

    def train(
        self,
        model: ModelRef,
        *,
        hyperparameters: dict[str, Any] | None = None,
        trigger: str = "manual",
        processes: int = 1,
        nodes: int = 1,
        rendezvous: str | None = None,
    ) -> RunHandle:
        """Start a run in a worker process and return at once; ``.wait()`` on the handle to block.

        ``processes > 1`` launches the same run under ``torchrun`` with DistributedDataParallel
        (gloo on CPU, NCCL on GPUs); the run record is the same, plus ``distributed``.
        ``nodes > 1`` makes this machine node 0 of a multi-node run whose rendezvous is
        ``rendezvous="address:port"`` on this machine; start the other nodes with
        ``handle.node_command(k)`` on machines that see the same project folder.
        """
        from .runs import check_trainable, start_run
        from .training import require_torch

        require_torch()
        record = self._model_record(model)
        if hyperparameters and not (record.get("training") or {}).get("model_code"):
            from .training.spec import TrainSpec

            TrainSpec.build(record["problem_type"], hyperparameters, num_classes=len(record["classes"]))
        check_trainable(self.snapshot(record["id"]))
        _check_precision(record, hyperparameters)
        run = self.create_run(record["id"], trigger=trigger, hyperparameters=hyperparameters)
        return start_run(self, run, processes=int(processes), nodes=int(nodes), rendezvous=rendezvous)

    def cancel(self, run: RunRef) -> Run:
        """Stop a queued or running run (it ends as cancelled within about 2 s)."""
        from .runs import cancel_run

        return cancel_run(self, self._run_record(run)["id"])

    def approve(self, run: RunRef, reason: str = "", *, actor: str | None = None) -> Run:
        """Record a person's approval of a run (deploying it is a separate step: :meth:`deploy`)."""
        return self._decide(run, "approve", reason, actor)

    def reject(self, run: RunRef, reason: str, *, actor: str | None = None) -> Run:
        """Record a person's rejection of a run, with the reason."""
        if not str(reason).strip():
            raise ValidationError("a rejection needs a reason")
        return self._decide(run, "reject", reason, actor)

    def _decide(self, run: RunRef, decision: str, reason: str, actor: str | None) -> Run:
        with self._write():
            record = self._run_record(run)
            event = {"decision": decision, "actor": actor or self.user, "reason": str(reason), "time": now()}
            self._update_run(record["id"], approvals=[*record.get("approvals", []), event])
        return self.run(record["id"])

    def deploy(self, run: RunRef, *, actor: str | None = None, reason: str = "") -> Model:
        """Make a succeeded run its model's champion: the deployed model that predicts."""
        with self._write():
            record = self._run_record(run)
            if record["status"] != "succeeded" or not record.get("artifact_ref"):
                raise ValidationError(f"only a succeeded run can be deployed; {record['slug']} is {record['status']}")
            event = {"decision": "deploy", "actor": actor or self.user, "reason": str(reason), "time": now()}
            self._update_run(record["id"], approvals=[*record.get("approvals", []), event])
            return self._update_model(record["model_id"], champion_run_id=record["id"])

    def run_log(self, run: RunRef) -> str:
        """What the run's worker printed."""
        from .runs import log_file

        try:
            return log_file(self, self._run_record(run)["id"]).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def export_run(self, run: RunRef, folder: str | os.PathLike) -> Path:
        """Write a run's weights (a plain state dict) and config (spec, classes) to ``folder``.

        Load it anywhere with ``patientml_widgets.training.predictor.Predictor.load(folder)``.
        """
        record = self._run_record(run)
        model = self._model_record(record["model_id"])
        info = {k: record[k] for k in ("id", "slug", "hyperparameters", "metrics", "snapshot")}
        meta = {k: model[k] for k in ("id", "name", "problem_type", "multi_label", "classes")}
        return self._predictor(record["id"]).export(folder, model=meta, run=info)

    def _predictor(self, run_id: str):
        """The run's network, loaded once per project object (weights_only)."""
        cache = self.__dict__.setdefault("_predictors", {})
        if run_id not in cache:
            from .runs import load_model_code
            from .training.predictor import Predictor
            from .training.spec import TrainSpec

            record = self._run_record(run_id)
            if not record.get("artifact_ref"):
                raise ValidationError(f"run {record['slug']} has no trained weights ({record['status']})")
            spec = TrainSpec.from_dict(record["spec"])
            factory = None
            if spec.architecture.startswith("code:"):
                factory = load_model_code(self, spec.architecture[5:])[0]
            weights = self._store.blobs.get(record["artifact_ref"])
            cache[run_id] = Predictor(spec, weights, record["classes"], factory)
        return cache[run_id]

    def predict(self, model: ModelRef, item: ExampleRef | np.ndarray) -> Prediction:
        """The deployed run's prediction for an example (cached per example and run) or an array."""
        record = self._model_record(model)
        run_id = record.get("champion_run_id")
        if not run_id:
            raise ValidationError(f"model {record['name']!r} has no deployed run yet; train and deploy one")
        example_id = None
        if isinstance(item, np.ndarray):
            image = imaging.read_image(item, max_pixels=self.max_image_pixels)
        else:
            ex = self._example_record(item)
            if ex["model_id"] != record["id"]:
                raise ValidationError(f"example {ex['id']} belongs to another model")
            example_id = ex["id"]
            cached = self._store.get("predictions", f"{run_id}:{example_id}")
            if cached is not None:
                return self._prediction(record, cached)
            image = self.image(example_id)
        predictor = self._predictor(run_id)
        proba = predictor.predict(image)
        indices = predictor.class_indices
        entry: dict[str, Any] = {"run_id": run_id, "example_id": example_id, "model_id": record["id"], "created": now()}
        if record["problem_type"] == "segmentation":
            top = proba.max(axis=0)
            mask = np.asarray(indices, dtype=np.uint8)[proba.argmax(axis=0)]
            entry["uncertainty"] = float(1 - top.mean())
            entry["probabilities"] = [float(p) for p in proba.reshape(len(indices), -1).mean(axis=1)]
            entry["_mask"] = mask
        else:
            p = proba.astype(float)
            uncertainty = float(np.mean(1 - np.abs(2 * p - 1))) if record["multi_label"] else float(1 - p.max())
            entry["uncertainty"] = uncertainty
            entry["probabilities"] = [float(v) for v in p]
        if example_id is not None:
            stored = {k: v for k, v in entry.items() if k != "_mask"}
            png = imaging.encode_mask_png(entry["_mask"]) if "_mask" in entry else None
            with self._write():
                if png is not None:
                    stored["mask_ref"] = self._store.put_blob(png, "png")
                self._store.put("predictions", f"{run_id}:{example_id}", stored)
        return self._prediction(record, entry)

    def _prediction(self, model: dict[str, Any], entry: dict[str, Any]) -> Prediction:
        predictor = self._predictor(entry["run_id"])
        names = [c["name"] for c in predictor.classes]
        mask = entry.get("_mask")
        if mask is None and entry.get("mask_ref"):
            mask = imaging.decode_mask_png(self._store.blobs.get(entry["mask_ref"]))
        return Prediction(
            run_id=entry["run_id"],
            example_id=entry.get("example_id"),
            probabilities=dict(zip(names, entry["probabilities"])),
            uncertainty=entry["uncertainty"],
            mask=mask,
        )

    def _label_at(self, example_id: str, version: int) -> dict[str, Any] | None:
        """The audit event that wrote ``version`` of an example's label (what a snapshot froze)."""
        return next((e for e in self.history(example_id) if e["version"] == version), None)

    def _maybe_retrain(self, model_id: str) -> None:
        record = self._model_record(model_id)
        after = (record.get("retrain") or {}).get("after_labels")
        if not after:
            return
        runs = sorted((r for r in self._store.records("runs") if r["model_id"] == model_id), key=lambda r: r["created"])
        if any(r["status"] in ("queued", "running") for r in runs):
            return
        used = {tuple(item) for r in runs[-1:] for items in r["snapshot"].values() for item in items}
        fresh = [item for items in self.snapshot(model_id).values() for item in items if tuple(item) not in used]
        if len(fresh) >= after:
            try:
                self.train(model_id, trigger=f"retrain policy: {len(fresh)} new labels")
            except PatientMLError as e:  # the label is saved; say why no run started, do not fail the submit
                warnings.warn(f"the retrain policy of {record['name']!r} could not start a run: {e}", stacklevel=3)


def _check_precision(model: dict[str, Any], hyperparameters: dict[str, Any] | None) -> None:
    """Refuse, before a run is recorded, a precision this machine cannot train in (fp16 without CUDA)."""
    from .training import hardware

    precision = {**((model.get("training") or {}).get("hyperparameters") or {}), **(hyperparameters or {})}.get(
        "precision", "auto"
    )
    try:
        hardware.detect(str(precision))
    except ValueError as e:
        raise ValidationError(str(e)) from None


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _clean_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"a {what} must be a non-empty string, not {value!r}")
    value = value.strip()
    if len(value) > 200:
        raise ValidationError(f"a {what} must be at most 200 characters")
    return value


def _class_records(classes: Sequence[str | dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Class records in the given order, and the retired placeholders for indices left out."""
    specs = [{"name": c} if isinstance(c, str) else dict(c) for c in classes]
    given = ["index" in c for c in specs]
    if not any(given):
        return [_class_record(i, c) for i, c in enumerate(specs)], []
    if not all(given):
        raise ValidationError("give an index for every class or for none")
    try:
        indices = [int(c.pop("index")) for c in specs]
    except (TypeError, ValueError):
        raise ValidationError("class indices are integers") from None
    if len(set(indices)) != len(indices) or not all(0 <= i <= 255 for i in indices):
        raise ValidationError(f"class indices must be distinct and within 0-255, not {indices}")
    records = [_class_record(i, c) for i, c in zip(indices, specs, strict=True)]
    retired = [
        {"index": i, "name": f"(retired {i})", "color": PALETTE[i % len(PALETTE)], "description": ""}
        for i in range(max(indices))
        if i not in set(indices)
    ]
    return records, retired


def _class_record(index: int, spec: str | dict[str, Any]) -> dict[str, Any]:
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    unknown = set(spec) - {"name", "color", "description"}
    if unknown:
        raise ValidationError(f"a class has name, color and description, not {sorted(unknown)}")
    color = spec.get("color") or PALETTE[index % len(PALETTE)]
    if not _COLOR.match(str(color)):
        raise ValidationError(f"class colors are written #rrggbb, not {color!r}")
    return {
        "index": index,
        "name": _clean_name(spec.get("name"), "class name"),
        "color": str(color).lower(),
        "description": str(spec.get("description") or ""),
    }


def _check_class_names(names: list[str]) -> None:
    seen = set()
    for name in names:
        if name.casefold() in seen:
            raise ValidationError(f"class name {name!r} is given twice")
        seen.add(name.casefold())


def _class_indices(model: Model, classes: Any) -> list[int]:
    items = [classes] if isinstance(classes, (str, int, np.integer)) else list(classes)
    try:
        indices = sorted({model.class_index(int(c) if isinstance(c, np.integer) else c) for c in items})
    except NotFoundError as e:
        raise ValidationError(str(e)) from None
    if not model.multi_label and len(indices) != 1:
        raise ValidationError(f"model {model.name!r} takes exactly one class per example, got {items!r}")
    return indices


def _label_event(action: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "time": new["updated"],
        "actor": new["author"],
        "action": action,
        "example_id": new["example_id"],
        "model_id": new["model_id"],
        "version": new["version"],
        "previous_version": old["version"] if old else None,
        "status": new["status"],
        "classes": new["classes"],
        "mask_ref": new["mask_ref"],
        "source": new["source"],
        "kind": new["kind"],
        "time_spent": new.get("time_spent"),
        "created": new["created"],
    }


def _json_clean(value: Any, what: str) -> Any:
    """A JSON copy of ``value`` (numpy numbers become numbers), or a ValidationError before anything is written."""
    try:
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
    except TypeError as e:
        raise ValidationError(f"{what} must hold JSON values (text, numbers, lists, dicts): {e}") from None


def _import_key(image_ref: str, source: dict[str, Any]) -> tuple[Any, ...]:
    """The same pixels from the same file (and frame) are the same example: imports can be rerun."""
    return (image_ref, source.get("file"), source.get("frame"))


def _dicom_subject_info(header: imaging.DicomHeader) -> dict[str, Any]:
    """What a DICOM header says about its patient: PatientID as an external id, the name as metadata."""
    info: dict[str, Any] = {"external_ids": {}, "metadata": {}}
    if header.patient_id:
        info["external_ids"]["PatientID"] = header.patient_id
    if header.patient_name:
        info["metadata"]["PatientName"] = header.patient_name
    return info


def _import_label(entry: imports.Entry, model: Model, fields: dict[str, Any]) -> dict[str, Any]:
    """An index row's label, checked against the image and the model before anything is written."""
    spec = dict(entry.label or {})
    shape = (fields["height"], fields["width"])
    if model.problem_type == "segmentation":
        if "mask" not in spec:
            raise ValidationError(f"{entry.rel}: a segmentation label needs a mask column")
        mask = spec["mask"]
        if not isinstance(mask, np.ndarray):
            mask = imaging.read_mask_file(mask, name=Path(mask).name)
        spec["mask"] = imaging.validate_mask(mask, shape, [c.index for c in model.classes])
        spec.pop("classes", None)
    else:
        if "classes" not in spec:
            raise ValidationError(f"{entry.rel}: a classification label needs a classes column")
        names = set(model.class_names)
        refs = [int(c) if isinstance(c, str) and c.isdigit() and c not in names else c for c in spec["classes"]]
        spec["classes"] = _class_indices(model, refs)
        spec.pop("mask", None)
    return spec
