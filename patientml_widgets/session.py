"""The session layer: one open project's store handle, commits, change events, lookups and every writer.

:class:`~patientml_widgets.project.Project` (the facade users script against), the import and
export code (``exchange/``), the kernel side of runs (``runs.py``) and the training worker
(``worker.py``) are all clients of this one public interface. A writer checks its arguments,
takes the write lock, changes records through the store and emits a :class:`Change` naming
the tables it wrote; observers hear the changes after the commit (a ``batch`` tells them once
it has committed). Lookups return the store's own record dicts: read them, never change them.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import agreement, imaging, reading, team
from .arguments import choice, flag, sequence
from .errors import NotFoundError, PermissionDenied, StoreError, ValidationError
from .imaging import volumes
from .query import REVIEW_CODES, STATUS_CODES, ExampleIndex
from .records import (
    PROBLEM_TYPES,
    SPLITS,
    STATUSES,
    Change,
    Example,
    Label,
    Model,
    Run,
    Subject,
    check_class_names,
    class_indices,
    class_record,
    class_records,
    clean_name,
    clean_text,
    name_key,
    split_for,
)
from .store import Store, VacuumReport, now
from .store.store import shard_of

__all__ = ["SORT_KEYS", "ExampleRef", "ModelRef", "RunRef", "Session", "json_clean", "new_id"]

log = logging.getLogger(__name__)

SORT_KEYS = ("created", "updated", "label_updated", "status", "subject_id", "split", "id", "source")
#: the label status behind the index's status codes (unlabeled: no label, or a deleted one)
_LABEL_STATUS = {STATUS_CODES["draft"]: "draft", STATUS_CODES["labeled"]: "submitted"}
FINISHED = ("succeeded", "failed", "cancelled")

ModelRef = Model | str
ExampleRef = Example | str
RunRef = Run | str
Observer = Callable[[Change], Any]


def new_id(prefix: str) -> str:
    """A fresh random record id (``ex_1a2b3c4d5e6f``)."""
    return f"{prefix}_{secrets.token_hex(6)}"


def json_clean(value: Any, what: str) -> Any:
    """A JSON copy of ``value`` (numpy numbers become numbers), or a ValidationError before anything is written."""
    try:
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
    except TypeError as e:
        raise ValidationError(f"{what} must hold JSON values (text, numbers, lists, dicts): {e}") from None


class Session:
    """One open project: the store, its commits and change events, lookups and writers."""

    def __init__(self, store: Store, *, user: str, max_image_pixels: int | None = None, system: bool = False) -> None:
        self.store = store
        self.user = user
        #: a session of the package's own processes (a run's worker): roles are checked where the work was asked for
        self.system = system
        self._system_depth = 0
        self.max_image_pixels = max_image_pixels
        self.index = ExampleIndex(store)
        self._observers: list[Observer] = []
        self._pending: list[Change] = []
        self._depth = 0
        self._lock = threading.RLock()  # one writer thread at a time; events go to the right batch
        self._seen_external = store.external_changes

    @property
    def path(self) -> Path:
        return self.store.root

    # -- change events -----------------------------------------------------------------

    @property
    def observers(self) -> tuple[Observer, ...]:
        """The callbacks that hear every committed change."""
        return tuple(self._observers)

    def on_change(self, callback: Observer, remove: bool = False) -> None:
        """Call ``callback(change)`` after every committed change (``remove=True`` stops it; no error if absent)."""
        if not remove:
            self._observers.append(callback)
        elif callback in self._observers:
            self._observers.remove(callback)

    def poll(self) -> bool:
        """Pick up other processes' commits; tells observers (kind ``external``, with the tables moved) if any."""
        self.store.refresh()
        if self.store.external_changes == self._seen_external:
            return False
        self._seen_external = self.store.external_changes
        self._dispatch([Change("external", tables=tuple(sorted(self.store.take_moved())))])
        return True

    def _dispatch(self, changes: list[Change]) -> None:
        for change in changes:
            for callback in list(self._observers):
                try:
                    callback(change)
                except Exception as e:  # a broken observer must not undo or hide a committed change
                    log.exception("project observer %r failed on %r", callback, change)
                    warnings.warn(f"project observer {callback!r} failed on {change.kind}: {e!r}", stacklevel=4)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One transaction (nested calls join the outer one): one lock, one commit, then the events."""
        with self._lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                with self.store.transaction():
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

    @property
    def in_batch(self) -> bool:
        """Whether a write is open on this thread's session (its changes commit when the outermost ends)."""
        return self._depth > 0

    def emit(self, change: Change) -> None:
        """Queue a change event; observers hear it after the transaction commits."""
        self._pending.append(change)

    def read(self) -> Store:
        """The store at the latest commit (other processes' commits picked up)."""
        self.store.refresh()
        return self.store

    # -- members and roles --------------------------------------------------------------

    def member_records(self) -> dict[str, dict[str, Any]]:
        """The project's members by user name ({} for a project without a member list)."""
        return {r["user"]: r for r in self.read().records("members")}

    def role(self, user: str | None = None) -> str | None:
        """``user``'s role (the current user's by default); None when the project has no member list.

        A user missing from a list has no role: PermissionDenied.
        """
        user = self.user if user is None else user
        members = self.member_records()
        if not members:
            return None
        if user not in members:
            raise PermissionDenied(
                f"{user} is not a member of the project in {self.path}; an owner can add them "
                f"(project.add_member({user!r}, 'labeler'))"
            )
        return str(members[user]["role"])

    def require(self, needed: str, doing: str) -> None:
        """Refuse ``doing`` unless the current user's role is at least ``needed`` (call inside ``write()``, so
        the member list is the latest commit's). The worker and the retrain policy (:meth:`as_system`) pass.
        """
        if self.system or self._system_depth:
            return
        team.require(self.user, self.role(), needed, doing)

    @contextmanager
    def as_system(self) -> Iterator[None]:
        """Act for a rule someone with the role set up (the retrain policy): roles are not checked again."""
        with self._lock:
            self._system_depth += 1
            try:
                yield
            finally:
                self._system_depth -= 1

    def set_member(self, user: str, role: str) -> dict[str, Any]:
        """Add ``user`` with ``role``, or change their role (owners only). The first member list makes the
        current user its owner as well, so that nobody is locked out; the last owner cannot step down.
        """
        user = clean_name(user, "user name")
        team.rank(role)
        with self.write():
            members = self.member_records()
            stamp = now()
            if members:
                self.require("owner", "managing members")
            elif user != self.user or role != "owner":  # a new list: its maker owns it
                self._put_member(self.user, "owner", stamp)
            if members.get(user, {}).get("role") == "owner" and role != "owner":
                self._keep_an_owner(members, user)
            record = self._put_member(user, role, stamp, members.get(user))
            self.emit(Change("members_changed", tables=("members",)))
        return record

    def remove_member(self, user: str) -> None:
        """Take ``user`` off the member list (owners only; never the last owner)."""
        with self.write():
            members = self.member_records()
            if user not in members:
                raise NotFoundError(f"{user!r} is not a member of this project")
            self.require("owner", "managing members")
            if members[user]["role"] == "owner":
                self._keep_an_owner(members, user)
            self.store.delete("members", user)
            self.store.log({"time": now(), "actor": self.user, "action": "remove_member", "user": user})
            self.emit(Change("members_changed", tables=("members",)))

    def _put_member(self, user: str, role: str, stamp: str, old: dict[str, Any] | None = None) -> dict[str, Any]:
        record = {"user": user, "role": role, "added": (old or {}).get("added", stamp), "added_by": self.user}
        self.store.put("members", user, record)
        self.store.log({"time": stamp, "actor": self.user, "action": "set_member", "user": user, "role": role})
        return record

    @staticmethod
    def _keep_an_owner(members: dict[str, dict[str, Any]], leaving: str) -> None:
        if not any(u != leaving and r["role"] == "owner" for u, r in members.items()):
            raise ValidationError(f"{leaving} is the project's last owner; make someone else an owner first")

    # -- lookups -----------------------------------------------------------------------

    def model_record(self, ref: ModelRef) -> dict[str, Any]:
        """A model's record by id, name or Model (NotFoundError if there is none)."""
        store = self.read()
        key = ref.id if isinstance(ref, Model) else ref
        if not isinstance(key, str):
            raise NotFoundError(f"not a model: {ref!r}")
        record = store.get("models", key)
        if record is None:
            key = unicodedata.normalize("NFC", key.strip())
            record = next((r for r in store.records("models") if r["name"] == key), None)
        if record is None:
            raise NotFoundError(f"no model {key!r} in {self.path}")
        return record

    def model_records(self) -> list[dict[str, Any]]:
        """Every model's record, oldest first."""
        return sorted(self.read().records("models"), key=lambda r: r["created"])

    def example_record(self, ref: ExampleRef) -> dict[str, Any]:
        key = ref.id if isinstance(ref, Example) else ref
        record = self.read().get("examples", key) if isinstance(key, str) else None
        if record is None:
            raise NotFoundError(f"no example {key!r} in {self.path}")
        return record

    def example(self, ref: ExampleRef) -> Example:
        """An example with its status as of now."""
        record = self.example_record(ref)
        return Example.from_record(record, self.store.get("labels", record["id"]))

    def label_record(self, example_id: str) -> dict[str, Any] | None:
        """The example's label record (possibly a deleted tombstone), or None."""
        return self.read().get("labels", example_id)

    def label(self, ref: ExampleRef) -> Label | None:
        """The example's current label (draft or submitted), or None. In a blind reading, a reader of the
        example who has not submitted yet may not see it (it is made from the others' readings).
        """
        example = self.example_record(ref)
        record = self.label_record(example["id"])
        if record is None or record["status"] == "deleted":
            return None
        if record.get("readers") is not None and not self._sees_all_readings(
            example, self.reading_records(example["id"])
        ):
            raise PermissionDenied(
                f"{self.user} reads example {example['id']}: its label (from the others' readings) is shown once "
                "their own reading is submitted (blind reading)"
            )
        return Label.from_record(record)

    def label_at(self, example_id: str, version: int) -> dict[str, Any] | None:
        """The audit event that wrote ``version`` of an example's label (what a snapshot froze)."""
        return next((e for e in self.history(example_id) if e["version"] == version), None)

    def history(self, example_id: str, reader: str | None = None) -> list[dict[str, Any]]:
        """The audit trail of one example's label (or of one reader's reading of it), oldest first."""
        store = self.read()
        current = store.get("labels", example_id) if reader is None else store.get("readings", f"{example_id}/{reader}")
        by_version: dict[int, dict[str, Any]] = {}
        for event in self.store.audit.for_example(example_id):
            if "version" in event and event.get("reader") == reader:
                by_version[event["version"]] = event  # a retried version replaces an uncommitted one
        top = current["version"] if current else max(by_version, default=0)
        return copy.deepcopy([by_version[v] for v in sorted(by_version) if v <= top])

    def audit(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """Every committed audit event (of one model, if given), oldest first."""
        events = self.read().audit.events()
        return copy.deepcopy([e for e in events if model_id is None or e.get("model_id") == model_id])

    def run_record(self, ref: RunRef) -> dict[str, Any]:
        key = ref.id if isinstance(ref, Run) else ref
        if not isinstance(key, str):
            raise NotFoundError(f"not a run: {ref!r}")
        record = self.read().get("runs", key)
        if record is None:
            raise NotFoundError(f"no run {key!r}")
        return record

    def run_records(self, model_id: str) -> list[dict[str, Any]]:
        """A model's runs, oldest first."""
        runs = (r for r in self.read().records("runs") if r["model_id"] == model_id)
        return sorted(runs, key=lambda r: r["created"])

    def subject_record(self, subject_id: str) -> dict[str, Any]:
        if not isinstance(subject_id, str):
            raise NotFoundError(f"not a subject id: {subject_id!r}")
        record = self.read().get("subjects", unicodedata.normalize("NFC", subject_id.strip()))
        if record is None:
            raise NotFoundError(f"no subject {subject_id!r}")
        return record

    def subject_records(self) -> list[dict[str, Any]]:
        return sorted(self.read().records("subjects"), key=lambda r: r["id"])

    def code_record(self, name: str) -> dict[str, Any] | None:
        """Registered model code by name, or None."""
        return self.read().get("code", unicodedata.normalize("NFC", name)) if isinstance(name, str) else None

    def prediction_record(self, run_id: str, example_id: str) -> dict[str, Any] | None:
        """A stored prediction of a run for an example, or None."""
        return self.read().get("predictions", f"{run_id}:{example_id}")

    def prediction_records(self, run_id: str) -> dict[str, dict[str, Any]]:
        """``{example_id: prediction}`` of every stored prediction of a run."""
        records = self.read().records("predictions")
        return {r["example_id"]: r for r in records if r["run_id"] == run_id and r.get("example_id")}

    def blob(self, ref: str) -> bytes:
        """A stored file's bytes (StoreError if the project lost it)."""
        return self.store.blobs.get(ref)

    def image(self, ref: ExampleRef) -> np.ndarray:
        """The example's image as stored (16-bit stays 16-bit); a volume's whole (Z, Y, X) array."""
        record = self.example_record(ref)
        image_ref = record["image_ref"]
        data, ext = self.blob(image_ref), image_ref.rpartition(".")[2]
        name = f"the stored image {image_ref}"
        if record.get("depth") is not None:
            return self._volume(data, ext, name, record)
        return imaging.decode_image(data, ext, max_pixels=self._read_limit(), name=name)

    def image_slice(self, ref: ExampleRef, k: int) -> np.ndarray:
        """Slice ``k`` of a volume, decoding only that slice."""
        return self.stored_volume(ref).slice(int(k))

    def stored_volume(self, ref: ExampleRef) -> volumes.StoredVolume:
        """A volume example's image, to read slice by slice (the whole array decoded only if asked)."""
        record = self.example_record(ref)
        if record.get("depth") is None:
            raise ValidationError(f"example {record['id']} is a 2-D image, not a volume")
        image_ref = record["image_ref"]
        name = f"the stored volume {image_ref}"
        if not image_ref.endswith(".tif"):
            raise StoreError(f"{name}: a stored volume is a .tif; the project is damaged")
        stored = volumes.StoredVolume(
            self.blob(image_ref), record.get("affine") or np.eye(4), max_pixels=self._read_limit(), name=name
        )
        if stored.shape != (record["depth"], record["height"], record["width"]):
            expected = f"{record['depth']} x {record['height']} x {record['width']}"
            raise StoreError(f"{name} holds {stored.shape}; its example says {expected}")
        return stored

    def _volume(self, data: bytes, ext: str, name: str, record: dict[str, Any]) -> np.ndarray:
        if ext != "tif":
            raise StoreError(f"{name}: a stored volume is a .tif, not .{ext}; the project is damaged")
        arr = volumes.decode_volume(data, max_pixels=self._read_limit(), name=name)
        if arr.shape != (record["depth"], record["height"], record["width"]):
            raise StoreError(
                f"{name} holds {arr.shape}; its example says {record['depth']} x {record['height']} x {record['width']}"
            )
        return arr

    def mask_blob(self, ref: str) -> np.ndarray:
        """A stored mask (uint8 class indices): (H, W), or (Z, H, W) for a volume's."""
        if ref.endswith(".tif"):
            arr = volumes.decode_volume(self.blob(ref), max_pixels=self._read_limit(), name=f"the stored mask {ref}")
            if arr.dtype != np.uint8:
                raise StoreError(f"the stored mask {ref} holds {arr.dtype}, not uint8 class indices")
            return arr
        return imaging.decode_mask_png(self.blob(ref), max_pixels=self._read_limit())

    def _read_limit(self) -> int:
        """The size limit for stored images: max_image_pixels governs imports, so a lower one hides none."""
        return max(self.max_image_pixels or 0, imaging.DEFAULT_MAX_PIXELS)

    # -- queries -----------------------------------------------------------------------

    def select(
        self,
        model: ModelRef,
        *,
        status: str | Iterable[str] | None = None,
        subject=None,
        split=None,
        reader: str | None = None,
        queue: str | Iterable[str] | None = None,
        review: str | Iterable[str] | None = None,
    ) -> tuple[Any, np.ndarray]:
        """The model's example columns and the positions of the rows that match the filters; ``reader``: only
        the examples assigned to them, in the ``queue`` states (``reading.QUEUE_STATES``) if given.
        """
        model_id = self.model_record(model)["id"]
        wanted = None
        if status is not None:
            given = [status] if isinstance(status, str) else sequence(status, "status")
            wanted = {choice(s, STATUSES, "status") for s in given}
        states = None
        if queue is not None:
            if reader is None:
                raise ValidationError("a queue filter needs the reader whose queue it is (reader=)")
            given = [queue] if isinstance(queue, str) else sequence(queue, "queue")
            states = {choice(q, reading.QUEUE_STATES, "queue state") for q in given}
        reviews = None
        if review is not None:
            given = [review] if isinstance(review, str) else sequence(review, "review")
            reviews = {choice(r, REVIEW_CODES, "review") for r in given}
        if reader is not None and not isinstance(reader, str):
            raise ValidationError(f"reader is a user name (a string), not {reader!r}")
        if split is not None:
            choice(split, SPLITS, "split")
        if subject is not None and not isinstance(subject, str):
            raise ValidationError(f"subject is a subject id (a string), not {subject!r}")
        return self.index.select(
            model_id, statuses=wanted, subject=subject, split=split, reader=reader, queue=states, review=reviews
        )

    def example_ids(
        self, model: ModelRef, *, sort: str = "created", descending: bool = False, **filters: Any
    ) -> list[str]:
        """The ids of the model's examples that match ``filters``, in ``sort`` order."""
        if sort not in SORT_KEYS:
            raise ValidationError(f"sort must be one of {SORT_KEYS}, not {sort!r}")
        cols, rows = self.select(model, **filters)
        return cols["id"][ExampleIndex.order(cols, rows, sort, descending)].tolist()

    def examples_by_id(self, ids: Iterable[str]) -> list[Example]:
        """Examples (with their status) for ids known to exist."""
        return [Example.from_record(self._known_example(i), self.store.get("labels", i)) for i in ids]

    def _known_example(self, example_id: str) -> dict[str, Any]:
        record = self.store.get("examples", example_id)
        if record is None:  # a column named it: the index and the records disagree
            raise NotFoundError(f"no example {example_id!r} in {self.path}")
        return record

    def examples_at(self, cols: Any, rows: np.ndarray) -> list[Example]:
        """The examples at positions ``rows`` of :meth:`select`'s columns (a page), their status as the columns say.

        The same as :meth:`examples_by_id` of their ids, without reading a label record.
        """
        codes, times = cols.label_state(rows)
        reviews = cols["review"][rows].tolist()
        verdicts = {code: {"state": name} for name, code in REVIEW_CODES.items() if code}
        labels = [
            {"status": _LABEL_STATUS[c], "updated": t, "review": verdicts.get(r)} if c in _LABEL_STATUS else None
            for c, t, r in zip(codes, times, reviews, strict=True)
        ]
        ids = cols["id"][rows].tolist()
        out = []
        for example_id, label in zip(ids, labels, strict=True):
            record = self._known_example(example_id)
            if label is not None and record.get("depth") is not None:  # a volume's labeled slices are on its label
                label["slices"] = (self.store.get("labels", example_id) or {}).get("slices")
            out.append(Example.from_record(record, label))
        return out

    def status_counts(self, model: ModelRef) -> dict[str, int]:
        return self.index.counts(self.model_record(model)["id"])

    def snapshot(self, model: ModelRef) -> dict[str, list[list[Any]]]:
        """The submitted labels training would use now: ``{split: [[example_id, version], ...]}``; the
        model's ``train_on`` (its reading config) may keep only adjudicated or accepted ones.
        """
        snap: dict[str, list[list[Any]]] = {s: [] for s in SPLITS}
        train_on = self.reading_plan(model)["train_on"]
        cols, rows = self.select(model, status="labeled")
        for example_id, split in zip(cols["id"][rows].tolist(), cols["split"][rows].tolist(), strict=True):
            label = self.store.get("labels", example_id)
            assert label is not None  # the column says it is labeled
            if train_on == "adjudicated" and label.get("source") != "adjudicated":
                continue
            if train_on == "reviewed" and (label.get("review") or {}).get("state") != "accepted":
                continue
            snap[split].append([example_id, label["version"]])
        for items in snap.values():
            items.sort()
        return snap

    # -- models ------------------------------------------------------------------------

    def create_model(
        self,
        name: str,
        *,
        problem_type: str,
        classes: Any,
        description: str = "",
        multi_label: bool = False,
    ) -> Model:
        """Record a new model config (the vocabulary rules of ``records`` checked first)."""
        choice(problem_type, PROBLEM_TYPES, "problem_type")
        multi_label = flag(multi_label, "multi_label")
        if multi_label and problem_type != "classification":
            raise ValidationError("multi_label applies to classification models only")
        name = clean_name(name, "model name")
        records, retired = class_records(classes)
        check_class_names([c["name"] for c in records])
        if problem_type == "segmentation" and 0 not in {c["index"] for c in records}:
            raise ValidationError("a segmentation model needs class 0 (the background)")
        minimum = 1 if multi_label else 2
        if len(records) < minimum:
            raise ValidationError(f"a {problem_type} model needs at least {minimum} classes")
        if len(records) > 256:
            raise ValidationError("a model can have at most 256 classes")
        stamp = now()
        record: dict[str, Any] = {
            "id": new_id("m"),
            "name": name,
            "description": clean_text(description, "model description"),
            "problem_type": problem_type,
            "classes": records,
            "retired_classes": retired,
            "multi_label": bool(multi_label),
            "champion_run_id": None,
            "training": {},
            "retrain": {},
            "created": stamp,
            "updated": stamp,
        }
        with self.write():
            self.require("developer", "creating a model")
            self._check_unique_name(name)
            self.store.put("models", record["id"], record)
            self.emit(Change("model_created", model_id=record["id"], tables=("models",)))
        return Model.from_record(record)

    def update_model(self, model: ModelRef, **changes: Any) -> Model:
        """Change fields of a model's record (a new name must be unique)."""
        with self.write():
            self.require("developer", "changing a model")
            record = dict(self.model_record(model))
            if "name" in changes and changes["name"] != record["name"]:
                self._check_unique_name(changes["name"], exclude=record["id"])
            record.update(changes, updated=now())
            self.store.put("models", record["id"], record)
            self.emit(Change("model_updated", model_id=record["id"], tables=("models",)))
        return Model.from_record(record)

    def _check_unique_name(self, name: str, exclude: str | None = None) -> None:
        for other in self.store.records("models"):
            if other["id"] != exclude and name_key(other["name"]) == name_key(name):
                raise ValidationError(f"a model named {other['name']!r} already exists; choose another name")

    def add_class(self, model: ModelRef, name: str, *, color: str | None = None, description: str = "") -> Model:
        """Add a class with a fresh index (never one a removed class had)."""
        with self.write():
            self.require("developer", "changing a model's classes")
            record = self.model_record(model)
            used = [c["index"] for c in record["classes"] + record["retired_classes"]]
            index = max(used) + 1
            if index > 255:
                raise ValidationError("this model has used all 256 class indices")
            new = class_record(index, {"name": name, "color": color, "description": description})
            check_class_names([c["name"] for c in record["classes"]] + [new["name"]])
            return self.update_model(record["id"], classes=record["classes"] + [new])

    def remove_class(self, model: ModelRef, ref: int | str) -> Model:
        """Retire a class, refused while a label uses it."""
        with self.write():
            self.require("developer", "changing a model's classes")
            record = self.model_record(model)
            index = Model.from_record(record).class_index(ref)
            if record["problem_type"] == "segmentation" and index == 0:
                raise ValidationError("class 0 is the background of a segmentation model and cannot be removed")
            in_use = sum(
                1
                for label in self.store.records("labels")
                if label["model_id"] == record["id"] and label["status"] != "deleted" and index in label["classes"]
            )
            if in_use:
                raise ValidationError(f"class {ref!r} is used by {in_use} labels; relabel or delete them first")
            keep = [c for c in record["classes"] if c["index"] != index]
            retired = record["retired_classes"] + [c for c in record["classes"] if c["index"] == index]
            return self.update_model(record["id"], classes=keep, retired_classes=retired)

    def delete_model(self, model: ModelRef) -> None:
        """Delete a model with its examples, labels, runs and stored predictions (the audit trail stays)."""
        with self.write():
            self.require("developer", "deleting a model")
            record = self.model_record(model)
            for ex in [e for e in self.store.records("examples") if e["model_id"] == record["id"]]:
                self.store.delete("examples", ex["id"])
                self.store.delete("labels", ex["id"])
            for key, read in list(self.store.mapping("readings").items()):
                if read["model_id"] == record["id"]:
                    self.store.delete("readings", key)
            for run in [r for r in self.store.records("runs") if r["model_id"] == record["id"]]:
                self.store.delete("runs", run["id"])
            for key, cached in list(self.store.mapping("predictions").items()):
                if cached["model_id"] == record["id"]:
                    self.store.delete("predictions", key)
            self.store.delete("models", record["id"])
            event = {"time": now(), "actor": self.user, "action": "delete_model", "model_id": record["id"]}
            self.store.log({**event, "name": record["name"]})
            tables = ("models", "examples", "labels", "readings", "runs", "predictions")
            self.emit(Change("model_deleted", model_id=record["id"], tables=tables))

    def configure_training(
        self, model: ModelRef, updates: dict[str, Any], check: Callable[[dict[str, Any], dict[str, Any]], None]
    ) -> Model:
        """Merge ``updates`` (None = unchanged) into the model's training config in one commit.

        ``check(record, config)`` validates the merged config against the model as it is
        inside the transaction (so two kernels configuring at once lose nothing).
        """
        with self.write():
            self.require("developer", "configuring training")
            record = self.model_record(model)
            model_code = updates.get("model_code")
            if model_code and self.store.get("code", model_code) is None:
                raise NotFoundError(f"no registered model code {model_code!r}; register_model_code() it first")
            config = copy.deepcopy(record.get("training") or {})
            config.update({k: v for k, v in updates.items() if v is not None})
            check(record, config)
            return self.update_model(record["id"], training=config)

    def register_code(self, name: str, source: str, *, factory: str, train_step: str | None) -> None:
        """Store model source code under ``name`` (checked by the caller)."""
        with self.write():
            self.require("developer", "registering model code")
            ref = self.store.put_blob(source.encode(), "py")
            record = {
                "name": name,
                "source_ref": ref,
                "factory": factory,
                "train_step": train_step,
                "author": self.user,
                "created": now(),
            }
            self.store.put("code", name, record)
            self.emit(Change("code_registered", tables=("code",)))

    # -- subjects ----------------------------------------------------------------------

    def put_subject(
        self,
        subject_id: str,
        *,
        name: str | None = None,
        external_ids: dict[str, str] | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, str] | None = None,
    ) -> Subject:
        """Create or update a subject; what is not given stays as it was."""
        subject_id = clean_name(subject_id, "subject id")
        with self.write():
            self.require("developer", "adding or changing subjects")
            old = self.store.get("subjects", subject_id) or {}
            record = {
                "id": subject_id,
                "name": clean_name(name, "subject name") if name is not None else old.get("name", subject_id),
                "external_ids": (
                    _text_map(external_ids, "external id") if external_ids is not None else old.get("external_ids", {})
                ),
                "tags": sorted({clean_name(t, "tag") for t in sequence(tags, "tags")} | set(old.get("tags", []))),
                "metadata": _text_map(metadata, "metadata") if metadata is not None else old.get("metadata", {}),
                "created": old.get("created") or now(),
            }
            self.store.put("subjects", subject_id, record)
            self.emit(Change("subject_changed", subject_id=subject_id, tables=("subjects",)))
        return Subject.from_record(record)

    def _ensure_subject(self, subject: str, info: dict[str, Any], stamp: str) -> None:
        old = self.store.get("subjects", subject)
        external = {**info.get("external_ids", {}), **((old or {}).get("external_ids") or {})}
        metadata = {**info.get("metadata", {}), **((old or {}).get("metadata") or {})}
        if old is not None and external == old.get("external_ids") and metadata == old.get("metadata", {}):
            return
        record = {"id": subject, "name": subject, "tags": [], "created": stamp, **(old or {})}
        record.update(external_ids=external, metadata=metadata)
        self.store.put("subjects", subject, record)

    # -- examples ----------------------------------------------------------------------

    def insert_examples(self, model: ModelRef, items: list[dict[str, Any]]) -> list[Example]:
        """Commit prepared examples in one transaction.

        Each item: ``fields`` (image fields and ``blobs``: the encoded files to store), ``source``,
        ``subject``, ``split``, and optionally ``subject_info`` and ``label`` (status, mask or
        classes, author), as ``exchange.ingest`` prepares them.
        """
        stamp = now()
        for item in items:  # checked before anything is written
            item["source"] = json_clean(item.get("source") or {}, "source")
        records = []
        with self.write():
            self.require("developer", "adding examples")
            model_id = self.model_record(model)["id"]  # still there?
            for seq, item in enumerate(items):
                records.append(self._insert_example(model_id, item, seq, stamp))
            config = self.model_record(model_id).get("reading") or {}
            if _multi_reader(self.model_record(model_id)) and config.get("assign") == "round_robin":
                cursor = self._assign_round_robin(model_id, config, [r["id"] for r in records], config.get("cursor", 0))
                self.update_model(model_id, reading={**config, "cursor": cursor})
            tables = ["examples"]
            if any(item.get("subject") is not None for item in items):
                tables.append("subjects")  # a new subject, or an updated one (DICOM ids)
            if any(item.get("label") for item in items):
                tables.append("labels")
            ids = tuple(r["id"] for r in records)
            self.emit(Change("examples_added", model_id=model_id, example_ids=ids, tables=tuple(tables)))
        return self.examples_by_id(r["id"] for r in records)

    def _insert_example(self, model_id: str, item: dict[str, Any], seq: int, stamp: str) -> dict[str, Any]:
        example_id = new_id("ex")
        subject = item.get("subject")
        if subject is not None:
            self._ensure_subject(subject, item.get("subject_info") or {}, stamp)
        fields = dict(item["fields"])
        for data, ext in fields.pop("blobs"):
            self.store.put_blob(data, ext)
        record = {
            "id": example_id,
            "model_id": model_id,
            "subject_id": subject,
            "split": item.get("split") or split_for(subject or example_id),
            **fields,
            "source": item["source"],
            "created": stamp,
            "updated": stamp,
            "seq": seq,
        }
        self.store.put("examples", example_id, record)
        label = item.get("label")
        if label:
            self.write_label(
                example_id, label["status"], mask=label.get("mask"), classes=label.get("classes"),
                author=label.get("author"), source="import",
            )  # fmt: skip
        return record

    def delete_example(self, example: ExampleRef) -> None:
        """Delete an example, its label and its stored predictions (the audit trail keeps the history)."""
        with self.write():
            self.require("developer", "deleting an example")
            record = self.example_record(example)
            label = self.store.get("labels", record["id"])
            self.store.log(
                {
                    "time": now(),
                    "actor": self.user,
                    "action": "delete_example",
                    "example_id": record["id"],
                    "model_id": record["model_id"],
                    "version": (label["version"] if label else 0) + 1,
                }
            )
            self.store.delete("examples", record["id"])
            self.store.delete("labels", record["id"])
            for read in self.reading_records(record["id"]):
                self.store.delete("readings", f"{record['id']}/{read['reader']}")
            for run in self.store.records("runs"):
                if run["model_id"] == record["model_id"]:
                    self.store.delete("predictions", f"{run['id']}:{record['id']}")
            ids, tables = (record["id"],), ("examples", "labels", "readings", "predictions")
            self.emit(Change("example_deleted", model_id=record["model_id"], example_ids=ids, tables=tables))

    # -- labels ------------------------------------------------------------------------

    def write_label(
        self,
        example: ExampleRef,
        status: str,
        *,
        mask: np.ndarray | None = None,
        classes: Any = None,
        author: str | None = None,
        time_spent: float | None = None,
        source: str = "human",
        made_with: dict[str, Any] | None = None,
    ) -> Label:
        """Save (``status="draft"``) or submit (``"submitted"``) a label; without a mask or classes,
        the current label's is kept. ``made_with`` (how it was made) is a small JSON dict, recorded as given.

        In a model read by several readers, a person's label is their reading of the example (it must be
        assigned to them), and the example's label follows from the readings (:meth:`_settle`); an
        imported label is the example's own.
        """
        with self.write():
            record = self.example_record(example)
            model_record = self.model_record(record["model_id"])
            model = Model.from_record(model_record)
            author = self._author(author)
            source = clean_name(source, "label source")
            table, key = self._label_place(record, model_record, author, source)
            old = self.store.get(table, key)
            live = old if old is not None and old["status"] in ("draft", "submitted") else None
            if table == "readings":
                self._require_reading_rights(author, "labeling")
            else:
                self._require_label_rights(live, author, "labeling")
            slices = None
            if model.problem_type == "segmentation":
                mask_ref, present, slices = self._mask_content(record, model, live, mask, classes)
            else:
                mask_ref, present = None, self._class_content(record, model, live, mask, classes)
            stamp = now()
            new = {
                "example_id": record["id"],
                "model_id": record["model_id"],
                "kind": "mask" if model.problem_type == "segmentation" else "classes",
                "status": status,
                "classes": present,
                "mask_ref": mask_ref,
                "author": author,
                "time_spent": _seconds(time_spent),
                "source": source,
                "version": (old["version"] if old else 0) + 1,
                "created": live["created"] if live else stamp,
                "updated": stamp,
            }
            if table == "readings":
                new["reader"] = author
                returned = (live or {}).get("review") or {}
                if status == "draft" and returned.get("state") == "returned":
                    new["review"] = returned  # the reviewer's comment stays until the reading is resubmitted
            if slices is not None:
                new["slices"] = slices
            if made_with is not None:
                new["made_with"] = _made_with(made_with)
            self.store.log(label_event("submit" if status == "submitted" else "save", new, old))
            self.store.put(table, key, new)
            if table == "readings":
                self._settle(record, model_record)
            kind = "label_submitted" if status == "submitted" else "label_saved"
            self.emit(
                Change(
                    kind,
                    model_id=record["model_id"],
                    example_ids=(record["id"],),
                    tables=tuple(dict.fromkeys((table, "labels"))),
                )
            )
        return Label.from_record(new)

    def _label_place(
        self, record: dict[str, Any], model_record: dict[str, Any], author: str, source: str = "human"
    ) -> tuple[str, str]:
        """Where a person's label of the example lives: ``("labels", id)``, or their reading's place."""
        if not _multi_reader(model_record) or source == "import":
            return "labels", record["id"]
        key = f"{record['id']}/{author}"
        if self.store.get("readings", key) is None:
            raise PermissionDenied(
                f"example {record['id']} is not assigned to {author}; a reviewer assigns it "
                f"(project.assign([{record['id']!r}], [{author!r}]))"
            )
        return "readings", key

    def _mask_content(self, record, model: Model, live, mask, classes) -> tuple[str, list[int], list[int] | None]:
        """The mask's blob, its classes, and (a volume's) the slices holding a class other than the background."""
        if classes is not None:
            raise ValidationError("a segmentation label is a mask; pass mask=, not classes=")
        if mask is None:
            if live is None or live["mask_ref"] is None:
                raise ValidationError(f"example {record['id']} has no mask yet; pass mask=")
            return live["mask_ref"], live["classes"], live.get("slices")
        valid = [c.index for c in model.classes]
        mask = imaging.validate_mask(mask, Example.from_record(record).shape, valid)
        present = imaging.present_classes(mask)
        if mask.ndim == 3:
            slices = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)).tolist()
            return self.store.put_blob(volumes.encode_volume(mask), "tif"), present, slices
        return self.store.put_blob(imaging.encode_mask_png(mask), "png"), present, None

    def _class_content(self, record, model: Model, live, mask, classes) -> list[int]:
        if mask is not None:
            raise ValidationError("a classification label is a set of classes; pass classes=, not mask=")
        if classes is None:
            if live is None:
                raise ValidationError(f"example {record['id']} has no label yet; pass classes=")
            return live["classes"]
        return class_indices(model, classes)

    def _author(self, author: Any) -> str:
        """The label's author: the current user unless another name is given."""
        return self.user if author is None or (isinstance(author, str) and not author) else clean_name(author, "author")

    def _require_label_rights(self, live: dict[str, Any] | None, author: str, doing: str) -> None:
        """A labeler writes their own labels; another person's label, or one in another's name, needs a reviewer."""
        self.require("labeler", doing)
        if author != self.user:
            self.require("reviewer", f"{doing} in another person's name ({author})")
        elif live is not None and live.get("author", self.user) != self.user:
            self.require("reviewer", f"{doing} over {live['author']}'s label")

    def _require_reading_rights(self, reader: str, doing: str) -> None:
        """A labeler writes their own readings; a reading in another's name needs a reviewer."""
        self.require("labeler", doing)
        if reader != self.user:
            self.require("reviewer", f"{doing} in another reader's name ({reader})")

    # -- several readers ---------------------------------------------------------------

    def reading_plan(self, model: ModelRef) -> dict[str, Any]:
        """The model's reading config (:data:`reading.DEFAULTS` for one without)."""
        return reading.plan(self.model_record(model).get("reading"), {})

    def configure_reading(self, model: ModelRef, updates: dict[str, Any]) -> Model:
        """Merge ``updates`` into the model's reading config; with round-robin assignment, every example of the
        model gets its readers (those it has are kept), in one commit.
        """
        with self.write():
            self.require("developer", "planning how examples are read")
            record = self.model_record(model)
            config = reading.plan(record.get("reading"), updates)
            config.setdefault("cursor", 0)
            if config["readers"] > 1 and config["assign"] == "round_robin":
                cols, rows = self.select(record["id"])
                ordered = cols["id"][ExampleIndex.order(cols, rows, "created", False)].tolist()
                config["cursor"] = self._assign_round_robin(record["id"], config, ordered, 0)
            return self.update_model(record["id"], reading=config)

    def _assign_round_robin(self, model_id: str, config: dict[str, Any], example_ids: list[str], cursor: int) -> int:
        """Give each example its share of the pool, from position ``cursor`` on (0: all the model's examples,
        keeping the readers they have; later: examples new to the model); the next position.
        """
        plan: dict[str, list[str]] = {}
        held: dict[str, list[str]] = {}
        if cursor == 0:  # every example of the model (new ones have no readers yet)
            for r in self.store.records("readings"):
                if r["model_id"] == model_id:
                    held.setdefault(r["example_id"], []).append(r["reader"])
        for position, example_id in enumerate(example_ids, cursor):
            have = held.get(example_id, [])
            wanted = [r for r in reading.round_robin(position, config["pool"], config["readers"]) if r not in have]
            for reader in wanted[: max(0, config["readers"] - len(have))]:
                plan.setdefault(reader, []).append(example_id)
        self._put_assignments(model_id, plan)
        return cursor + len(example_ids)

    def assign(self, examples: Iterable[ExampleRef], readers: Iterable[str]) -> int:
        """Assign ``readers`` to each of ``examples`` (reviewers and up); returns how many readings were new."""
        names = list(dict.fromkeys(clean_name(r, "reader") for r in readers))
        with self.write():
            self.require("reviewer", "assigning examples to readers")
            records = [self.example_record(e) for e in examples]
            models = {r["model_id"] for r in records}
            if len(models) > 1:
                raise ValidationError("assign the examples of one model at a time")
            plan: dict[str, list[str]] = {}
            for record in records:
                for reader in names:
                    if self.store.get("readings", f"{record['id']}/{reader}") is None:
                        plan.setdefault(reader, []).append(record["id"])
            if plan:
                self._put_assignments(models.pop(), plan)
            return sum(map(len, plan.values()))

    def _put_assignments(self, model_id: str, plan: dict[str, list[str]]) -> None:
        """New ``assigned`` readings (version 0), and one audit event that lists them."""
        if not plan:
            return
        stamp = now()
        kind = "mask" if self.model_record(model_id)["problem_type"] == "segmentation" else "classes"
        for reader, ids in plan.items():
            for example_id in ids:
                self.store.put(
                    "readings",
                    f"{example_id}/{reader}",
                    {
                        "example_id": example_id, "model_id": model_id, "reader": reader, "kind": kind,
                        "status": "assigned", "version": 0, "classes": [], "mask_ref": None, "author": self.user,
                        "source": "human", "created": stamp, "updated": stamp,
                    },
                )  # fmt: skip
        self.store.log({"time": stamp, "actor": self.user, "action": "assign", "model_id": model_id, "assigned": plan})
        assigned = tuple(sorted({i for v in plan.values() for i in v}))
        self.emit(Change("readers_assigned", model_id=model_id, example_ids=assigned, tables=("readings",)))

    def reading_records(self, example_id: str) -> list[dict[str, Any]]:
        """Every reading of one example (any status), by reader; no role check (the session's own use)."""
        _, shard = self.read().shard("readings", shard_of("readings", example_id))
        prefix = f"{example_id}/"
        return sorted((shard[k] for k in shard if k.startswith(prefix)), key=lambda r: r["reader"])

    def readings(self, example: ExampleRef) -> list[Label]:
        """The example's readings the current user may see: their own; the others' once their own is submitted
        (or always, when the model's reading is not blind); a reviewer sees every one.
        """
        record = self.example_record(example)
        found = self.reading_records(record["id"])
        if not self._sees_all_readings(record, found):
            found = [r for r in found if r["reader"] == self.user]
        return [Label.from_record(r) for r in found]

    def reading_of(self, example: ExampleRef, reader: str | None = None) -> Label | None:
        """One reader's reading of the example (the current user's by default), or None if none is assigned."""
        record = self.example_record(example)
        reader = self.user if reader is None else reader
        found = self.reading_records(record["id"])
        if reader != self.user and not self._sees_all_readings(record, found):
            raise PermissionDenied(
                f"{self.user} cannot see {reader}'s reading of example {record['id']} before submitting their own"
                " (blind reading)"
            )
        mine = next((r for r in found if r["reader"] == reader), None)
        return None if mine is None else Label.from_record(mine)

    def _sees_all_readings(self, record: dict[str, Any], found: list[dict[str, Any]]) -> bool:
        """Whether the current user may see every reading (and the example's label) of ``record``: yes unless
        the reading is blind and they read it themselves without having submitted yet (whatever their role).
        """
        if self.system or self._system_depth:
            return True
        mine = next((r for r in found if r["reader"] == self.user), None)
        if mine is None or mine["status"] == "submitted":
            return True
        return not reading.plan(self.model_record(record["model_id"]).get("reading"), {})["blind"]

    def _settle(self, record: dict[str, Any], model_record: dict[str, Any]) -> None:
        """Make the example's label follow its readings (inside a write): once ``readers`` readings are
        submitted, their consensus (a classification tie stays a draft for a reviewer), else none. An
        adjudicated label stays as the reviewer left it.
        """
        label = self.store.get("labels", record["id"])
        live = label if label is not None and label["status"] != "deleted" else None
        if live is not None and live.get("source") == "adjudicated":
            return
        config = reading.plan(model_record.get("reading"), {})
        submitted = [r for r in self.reading_records(record["id"]) if r["status"] == "submitted"]
        if len(submitted) < config["readers"]:
            if live is not None:
                gone = {**live, "status": "deleted", "mask_ref": None, "classes": [], "version": live["version"] + 1}
                gone.update(author=self.user, source="consensus", readers=[], agreement=None, updated=now())
                gone.pop("review", None)
                self.store.log(label_event("consensus", gone, label))
                self.store.put("labels", record["id"], gone)
            return
        model = Model.from_record(model_record)
        readers = [r["reader"] for r in submitted]
        if model.problem_type == "segmentation":
            masks = [self.mask_blob(r["mask_ref"]) for r in submitted]
            merged = reading.consensus_mask(masks, config["consensus"])
            figures = reading.example_agreement(masks)
            content = self._mask_content(record, model, None, merged, None)
            status, (mask_ref, present, slices) = "submitted", content
        else:
            chosen = [r["classes"] for r in submitted]
            figures = reading.example_agreement(chosen)
            agreed = reading.consensus_classes(chosen, model.multi_label)
            status, mask_ref, present, slices = ("draft" if agreed is None else "submitted"), None, agreed or [], None
        if (
            live is not None
            and live.get("source") == "consensus"
            and (live.get("readers"), live["status"], live["classes"], live["mask_ref"])
            == (readers, status, present, mask_ref)
        ):
            return
        stamp = now()
        new = {
            "example_id": record["id"], "model_id": record["model_id"], "kind": submitted[0].get("kind", "mask"),
            "status": status, "classes": present, "mask_ref": mask_ref, "author": self.user, "time_spent": None,
            "source": "consensus", "version": (label["version"] if label else 0) + 1,
            "created": live["created"] if live else stamp, "updated": stamp, "readers": readers,
            "agreement": round(figures["mean"], 6),
            "pairs": {
                f"{readers[int(i)]} / {readers[int(j)]}": v
                for (i, j), v in ((k.split("-"), v) for k, v in figures["pairs"].items())
            },
        }  # fmt: skip
        if slices is not None:
            new["slices"] = slices
        self.store.log(label_event("consensus", new, label))
        self.store.put("labels", record["id"], new)

    def review(self, example: ExampleRef, decision: str, comment: str = "", *, reader: str | None = None) -> None:
        """A reviewer accepts (``"accept"``) or returns (``"return"``, with a comment the reader sees) a label:
        the example's own, or in a model read by several, one reader's reading (``reader``; returning without
        one returns every submitted reading, accepting without one accepts the example's label).
        """
        decision = choice(decision, ("accept", "return"), "review decision")
        comment = clean_text(comment, "comment")
        if decision == "return" and not comment:
            raise ValidationError("a returned label needs a comment that says what to change")
        with self.write():
            self.require("reviewer", "reviewing labels")
            record = self.example_record(example)
            model_record = self.model_record(record["model_id"])
            stamp = now()
            verdict = {"state": "accepted" if decision == "accept" else "returned", "by": self.user,
                       "comment": comment, "time": stamp}  # fmt: skip
            if reader is not None or (_multi_reader(model_record) and decision == "return"):
                targets = [("readings", f"{record['id']}/{clean_name(reader, 'reader')}")] if reader else [
                    ("readings", f"{r['example_id']}/{r['reader']}")
                    for r in self.reading_records(record["id"]) if r["status"] == "submitted"
                ]  # fmt: skip
            else:
                targets = [("labels", record["id"])]
            touched = False
            for table, key in targets:
                old = self.store.get(table, key)
                if old is None or old["status"] not in ("draft", "submitted"):
                    raise NotFoundError(f"example {record['id']} has no {_whose(table, key)}label to review")
                if old["status"] != "submitted":
                    raise ValidationError(f"only a submitted label is reviewed; {key} is a {old['status']}")
                new = {**old, "review": verdict, "version": old["version"] + 1, "updated": stamp}
                if decision == "return":
                    new["status"] = "draft"
                self.store.log({**label_event(decision, new, old), "actor": self.user, "comment": comment})
                self.store.put(table, key, new)
                touched |= table == "readings"
            if not targets:
                raise NotFoundError(f"example {record['id']} has no submitted reading to return")
            if touched:
                self._settle(record, model_record)
            ids = (record["id"],)
            self.emit(
                Change("label_reviewed", model_id=record["model_id"], example_ids=ids, tables=("labels", "readings"))
            )

    def adjudicate(
        self,
        example: ExampleRef,
        *,
        reader: str | None = None,
        mask: np.ndarray | None = None,
        classes: Any = None,
        comment: str = "",
    ) -> Label:
        """A reviewer settles an example read by several: one reader's label (``reader``), or an edited
        consensus (``mask`` / ``classes``) becomes the example's label, accepted, ``source="adjudicated"``.
        """
        comment = clean_text(comment, "comment")
        with self.write():
            self.require("reviewer", "adjudicating readings")
            record = self.example_record(example)
            model_record = self.model_record(record["model_id"])
            model = Model.from_record(model_record)
            found = {r["reader"]: r for r in self.reading_records(record["id"]) if r["status"] == "submitted"}
            if (reader is None) == (mask is None and classes is None):
                raise ValidationError(
                    "adjudicate with one reader's label (reader=) or an edited label (mask= or classes=)"
                )
            if reader is not None:
                if reader not in found:
                    raise NotFoundError(
                        f"{reader} has no submitted reading of example {record['id']} (submitted: {sorted(found)})"
                    )
                picked = found[reader]
                mask_ref, present, slices = picked["mask_ref"], picked["classes"], picked.get("slices")
            elif model.problem_type == "segmentation":
                mask_ref, present, slices = self._mask_content(record, model, None, mask, classes)
            else:
                mask_ref, present, slices = None, self._class_content(record, model, None, mask, classes), None
            old = self.store.get("labels", record["id"])
            live = old if old is not None and old["status"] != "deleted" else None
            stamp = now()
            new = {
                "example_id": record["id"], "model_id": record["model_id"],
                "kind": "mask" if model.problem_type == "segmentation" else "classes", "status": "submitted",
                "classes": present, "mask_ref": mask_ref, "author": self.user, "time_spent": None,
                "source": "adjudicated", "version": (old["version"] if old else 0) + 1,
                "created": live["created"] if live else stamp, "updated": stamp, "readers": sorted(found),
                "agreement": live.get("agreement") if live else None,
                "pairs": live.get("pairs", {}) if live else {},
                "review": {"state": "accepted", "by": self.user, "comment": comment, "time": stamp,
                           "picked": reader},
            }  # fmt: skip
            if slices is not None:
                new["slices"] = slices
            self.store.log({**label_event("adjudicate", new, old), "picked": reader, "comment": comment})
            self.store.put("labels", record["id"], new)
            ids = (record["id"],)
            self.emit(Change("label_submitted", model_id=record["model_id"], example_ids=ids, tables=("labels",)))
        return Label.from_record(new)

    def adjudication_queue(self, model: ModelRef) -> list[str]:
        """The ids of the examples whose readings are all in and that no reviewer has settled (adjudicated or
        accepted), least agreement first (a classification tie, a draft with no classes, among them).
        """
        cols, rows = self.index.adjudication(self.model_record(model)["id"])
        return cols["id"][rows].tolist()

    def agreement_figures(self, model: ModelRef) -> dict[str, Any]:
        """How the model's readers agree over the examples whose readings are in (those with a label made from
        them): per example the mean pairwise figure, per reader pair Dice and IoU (masks, the mean over their
        common examples) or Cohen's kappa (single-label classes), and Fleiss' kappa over the examples read by
        the plan's number of readers. Mask figures are those the consensus recorded (no mask is decoded).
        """
        record = self.model_record(model)
        model_obj = Model.from_record(record)
        k = reading.plan(record.get("reading"), {})["readers"]
        settled = [
            r
            for r in self.read().records("labels")
            if r["model_id"] == record["id"] and r["status"] != "deleted" and len(r.get("readers") or ()) >= 2
        ]
        examples = {r["example_id"]: float(r["agreement"]) for r in settled if r.get("agreement") is not None}
        out_pairs: dict[str, dict[str, float]] = {}
        result: dict[str, Any] = {"examples": examples, "pairs": out_pairs}
        if model_obj.problem_type == "segmentation":
            gathered: dict[str, list[dict[str, float]]] = {}
            for r in settled:
                for key, figures in (r.get("pairs") or {}).items():
                    gathered.setdefault(key, []).append(figures)
            for key, items in sorted(gathered.items()):
                out_pairs[key] = {
                    "dice": float(np.mean([f["dice"] for f in items])),
                    "iou": float(np.mean([f["iou"] for f in items])),
                    "examples": len(items),
                }
            return result
        chosen: dict[str, dict[str, list[int]]] = {}  # example -> reader -> classes
        for example_id in examples:
            for r in self.reading_records(example_id):
                if r["status"] == "submitted":
                    chosen.setdefault(example_id, {})[r["reader"]] = r["classes"]
        readers = sorted({reader for found in chosen.values() for reader in found})
        for a, b in combinations(readers, 2):
            both = [(found[a], found[b]) for found in chosen.values() if a in found and b in found]
            if not both:
                continue
            pair: dict[str, float] = {
                "agree": float(np.mean([sorted(x) == sorted(y) for x, y in both])),
                "examples": len(both),
            }
            if not model_obj.multi_label:
                pair["kappa"] = agreement.cohen_kappa([x[0] for x, _ in both], [y[0] for _, y in both])
            out_pairs[f"{a} / {b}"] = pair
        rows = [[c[0] for c in found.values()] for found in chosen.values() if len(found) == k]
        if not model_obj.multi_label and k >= 2 and len(rows) >= 2:
            result["fleiss_kappa"] = agreement.fleiss_kappa(np.array(rows))
        return result

    def delete_label(self, example: ExampleRef, *, author: str | None = None) -> None:
        """Delete the example's label (a tombstone version; the history stays in the audit trail); in a model
        read by several readers, the person's reading (it is theirs to do again).
        """
        with self.write():
            record = self.example_record(example)
            model_record = self.model_record(record["model_id"])
            author = self._author(author)
            table, key = self._label_place(record, model_record, author)
            old = self.store.get(table, key)
            if old is None or old["status"] in ("deleted", "assigned"):
                raise NotFoundError(f"example {record['id']} has no label {_whose(table, key)}to delete")
            if table == "readings":
                self._require_reading_rights(author, "deleting a label")
            else:
                self._require_label_rights(old, author, "deleting a label")
            new = {**old, "status": "deleted", "mask_ref": None, "classes": [], "version": old["version"] + 1}
            new.pop("review", None)
            new.update(author=author, updated=now())
            self.store.log(label_event("delete", new, old))
            self.store.put(table, key, new)
            if table == "readings":
                self._settle(record, model_record)
            ids = (record["id"],)
            self.emit(
                Change(
                    "label_deleted",
                    model_id=record["model_id"],
                    example_ids=ids,
                    tables=tuple(dict.fromkeys((table, "labels"))),
                )
            )

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self, model: ModelRef, *, trigger: str = "manual", hyperparameters: dict[str, Any] | None = None
    ) -> Run:
        """Record a queued run over a frozen snapshot of the submitted labels."""
        with self.write():
            self.require("developer", "starting a training run")
            model_record = self.model_record(model)
            count = sum(1 for r in self.store.records("runs") if r["model_id"] == model_record["id"])
            record = {
                "id": new_id("run"),
                "model_id": model_record["id"],
                "slug": f"run-{count + 1}",
                "status": "queued",
                "trigger": str(trigger),
                "snapshot": self.snapshot(model_record["id"]),
                "hyperparameters": json_clean(dict(hyperparameters or {}), "hyperparameters"),
                "metrics": {},
                "approvals": [],
                "history": [],
                "progress": {},
                "error": None,
                "created": now(),
                "started": None,
                "ended": None,
            }
            self.store.put("runs", record["id"], record)
            self.emit(Change("run_created", model_id=model_record["id"], run_id=record["id"], tables=("runs",)))
        return Run.from_record(record)

    def update_run(self, run: RunRef, **fields: Any) -> dict[str, Any]:
        """Set fields of a run's record; returns the new record."""
        with self.write():
            record = {**self.run_record(run), **fields}
            self.store.put("runs", record["id"], record)
            self.emit(Change("run_updated", model_id=record["model_id"], run_id=record["id"], tables=("runs",)))
        return record

    def append_to_run(self, run: RunRef, field: str, item: dict[str, Any]) -> dict[str, Any]:
        """Append ``item`` to a list field of a run (``history``, ``approvals``) in one commit."""
        with self.write():
            record = self.run_record(run)
            return self.update_run(record["id"], **{field: [*record.get(field, []), item]})

    def finish_run(self, run: RunRef, status: str, **fields: Any) -> bool:
        """Give a run its final status unless it already has one; True if this call did."""
        with self.write():
            if self.run_record(run)["status"] in FINISHED:
                return False
            self.update_run(run, status=status, ended=now(), **fields)
            return True

    def store_artifact(self, run: RunRef, weights: bytes, **fields: Any) -> dict[str, Any]:
        """Store a run's weights with the fields that go with them (status, metrics...) in one commit."""
        with self.write():
            return self.update_run(run, artifact_ref=self.store.put_blob(weights, "pt"), **fields)

    def decide(self, run: RunRef, decision: str, reason: str, actor: str | None = None) -> Run:
        """Record an approval, rejection or deployment decision on a run."""
        actor = clean_name(actor, "actor") if actor is not None else self.user
        event = {"decision": decision, "actor": actor, "reason": clean_text(reason, "reason"), "time": now()}
        with self.write():
            self.require("developer", f"recording a decision ({decision}) on a run")
            if actor != self.user:
                self.require("owner", f"recording a decision in another person's name ({actor})")
            return Run.from_record(self.append_to_run(run, "approvals", event))

    def deploy(self, run: RunRef, *, actor: str | None = None, reason: str = "") -> Model:
        """Make a succeeded run its model's champion."""
        with self.write():
            self.require("developer", "deploying a run")
            record = self.run_record(run)
            if record["status"] != "succeeded" or not record.get("artifact_ref"):
                raise ValidationError(f"only a succeeded run can be deployed; {record['slug']} is {record['status']}")
            replaced = self.model_record(record["model_id"]).get("champion_run_id")
            deployed = self.decide(record["id"], "deploy", reason, actor)
            card = self.model_card(record["id"], deployment=deployed.approvals[-1], replaced=replaced)
            self.update_run(record["id"], model_card=card)
            return self.update_model(record["model_id"], champion_run_id=record["id"])

    def model_card(
        self, run: RunRef, *, deployment: dict[str, Any] | None = None, replaced: str | None = None
    ) -> dict[str, Any]:
        """The run's model card (``model_card.build``) as of now: the records it quotes, read in one go."""
        from . import model_card

        record = self.run_record(run)
        refs = {}
        for items in (record.get("snapshot") or {}).values():
            for example_id, _ in items:
                found = self.store.get("examples", example_id)
                refs[example_id] = found["image_ref"] if found else ""
        before = self.store.get("runs", replaced) if replaced else None
        return model_card.build(
            self.model_record(record["model_id"]), record, deployment=deployment, replaced=before,
            image_refs=refs, generated=now(),
        )  # fmt: skip

    # -- predictions -------------------------------------------------------------------

    def store_predictions(self, entries: list[dict[str, Any]]) -> int:
        """Store predictions (``run_id``, ``example_id``, ``model_id``, ``uncertainty``, ``probabilities``,
        and for masks ``mask``: uint8 class indices (H, W), or a volume's (Z, H, W); or them encoded:
        ``mask_png`` (2-D) or ``mask_tif`` (3-D, as :func:`imaging.encode_volume`, like a volume's label))
        in one commit; returns how many were stored.

        Those of examples or runs deleted since they were predicted (by another kernel while the
        worker predicts, say) are left out: a prediction never outlives what it is about.
        """
        encoded = []
        for entry in entries:
            stored = {k: v for k, v in entry.items() if k not in ("mask", "mask_png", "mask_tif")}
            blob: tuple[bytes, str] | None = None
            if entry.get("mask_png") is not None:
                blob = (entry["mask_png"], "png")
            elif entry.get("mask_tif") is not None:
                blob = (entry["mask_tif"], "tif")
            elif entry.get("mask") is not None:
                mask = np.asarray(entry["mask"])
                if mask.ndim == 3:
                    blob = (volumes.encode_volume(np.ascontiguousarray(mask, dtype=np.uint8)), "tif")
                    stored["slices"] = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)).tolist()
                else:
                    blob = (imaging.encode_mask_png(mask), "png")
            encoded.append((stored, blob))
        if not encoded:
            return 0
        with self.write():
            ids = []
            for stored, blob in encoded:
                example_id, run_id = stored["example_id"], stored["run_id"]
                if self.store.get("examples", example_id) is None or self.store.get("runs", run_id) is None:
                    continue
                if blob is not None:
                    stored["mask_ref"] = self.store.put_blob(*blob)
                self.store.put("predictions", f"{run_id}:{example_id}", stored)
                ids.append(example_id)
            if ids:
                model_id, tables = encoded[0][0]["model_id"], ("predictions",)
                self.emit(Change("predictions_changed", model_id=model_id, example_ids=tuple(ids), tables=tables))
        return len(ids)

    def vacuum(self) -> VacuumReport:
        with self.write():
            self.require("developer", "vacuuming the project")
        return self.store.vacuum()


