"""The facade users script against: ``Project.open(path)`` and ``Project.demo()``.

Everything a widget can do goes through here: models and their classes, subjects,
examples, labels (draft / submitted / deleted, with an audit trail), runs, predictions
and the orders built on them. Each method documents, coerces its arguments and makes one
call into the layer below: the session (``session.py``: store, commits, events, lookups,
writers), files in and out (``exchange/``), the kernel side of runs (``runs.py``) and
predictions (``predictions.py``). Each change is committed durably before the call
returns, then observers are told.
"""

from __future__ import annotations

import inspect
import json
import os
import textwrap
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import demo as demo_data
from . import imaging, model_code, reading, team
from .arguments import choice as _choice
from .arguments import flag as _flag
from .arguments import integer as _integer
from .arguments import mapping as _mapping
from .arguments import number as _number
from .arguments import path as _path
from .arguments import sequence as _sequence
from .errors import NotFoundError, PermissionDenied, ValidationError
from .exchange import Importer, ImportReport, export_labels, export_snapshot
from .policy import RULES
from .predictions import Predictions
from .query import ExampleIndex
from .reading import QUEUE_STATES
from .records import Change, Example, Label, Model, ModelCode, Prediction, QueueEntry, Run, Subject, split_for
from .records import clean_name as _clean_name
from .records import clean_text as _clean_text
from .runs import RunHandle, Runs
from .session import SORT_KEYS as _STORED_SORTS
from .session import ExampleRef, ModelRef, RunRef, Session
from .store import Store, VacuumReport
from .training.metrics import OBJECTIVE_CHOICES as _OBJECTIVES
from .trust import TrustStore

__all__ = ["SORT_KEYS", "ImportReport", "Project", "split_for"]

#: the orders :meth:`Project.examples` knows; ``uncertainty`` needs a deployed run
SORT_KEYS = (*_STORED_SORTS, "uncertainty")