def _whose(table: str, key: str) -> str:
    """``"of <reader> "`` for a reading's key, else nothing (in messages)."""
    return f"of {key.split('/', 1)[1]} " if table == "readings" else ""


def _multi_reader(model_record: dict[str, Any]) -> bool:
    """Whether the model's examples are read by several readers each."""
    return int((model_record.get("reading") or {}).get("readers", 1)) > 1


def label_event(action: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """The audit event of a label change."""
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
        "made_with": new.get("made_with"),
        "created": new["created"],
        **{
            k: new[k] for k in ("reader", "review", "readers", "agreement", "pairs", "slices") if new.get(k) is not None
        },
    }


MADE_WITH_BYTES = 16_384  # the most a label's ``made_with`` may take as JSON


def _made_with(value: Any) -> dict[str, Any]:
    """``made_with`` checked: a dict that JSON writes in at most MADE_WITH_BYTES (no NaN, no objects)."""
    import json

    if not isinstance(value, dict):
        raise ValidationError(f"made_with is a dict (how the label was made), not {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"made_with must be plain JSON (text, numbers, lists, dicts): {e}") from None
    if len(text) > MADE_WITH_BYTES:
        raise ValidationError(f"made_with takes {len(text)} bytes as JSON; at most {MADE_WITH_BYTES}")
    return json.loads(text)


def _seconds(value: Any) -> float | None:
    """``time_spent`` checked: None, or a finite number of seconds, not negative."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"time_spent is a number of seconds, not {value!r}") from None
    if not np.isfinite(seconds) or seconds < 0:
        raise ValidationError(f"time_spent is a number of seconds, 0 or more, not {value!r}")
    return seconds


def _text_map(values: Any, what: str) -> dict[str, str]:
    """A {name: text} mapping given by a user, checked (names are one line; values may not hold controls)."""
    if not isinstance(values, dict):
        raise ValidationError(f"{what} is a dict of strings, not {type(values).__name__}")
    out = {}
    for key, value in values.items():
        if not isinstance(value, str | int | float):
            raise ValidationError(f"{what} values are strings, not {value!r}")
        out[clean_name(key, f"{what} name")] = clean_text(str(value), f"{what} value", limit=1000)
    return out