class Project:
    """A labeling project in one folder. Safe to share between processes and kernels."""

    def __init__(self, store: Store, *, user: str | None = None, max_image_pixels: int | None = None) -> None:
        asked = _clean_name(user, "user name") if user is not None else None
        members = bool(store.records("members"))
        self._session = Session(
            store,
            user=_clean_name(team.identity(asked, members=members), "user name"),
            max_image_pixels=max_image_pixels,
        )
        if members:
            self._session.role()  # a non-member is told so on open
        self._importer = Importer(self._session)
        self._runs = Runs(self._session)
        self._predictions = Predictions(self._session)

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
        if max_image_pixels is not None:
            max_image_pixels = _integer(max_image_pixels, "max_image_pixels", minimum=1)
        return cls(
            Store(_path(path, "the project folder"), create=create), user=user, max_image_pixels=max_image_pixels
        )

    @classmethod
    def demo(cls, path: str | os.PathLike | None = None, *, fresh: bool = False, user: str | None = None) -> Project:
        """A ready demo project (built offline and deterministically on first use, then reused)."""
        target = demo_data.ensure_demo(
            path, lambda folder: demo_data.fill_demo(cls.open(folder, user="demo")), fresh=fresh
        )
        return cls.open(target, create=False, user=user)

    @property
    def path(self) -> Path:
        return self._session.path

    @property
    def user(self) -> str:
        """Who this project object acts as (recorded on every label and audit event): on JupyterHub the hub's
        user (``JUPYTERHUB_USER``), else the name given to ``open``, else the OS user (:mod:`.team`).
        """
        return self._session.user

    @user.setter
    def user(self, value: str) -> None:
        members = bool(self._session.member_records())
        name = _clean_name(team.identity(_clean_name(value, "user name"), members=members), "user name")
        if members:
            self._session.role(name)  # a member, or PermissionDenied
        self._session.user = name

    # -- members and roles ---------------------------------------------------------------

    @property
    def role(self) -> str | None:
        """The current user's role (``labeler``, ``reviewer``, ``developer``, ``owner``); None when the project
        has no member list (then everyone may do everything, as before).
        """
        return self._session.role()

    def can(self, role: str) -> bool:
        """Whether the current user may do what ``role`` may (views use it to hide what they may not)."""
        return team.allows(self._session.role(), role)

    def members(self) -> dict[str, str]:
        """The member list: {user: role} ({} when the project has none)."""
        return {u: str(r["role"]) for u, r in sorted(self._session.member_records().items())}

    def add_member(self, user: str, role: str = "labeler") -> dict[str, str]:
        """Add ``user`` with ``role`` or change their role (owners only). The project's first member list
        makes you its owner too, so that nobody is locked out. Returns the member list.
        """
        self._session.set_member(_clean_name(user, "user name"), _choice(role, team.ROLES, "role"))
        return self.members()

    def remove_member(self, user: str) -> dict[str, str]:
        """Take ``user`` off the member list (owners only; never the last owner). Returns the member list."""
        self._session.remove_member(_clean_name(user, "user name"))
        return self.members()

    @property
    def max_image_pixels(self) -> int | None:
        """The most pixels an added image may have (None: ``imaging.DEFAULT_MAX_PIXELS``)."""
        return self._session.max_image_pixels

    @max_image_pixels.setter
    def max_image_pixels(self, value: int | None) -> None:
        self._session.max_image_pixels = None if value is None else int(value)

    @property
    def session(self) -> Session:
        """The layer below: store handle, commits, change events, record lookups and writers."""
        return self._session

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    # -- events ------------------------------------------------------------------------

    def observe(self, callback: Callable[[Change], Any]) -> Callable[[Change], Any]:
        """Call ``callback(change)`` after every committed change (usable as a decorator)."""
        self._session.on_change(callback)
        return callback

    def unobserve(self, callback: Callable[[Change], Any]) -> None:
        """Stop calling ``callback`` (no error if it was not observing)."""
        self._session.on_change(callback, remove=True)

    def on_change(self, callback: Callable[[Change], Any], remove: bool = False) -> None:
        """Call ``callback(change)`` after every committed change; ``remove=True`` stops it."""
        self._session.on_change(callback, remove=remove)

    def poll(self) -> bool:
        """Pick up changes made by other processes; tells observers (kind ``external``) if any.

        Also fails the runs whose worker on this machine is gone (the kernel that started it died).
        """
        self._runs.reap()
        return self._session.poll()

    @contextmanager
    def batch(self) -> Iterator[Project]:
        """Group many changes into one transaction: one lock, one commit, then the events.

        If the block raises, none of its changes are kept.
        """
        with self._session.write():
            yield self

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
        return self._session.create_model(
            name, problem_type=problem_type, classes=classes, description=description, multi_label=multi_label
        )

    def models(self) -> list[Model]:
        """All models, oldest first."""
        return [Model.from_record(r) for r in self._session.model_records()]

    def model(self, ref: ModelRef) -> Model:
        """A model by id, name, or (refreshed) Model."""
        return Model.from_record(self._session.model_record(ref))

    def rename_model(self, model: ModelRef, name: str) -> Model:
        return self._session.update_model(model, name=_clean_name(name, "model name"))

    def describe_model(self, model: ModelRef, description: str) -> Model:
        return self._session.update_model(model, description=_clean_text(description, "model description"))

    def add_class(self, model: ModelRef, name: str, *, color: str | None = None, description: str = "") -> Model:
        """Add a class; it gets a fresh index (never one a removed class had)."""
        return self._session.add_class(model, name, color=color, description=description)

    def remove_class(self, model: ModelRef, ref: int | str) -> Model:
        """Retire a class. Refused while a label uses it; its index is never given out again."""
        return self._session.remove_class(model, ref)

    def delete_model(self, model: ModelRef) -> None:
        """Delete a model with its examples and labels (the audit trail keeps the history)."""
        self._session.delete_model(model)

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
        return self._session.put_subject(subject_id, name=name, external_ids=external_ids, tags=tags, metadata=metadata)

    def subjects(self) -> list[Subject]:
        return [Subject.from_record(r) for r in self._session.subject_records()]

    def subject(self, subject_id: str) -> Subject:
        return Subject.from_record(self._session.subject_record(subject_id))

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
        return self._importer.add_examples(model, [image], subjects=[subject], splits=[split], sources=[source])[0]

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
        images = _sequence(images, "images")
        return self._importer.add_examples(model, images, subjects=subjects, splits=splits, sources=sources)

    def add_volume(
        self,
        model: ModelRef,
        volume: Any,
        *,
        spacing: Sequence[float] | None = None,
        affine: Any = None,
        subject: str | None = None,
        split: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> Example:
        """Add one CT/MR volume: a folder holding one DICOM series, a NIfTI file, or a 3-D array.

        The array is (slices, rows, columns) with ``spacing`` (dz, dy, dx) in mm or a 4 x 4 ``affine``
        from (column, row, slice) indices to RAS+ mm (neither: 1 mm voxels). A DICOM series is
        stacked along the slice normal with its geometry from the headers (and is refused, saying
        why, when slices are missing, two share a position, the steps are uneven, or the sizes or
        orientations differ); a NIfTI file keeps its affine. Values are kept losslessly (Hounsfield
        units as int16); the volume is stored compressed, slice by slice. Its label is a
        (slices, rows, columns) mask: ``submit_label(ex, mask=mask3d)``.
        """
        if isinstance(volume, str | os.PathLike):
            volume = _path(volume, "volume")
        return self._importer.add_volume(
            model, volume, spacing=spacing, affine=affine, subject=subject, split=split, source=source
        )

    def add_folder(
        self,
        model: ModelRef,
        folder: str | os.PathLike,
        *,
        index: str | os.PathLike | None = None,
        subject_from: str | Callable[[Path], str | None] = "auto",
        split_from: str = "auto",
        recursive: bool = True,
        volumes: bool = False,
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

        ``volumes=True``: each DICOM series of two or more slices becomes one volume (a series
        mixing slice sizes or orientations is split into parts, a part of one image stays a 2-D
        example; a series that cannot be stacked is skipped whole with the reason), and NIfTI
        files (.nii, .nii.gz) are volumes, with a NIfTI ``mask`` in an index imported as the label.

        ``subject_from``: ``"auto"`` (the CSV's subject, else DICOM PatientID, else the parent
        folder), ``"folder"``, ``"dicom"``, ``"none"``, or a function of the file's path.
        ``split_from``: ``"auto"`` (the CSV's split, else a train/val/test folder on the path,
        else the hash of the subject) or ``"hash"``.
        A .zip archive unpacks into a scratch folder inside the project: at most half the free
        space on the project's disk (never over 64 GiB), else nothing is imported; members that
        cannot be unpacked safely (a name that leaves the folder or is too long, a clash, a link,
        encryption, damage, a member over 4 MiB compressed beyond 200:1) are skipped with the reason.
        Unreadable files are skipped and reported with the reason; the rest imports, ``chunk``
        examples per transaction, so an interrupted import keeps what it did (and a rerun adds
        only what is new). ``progress(done, total)`` is called after each file (e.g. to move a
        progress bar).
        """
        folder = _path(folder, "folder")
        index = None if index is None else _path(index, "index")
        if not (callable(subject_from) or isinstance(subject_from, str)):
            raise ValidationError(f"subject_from is a name of a rule or a function of the path, not {subject_from!r}")
        if progress is not None and not callable(progress):
            raise ValidationError("progress is a function progress(done, total), or None")
        report = self._importer.add_folder(
            model, folder, index=index, subject_from=subject_from, split_from=split_from,
            recursive=_flag(recursive, "recursive"), volumes=_flag(volumes, "volumes"),
            chunk=_integer(chunk, "chunk", minimum=1), progress=progress,
        )  # fmt: skip
        if report.labels:
            self._runs.maybe_retrain(self._session.model_record(model)["id"])
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
        plan = self._session.reading_plan(model)
        if plan["readers"] > 1 and plan["blind"] and not self.can("reviewer"):
            raise PermissionDenied(
                f"exporting the labels of a model read blind needs the reviewer role ({self.user} is a "
                f"{self.role}): they are made from readings a reader may not see before their own"
            )
        return export_labels(
            self._session, model, _path(folder, "folder"), layout=layout, include_drafts=include_drafts,
            include_subjects=include_subjects, include_metadata=include_metadata,
        )  # fmt: skip

    def export_snapshot(self, run: RunRef, folder: str | os.PathLike, *, include_subjects: bool = True) -> Path:
        """Write the exact label versions a run's snapshot froze, with the images, as an export folder."""
        return export_snapshot(
            self._session,
            self._session.run_record(run)["id"],
            _path(folder, "folder"),
            include_subjects=include_subjects,
        )

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
        return self._importer.import_dataset(_path(folder, "folder"), name=name)

    # -- reading examples ------------------------------------------------------------------

    def example(self, ref: ExampleRef) -> Example:
        return self._session.example(ref)

    def examples(
        self,
        model: ModelRef,
        *,
        status: str | Iterable[str] | None = None,
        subject: str | None = None,
        split: str | None = None,
        review: str | Iterable[str] | None = None,
        sort: str = "created",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Example]:
        """The model's examples, filtered, sorted and paged.

        ``status``: ``"unlabeled"``, ``"draft"``, ``"labeled"`` or several of them. ``review``: ``"none"``
        (not reviewed), ``"accepted"``, ``"returned"`` or several of them.
        ``sort``: one of ``created, updated, label_updated, status, subject_id, split, id, source``
        (``source``: by subject, then DICOM series in slice order, else by file path), or
        ``uncertainty``: the deployed run's least sure first, every tenth place drawn at random
        from the surer half (so the queue does not show only one kind of case); it uses the
        predictions the worker stored after deploying the run, and predicts what is missing
        (kept in this project object's memory: a query never writes).
        """
        _choice(sort, SORT_KEYS, "sort")
        descending = _flag(descending, "descending")
        offset = _integer(offset, "offset", minimum=0)
        limit = None if limit is None else _integer(limit, "limit", minimum=0)
        filters: dict[str, Any] = {"status": status, "subject": subject, "split": split, "review": review}
        if sort == "uncertainty":
            ids = self._predictions.uncertainty_order(model, self._session.example_ids(model, **filters))
            ids = ids[::-1] if descending else ids
            return self._session.examples_by_id(ids[offset : None if limit is None else offset + limit])
        cols, rows = self._session.select(model, **filters)
        rows = ExampleIndex.order(cols, rows, sort, descending, None if limit is None else offset + limit)
        page = rows[offset : None if limit is None else offset + limit]
        return self._session.examples_at(cols, page)

    def count_examples(self, model: ModelRef, **filters: Any) -> int:
        """How many examples :meth:`examples` would list with these filters (no paging)."""
        return len(self._session.select(model, **filters)[1])

    def status_counts(self, model: ModelRef) -> dict[str, int]:
        """``{"unlabeled": n, "draft": n, "labeled": n}`` for the model."""
        return self._session.status_counts(model)

    def disagreements(self, model: ModelRef, *, sort: str = "created", descending: bool = False) -> list[Example]:
        """The labeled examples whose deployed-run prediction disagrees with the submitted label.

        Classification: other classes. Segmentation: a foreground Dice below 0.8 between the
        predicted mask and the label (a volume's over all its voxels). Uses the predictions stored
        after deploy (and predicts what is missing, in memory); ``sort`` as in :meth:`examples`
        (not ``uncertainty``).
        """
        _choice(sort, _STORED_SORTS, "sort")
        descending = _flag(descending, "descending")
        ids = self._session.example_ids(model, status="labeled", sort=sort, descending=descending)
        return self._session.examples_by_id(self._predictions.disagreeing(model, ids))

    def delete_example(self, example: ExampleRef) -> None:
        """Delete an example and its label (the audit trail keeps the history)."""
        self._session.delete_example(example)

    def image(self, example: ExampleRef) -> np.ndarray:
        """The example's image as stored (16-bit stays 16-bit)."""
        return self._session.image(example)

    def image_slice(self, example: ExampleRef, index: int) -> np.ndarray:
        """Slice ``index`` (0-based, along the volume's first axis) of a volume, decoding only that slice."""
        return self._session.image_slice(example, _integer(index, "index", minimum=0))

    def volume(self, example: ExampleRef) -> imaging.StoredVolume:
        """A volume example's image to read as needed: ``.slice(k)`` decodes one slice, ``.load()`` all of it."""
        return self._session.stored_volume(example)

    def thumbnail(self, example: ExampleRef) -> bytes:
        """A JPEG preview of the example (cached in the project when the example was added)."""
        ref = (
            example.thumbnail_ref
            if isinstance(example, Example)
            else self._session.example_record(example)["thumbnail_ref"]
        )
        return self._session.blob(ref)

    # -- labels ------------------------------------------------------------------------

    def label(self, example: ExampleRef) -> Label | None:
        """The example's current label (draft or submitted), or None."""
        return self._session.label(example)

    def mask(self, example: ExampleRef) -> np.ndarray | None:
        """The current label's mask (uint8 class indices), or None."""
        label = self.label(example)
        if label is None or label.mask_ref is None:
            return None
        return self._session.mask_blob(label.mask_ref)

    def label_to_edit(self, example: ExampleRef) -> Label | None:
        """The label the current user edits: their reading of an example read by several (an ``assigned``
        one before they begin; None if it is not assigned to them), else the example's label.
        """
        if self._session.reading_plan(self.example(example).model_id)["readers"] > 1:
            return self._session.reading_of(example)
        return self.label(example)

    def mask_to_edit(self, example: ExampleRef) -> np.ndarray | None:
        """The mask of :meth:`label_to_edit` (uint8 class indices), or None."""
        label = self.label_to_edit(example)
        if label is None or label.mask_ref is None:
            return None
        return self._session.mask_blob(label.mask_ref)

    def save_label(
        self,
        example: ExampleRef,
        *,
        mask: np.ndarray | None = None,
        classes: Any = None,
        author: str | None = None,
        time_spent: float | None = None,
        source: str = "human",
        made_with: dict[str, Any] | None = None,
    ) -> Label:
        """Save a draft: kept and shown, never used for training until submitted.

        ``time_spent``: seconds spent labeling; ``made_with``: how the label was made (the canvas records
        edits per tool, and per interactive engine the proposals accepted and the clicks they took).
        """
        return self._session.write_label(
            example, "draft", mask=mask, classes=classes, author=author, time_spent=time_spent, source=source,
            made_with=made_with,
        )  # fmt: skip

    def submit_label(
        self,
        example: ExampleRef,
        *,
        mask: np.ndarray | None = None,
        classes: Any = None,
        author: str | None = None,
        time_spent: float | None = None,
        source: str = "human",
        made_with: dict[str, Any] | None = None,
    ) -> Label:
        """Confirm a label; the next training run will use it. Without a mask or
        classes, the current draft is submitted as it is. ``time_spent`` and ``made_with``: as in
        :meth:`save_label`.
        """
        label = self._session.write_label(
            example, "submitted", mask=mask, classes=classes, author=author, time_spent=time_spent,
            source=source, made_with=made_with,
        )  # fmt: skip
        if not self._session.in_batch:
            self._runs.maybe_retrain(label.model_id)
        return label

    def delete_label(self, example: ExampleRef, *, author: str | None = None) -> None:
        """Delete the example's label; it becomes unlabeled (the history stays in the audit trail)."""
        self._session.delete_label(example, author=author)

    # -- several readers per example ------------------------------------------------------

    @staticmethod
    def _reader(reader: Any) -> str | None:
        return None if reader is None else _clean_name(reader, "reader")

    def configure_reading(
        self,
        model: ModelRef,
        *,
        readers: int | None = None,
        assign: str | None = None,
        pool: Sequence[str] | None = None,
        blind: bool | None = None,
        consensus: str | None = None,
        train_on: str | None = None,
    ) -> Model:
        """How the model's examples are read (developers and up; None keeps a setting).

        ``readers``: labels per example (1: one label, as without this); with two or more each assigned
        reader's label is a reading of its own, and the example's label is their consensus once ``readers``
        readings are submitted, or what a reviewer adjudicates. ``assign``: ``"round_robin"`` over ``pool``
        (every example, and each one added later, gets ``readers`` of them in turn) or ``"list"``
        (:meth:`assign`). ``blind`` (default True): a reader sees the others' readings, and the example's
        label, only once their own is submitted. ``consensus``: ``"majority"`` (per pixel; classes by vote)
        or ``"staple"`` (masks). ``train_on``: ``"consensus"`` (every example's label), ``"adjudicated"``
        (only what a reviewer settled) or ``"reviewed"`` (only labels a reviewer accepted).
        """
        updates = {
            "readers": None if readers is None else _integer(readers, "readers", minimum=1),
            "assign": None if assign is None else _choice(assign, reading.ASSIGNMENTS, "assign"),
            "pool": None if pool is None else list(_sequence(pool, "pool")),
            "blind": None if blind is None else _flag(blind, "blind"),
            "consensus": None if consensus is None else _choice(consensus, reading.CONSENSUS, "consensus"),
            "train_on": None if train_on is None else _choice(train_on, reading.TRAIN_ON, "train_on"),
        }
        return self._session.configure_reading(model, updates)

    def reading_plan(self, model: ModelRef) -> dict[str, Any]:
        """The model's reading config (see :meth:`configure_reading`)."""
        return self._session.reading_plan(model)

    def assign(self, examples: Iterable[ExampleRef] | ExampleRef, readers: Iterable[str] | str) -> int:
        """Assign each of ``examples`` to each of ``readers`` (reviewers and up); how many readings are new."""
        examples = [examples] if isinstance(examples, str | Example) else list(_sequence(examples, "examples"))
        readers = [readers] if isinstance(readers, str) else list(_sequence(readers, "readers"))
        return self._session.assign(examples, readers)

    def queue(
        self,
        model: ModelRef,
        *,
        reader: str | None = None,
        state: str | Iterable[str] | None = None,
        sort: str = "created",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[QueueEntry]:
        """A reader's queue (the current user's by default): the examples assigned to them, each with where it
        stands (``"to do"``, ``"draft"``, ``"returned"``, ``"submitted"``, ``"accepted"``; ``state`` filters)
        and a returned reading's comment. ``sort`` and paging as in :meth:`examples` (not ``uncertainty``).
        """
        reader = self.user if reader is None else _clean_name(reader, "reader")
        _choice(sort, _STORED_SORTS, "sort")
        descending = _flag(descending, "descending")
        offset = _integer(offset, "offset", minimum=0)
        limit = None if limit is None else _integer(limit, "limit", minimum=0)
        cols, rows = self._session.select(model, reader=reader, queue=state)
        rows = ExampleIndex.order(cols, rows, sort, descending, None if limit is None else offset + limit)
        page = rows[offset : None if limit is None else offset + limit]
        states = cols.queue_states(self._session.model_record(model)["id"], reader)
        out = []
        for example, code in zip(self._session.examples_at(cols, page), states[page].tolist(), strict=True):
            state_name = QUEUE_STATES[code]
            comment = ""
            if state_name == "returned":
                mine = self._session.reading_of(example.id, reader) if reader == self.user else None
                comment = str(((mine.review if mine else None) or {}).get("comment", ""))
            out.append(QueueEntry(example, state_name, comment))
        return out

    def queue_counts(self, model: ModelRef, *, reader: str | None = None) -> dict[str, int]:
        """How many examples of each queue state a reader has (the current user by default)."""
        reader = self.user if reader is None else _clean_name(reader, "reader")
        cols, rows = self._session.select(model, reader=reader)
        codes = np.bincount(
            cols.queue_states(self._session.model_record(model)["id"], reader)[rows], minlength=len(QUEUE_STATES)
        )
        return {name: int(codes[i]) for i, name in enumerate(QUEUE_STATES)}

    def reading(self, example: ExampleRef, reader: str | None = None) -> Label | None:
        """One reader's reading of an example (the current user's by default; another's only once one's own
        is submitted, in a blind reading), or None if it is not assigned to them.
        """
        return self._session.reading_of(example, self._reader(reader))

    def readings(self, example: ExampleRef) -> list[Label]:
        """The example's readings the current user may see (in a blind reading: only their own until it is
        submitted).
        """
        return self._session.readings(example)

    def reading_mask(self, example: ExampleRef, reader: str | None = None) -> np.ndarray | None:
        """A reading's mask (uint8 class indices), or None."""
        found = self.reading(example, self._reader(reader))
        if found is None or found.mask_ref is None:
            return None
        return self._session.mask_blob(found.mask_ref)

    def review(self, example: ExampleRef, decision: str, comment: str = "", *, reader: str | None = None) -> None:
        """Accept (``"accept"``) or return (``"return"``, with a comment the reader sees in their queue) a
        submitted label (reviewers and up): the example's own, or one reader's reading (``reader``); returning
        an example read by several without ``reader`` returns every submitted reading of it.
        """
        self._session.review(example, decision, _clean_text(comment, "comment"), reader=self._reader(reader))

    def adjudicate(
        self,
        example: ExampleRef,
        *,
        reader: str | None = None,
        mask: np.ndarray | None = None,
        classes: Any = None,
        comment: str = "",
    ) -> Label:
        """Settle an example read by several (reviewers and up): one reader's label (``reader``) or an edited
        consensus (``mask`` / ``classes``) becomes the example's label, accepted.
        """
        label = self._session.adjudicate(
            example, reader=self._reader(reader), mask=mask, classes=classes, comment=_clean_text(comment, "comment")
        )
        if not self._session.in_batch:
            self._runs.maybe_retrain(label.model_id)
        return label

    def adjudication_queue(self, model: ModelRef) -> list[Example]:
        """The examples whose readings are in and that no reviewer has settled, least agreement first."""
        return self._session.examples_by_id(self._session.adjudication_queue(model))

    def agreement(self, model: ModelRef) -> dict[str, Any]:
        """How the model's readers agree: ``examples`` (id -> mean pairwise Dice, or share of agreeing reader
        pairs), ``pairs`` ("a / b" -> Dice and IoU for masks, Cohen's kappa for classes, and how many examples
        both read) and, for single-label classes, ``fleiss_kappa``.
        """
        return self._session.agreement_figures(model)

    def history(self, example: ExampleRef, *, reader: str | None = None) -> list[dict[str, Any]]:
        """The audit trail of one example's label (or of one reader's reading of it), oldest first."""
        key = example.id if isinstance(example, Example) else example
        if not isinstance(key, str):
            raise NotFoundError(f"not an example: {example!r}")
        reader = self._reader(reader)
        if reader is not None and reader != self.user:
            self._session.reading_of(key, reader)  # blind reading: refused before one's own submit
        elif reader is None and self._session.read().get("examples", key) is not None:
            self._session.label(key)  # the same rule for the label made from readings
        return self._session.history(key, reader)  # also of a deleted example: the audit trail keeps it

    def audit(self, model: ModelRef | None = None) -> list[dict[str, Any]]:
        """Every audit event (of one model, if given), oldest first."""
        return self._session.audit(self._session.model_record(model)["id"] if model is not None else None)

    def vacuum(self) -> VacuumReport:
        """Remove the stored files nothing refers to any more, and say how many bytes that freed.

        Images and thumbnails of deleted examples and models, and whatever a killed call
        wrote, go; every mask the audit trail refers to stays, so each label version can
        still be restored.
        """
        return self._session.vacuum()

    # -- runs --------------------------------------------------------------------------

    def snapshot(self, model: ModelRef) -> dict[str, list[list[Any]]]:
        """The submitted labels training would use now: ``{split: [[example_id, version], ...]}``."""
        return self._session.snapshot(model)

    def create_run(
        self, model: ModelRef, *, trigger: str = "manual", hyperparameters: dict[str, Any] | None = None
    ) -> Run:
        """Record a queued run over a frozen snapshot of the submitted labels."""
        hyperparameters = None if hyperparameters is None else _mapping(hyperparameters, "hyperparameters")
        return self._session.create_run(model, trigger=_clean_name(trigger, "trigger"), hyperparameters=hyperparameters)

    def runs(self, model: ModelRef) -> list[Run]:
        """The model's runs, oldest first."""
        return [Run.from_record(r) for r in self._session.run_records(self._session.model_record(model)["id"])]

    def run(self, run: RunRef) -> Run:
        return Run.from_record(self._session.run_record(run))

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
        rule: str | None = None,
        margin: float | None = None,
        subgroups: list[str] | None = None,
        operating_point: dict[str, float] | str | None = None,
        intended_use: str | None = None,
    ) -> Model:
        """Set how runs of this model train and when they are promoted; unset arguments stay as they are.

        ``budget`` is the time the optimisation steps may take (``"3 min"``, ``"90 s"``, seconds;
        0 or "" goes back to the machine's default: 3 min on a CPU, 10 min on a GPU); training
        stops earlier when the validation objective stops improving.
        ``hyperparameters`` override what the run's plan derives from the data and the machine
        (resolution ``image_size``, ``batch_size``, ``steps``, ``lr``, ``base_channels``, ``depth``,
        ``precision`` "auto" | "fp32" | "bf16" | "fp16", ``augment``, ``tta``, ``seed``, ``guidance``
        (True: the built-in U-Net on 2-D images also learns to follow clicks, for the labeler);
        see ``training.spec.TrainSpec``);
        ``search_space`` (with ``max_trials``) makes each run train several trials and keep
        the best on the validation split; ``auto_deploy`` deploys an approved run; ``model_code`` names code
        registered with :meth:`register_model_code` ("" for the built-in network).

        The promotion rule: ``objective`` / ``direction``, and ``rule``: ``"margin"`` (the default: the test
        objective beats the champion's by ``margin``), ``"superiority"`` (the paired 95% bootstrap interval of
        the difference over test subjects lies above ``margin``) or ``"non-inferiority"`` (above ``-margin``);
        with fewer than 10 test subjects the interval rules fall back to the margin rule, saying so
        (``min_margin`` is the older name of ``margin``). A subgroup where the run is worse than the champion
        beyond its interval rejects it; ``subgroups`` names the fields compared (default
        ``evaluation.SUBGROUP_FIELDS``: Manufacturer, Modality, InstitutionName, PatientSex, age bins, the
        subject's tags; also ``split_source`` or any key of an example's source or a subject's metadata;
        ``[]``: none). ``operating_point`` (classification) chooses per-class thresholds on the validation
        split that ``predict`` then uses: ``{"sensitivity": 0.9}``, ``{"specificity": 0.95}`` or
        ``"youden"`` ("" goes back to the most probable class). ``intended_use`` is the text the model card
        of every deployed run quotes.
        """
        from .training.search import validate_space
        from .training.spec import parse_budget

        # the checks in the order they always ran: the model, the space and budget, the promotion
        # rule, then (in the session) the model code and the hyperparameters
        with self._session.write():  # read and change in one commit: two kernels configuring lose nothing
            record = self._session.model_record(model)
            updates = {
                "hyperparameters": None if hyperparameters is None else _mapping(hyperparameters, "hyperparameters"),
                "search_space": validate_space(search_space) if search_space is not None else None,
                "max_trials": max_trials,
                "objective": objective,
                "direction": direction,
                "min_margin": min_margin,
                "auto_deploy": auto_deploy,
                "model_code": model_code,
                "budget_s": None if budget is None else parse_budget(budget),
                "rule": None if rule is None else _choice(rule, RULES, "rule"),
                "subgroups": None
                if subgroups is None
                else [_clean_name(f, "subgroup field") for f in _sequence(subgroups, "subgroups")],
                "operating_point": None if operating_point is None else _operating_point(operating_point),
                "intended_use": None if intended_use is None else _clean_text(intended_use, "intended_use"),
            }
            if margin is not None and min_margin is not None and margin != min_margin:
                raise ValidationError("margin and min_margin are one setting (min_margin its older name): pass one")
            min_margin = margin if margin is not None else min_margin
            updates["direction"] = _direction(record, objective, direction)
            if max_trials is not None:
                updates["max_trials"] = _integer(max_trials, "max_trials", minimum=1)
            if min_margin is not None:
                updates["min_margin"] = _number(min_margin, "margin")
            if auto_deploy is not None:
                updates["auto_deploy"] = _flag(auto_deploy, "auto_deploy")
            if model_code is not None:
                updates["model_code"] = _code_name(model_code)
            return self._session.configure_training(
                record["id"], updates, lambda record, config: _check_hyperparameters(record, config, hyperparameters)
            )

    def set_retrain_policy(self, model: ModelRef, *, after_labels: int | None) -> Model:
        """Start a run by itself once ``after_labels`` new labels were submitted since the last run.

        ``None``: runs start only on demand.
        """
        policy = {"after_labels": None if after_labels is None else _integer(after_labels, "after_labels", minimum=1)}
        return self._session.update_model(model, retrain=policy)

    def register_model_code(self, name: str, code: Any, *, factory: str | None = None, train_step: Any = None) -> None:
        """Register your own network (the notebook form of a model-code container).

        ``code`` is a factory function ``f(in_channels, num_classes) -> torch.nn.Module``,
        a module, a ``.py`` file or source text. The source is stored in the project and
        run in the training worker, so a function must do its own imports (or pass a module
        or file). ``train_step(model, images, targets, optimizer) -> float`` optionally
        replaces the built-in step (forward, loss, backward, optimizer step).
        """
        name = _clean_name(name, "model code name")
        source, factory, step_name = _model_source(code, factory, train_step)
        try:
            compile(source, f"<model code {name!r}>", "exec")
        except (SyntaxError, ValueError) as e:
            raise ValidationError(f"the model code does not compile: {e}") from None
        if f"def {factory}(" not in source:
            raise ValidationError(f"the model code defines no function {factory!r}; pass factory=")
        signed = model_code.signed(source.encode(), factory, step_name)
        TrustStore().trust(signed, name=name, project=self.path, trusted_by=self.user)  # yours: trusted
        self._session.register_code(name, source, factory=factory, train_step=step_name)

    def model_code(self, name: str) -> ModelCode:
        """Registered model code: its source, who registered it when, its file, and whether you trust it.

        A project folder can contain code: predicting with or training a model that uses it runs
        that Python. Only code you trust runs (code you registered is; a copied project's is not).
        """
        return ModelCode(**model_code.code_info(self._session, name))

    def trust_code(self, name: str) -> ModelCode:
        """Trust registered model code as it is stored now, after reading it (:meth:`model_code`).

        Trust belongs to you (kept in your data directory, never in the project) and to this
        exact source: if the stored source changes, it needs trusting again.
        """
        model_code.trust_code(self._session, name)
        return self.model_code(name)

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
        handle = self._runs.train(
            model, hyperparameters=hyperparameters, trigger=str(trigger), processes=int(processes),
            nodes=int(nodes), rendezvous=rendezvous,
        )  # fmt: skip
        handle.project = self
        return handle

    def cancel(self, run: RunRef) -> Run:
        """Stop a queued or running run (it ends as cancelled within about 2 s)."""
        return self._runs.cancel(run)

    def approve(self, run: RunRef, reason: str = "", *, actor: str | None = None) -> Run:
        """Record a person's approval of a run (deploying it is a separate step: :meth:`deploy`)."""
        return self._session.decide(run, "approve", reason, actor)

    def reject(self, run: RunRef, reason: str, *, actor: str | None = None) -> Run:
        """Record a person's rejection of a run, with the reason."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("a rejection needs a reason (text)")
        return self._session.decide(run, "reject", reason, actor)

    def deploy(self, run: RunRef, *, actor: str | None = None, reason: str = "") -> Model:
        """Make a succeeded run its model's champion: the deployed model that predicts."""
        return self._session.deploy(run, actor=actor, reason=reason)

    def run_log(self, run: RunRef) -> str:
        """What the run's worker printed."""
        return self._runs.log(run)

    def export_run(self, run: RunRef, folder: str | os.PathLike) -> Path:
        """Write a run's weights (a plain state dict), config (spec, classes) and model card (``model_card.md``
        and ``model_card.json``: the one written when it was deployed, else one made now) to ``folder``.

        Load it anywhere with ``patientml_widgets.training.predictor.Predictor.load(folder)``.
        """
        from . import model_card

        record = self._session.run_record(run)
        model = self._session.model_record(record["model_id"])
        info = {k: record[k] for k in ("id", "slug", "hyperparameters", "metrics", "snapshot")}
        info["thresholds"] = record.get("thresholds") or {}
        meta = {k: model[k] for k in ("id", "name", "problem_type", "multi_label", "classes")}
        out = self._predictions.predictor(record["id"]).export(_path(folder, "folder"), model=meta, run=info)
        card = record.get("model_card") or self._session.model_card(record["id"])
        (out / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
        (out / "model_card.md").write_text(model_card.markdown(card))
        return out

    # -- predictions -------------------------------------------------------------------

    def predict(self, model: ModelRef, item: ExampleRef | np.ndarray) -> Prediction:
        """The deployed run's prediction for an example (cached per example and run) or an array.

        A run trained on volumes predicts a volume example whole: ``mask`` is (slices, rows, columns),
        ``probabilities`` each class's mean over the voxels; it predicts no 2-D images (nor the other
        way round), and no bare arrays (their spacing is unknown: use ``predictor(run).predict_volume``).
        """
        return self._predictions.predict(model, item)

    def predictor(self, run: RunRef) -> Any:
        """Any trained run's network, loaded once (``weights_only``): ``.predict(image)`` gives class
        probabilities at the image's size; ``.class_indices`` says which class each row is; a run trained
        on volumes: ``.predict_volume(array, spacing)`` (class positions, mean probabilities, uncertainty);
        a run guided by clicks (``.guided``): ``.propose(image, prompts)``, the clicked object's probability
        (``interactive.ProjectModelEngine(predictor, run=slug)`` offers it as an interactive engine).
        """
        return self._predictions.predictor(self._session.run_record(run)["id"])


def _operating_point(point: Any) -> dict[str, float] | str:
    """A checked operating point; "" (stored as such) goes back to the most probable class."""
    from .evaluation import operating_point

    return "" if isinstance(point, str) and point == "" else operating_point(point)


def _direction(record: dict[str, Any], objective: str | None, direction: str | None) -> str | None:
    """The promotion rule's direction, checked with the objective against the model."""
    kind = "multi-label classification" if record.get("multi_label") else record["problem_type"]
    if objective is not None and (not isinstance(objective, str) or objective not in _OBJECTIVES[kind]):
        metrics = ", ".join(_OBJECTIVES[kind])
        raise ValidationError(f"objective {objective!r} is not a {kind} metric ({metrics})")
    if objective is not None and direction is None:
        direction = "min" if objective == "loss" else "max"  # lower loss is better
    if direction is not None:
        _choice(direction, ("max", "min"), "direction ('max': higher is better)")
    return direction


def _check_hyperparameters(
    record: dict[str, Any], config: dict[str, Any], hyperparameters: dict[str, Any] | None
) -> None:
    """Hyperparameters checked against the model (inside the commit that stores them)."""
    if hyperparameters is not None and not config.get("model_code"):
        from .training.spec import TrainSpec

        TrainSpec.build(record["problem_type"], hyperparameters, num_classes=len(record["classes"]))


def _code_name(name: Any) -> str:
    """A model code name as configure_training takes it ("" is the built-in network)."""
    return "" if isinstance(name, str) and not name else _clean_name(name, "model code name")


def _model_source(code: Any, factory: str | None, train_step: Any) -> tuple[str, str, str | None]:
    """The source text of model code given as a function, module, ``.py`` file or text."""
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
    factory = "build" if factory is None else factory
    if not isinstance(factory, str) or not factory.isidentifier():
        raise ValidationError(f"factory is the name of a function in the model code, not {factory!r}")
    if step_name is not None and not step_name.isidentifier():
        raise ValidationError(f"train_step is a function or its name in the model code, not {train_step!r}")
    return source, factory, step_name
