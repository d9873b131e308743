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
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import imaging, team
from .arguments import choice, flag, sequence
from .errors import NotFoundError, PermissionDenied, StoreError, ValidationError
from .imaging import volumes
from .query import STATUS_CODES, ExampleIndex
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
        """The example's current label (draft or submitted), or None."""
        record = self.label_record(self.example_record(ref)["id"])
        if record is None or record["status"] == "deleted":
            return None
        return Label.from_record(record)

    def label_at(self, example_id: str, version: int) -> dict[str, Any] | None:
        """The audit event that wrote ``version`` of an example's label (what a snapshot froze)."""
        return next((e for e in self.history(example_id) if e["version"] == version), None)

    def history(self, example_id: str) -> list[dict[str, Any]]:
        """The audit trail of one example's label, oldest first."""
        current = self.read().get("labels", example_id)
        by_version: dict[int, dict[str, Any]] = {}
        for event in self.store.audit.for_example(example_id):
            if "version" in event:
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
        self, model: ModelRef, *, status: str | Iterable[str] | None = None, subject=None, split=None
    ) -> tuple[Any, np.ndarray]:
        """The model's example columns and the positions of the rows that match the filters."""
        model_id = self.model_record(model)["id"]
        wanted = None
        if status is not None:
            given = [status] if isinstance(status, str) else sequence(status, "status")
            wanted = {choice(s, STATUSES, "status") for s in given}
        if split is not None:
            choice(split, SPLITS, "split")
        if subject is not None and not isinstance(subject, str):
            raise ValidationError(f"subject is a subject id (a string), not {subject!r}")
        return self.index.select(model_id, statuses=wanted, subject=subject, split=split)

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
        labels = [
            {"status": _LABEL_STATUS[c], "updated": t} if c in _LABEL_STATUS else None
            for c, t in zip(codes, times, strict=True)
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
        """The submitted labels training would use now: ``{split: [[example_id, version], ...]}``."""
        snap: dict[str, list[list[Any]]] = {s: [] for s in SPLITS}
        cols, rows = self.select(model, status="labeled")
        for example_id, split in zip(cols["id"][rows].tolist(), cols["split"][rows].tolist(), strict=True):
            label = self.store.get("labels", example_id)
            assert label is not None  # the column says it is labeled
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
            for run in [r for r in self.store.records("runs") if r["model_id"] == record["id"]]:
                self.store.delete("runs", run["id"])
            for key, cached in list(self.store.mapping("predictions").items()):
                if cached["model_id"] == record["id"]:
                    self.store.delete("predictions", key)
            self.store.delete("models", record["id"])
            event = {"time": now(), "actor": self.user, "action": "delete_model", "model_id": record["id"]}
            self.store.log({**event, "name": record["name"]})
            tables = ("models", "examples", "labels", "runs", "predictions")
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
            for run in self.store.records("runs"):
                if run["model_id"] == record["model_id"]:
                    self.store.delete("predictions", f"{run['id']}:{record['id']}")
            ids, tables = (record["id"],), ("examples", "labels", "predictions")
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
        """
        with self.write():
            record = self.example_record(example)
            model = Model.from_record(self.model_record(record["model_id"]))
            old = self.store.get("labels", record["id"])
            live = old if old is not None and old["status"] != "deleted" else None
            author = self._author(author)
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
                "source": clean_name(source, "label source"),
                "version": (old["version"] if old else 0) + 1,
                "created": live["created"] if live else stamp,
                "updated": stamp,
            }
            if slices is not None:
                new["slices"] = slices
            if made_with is not None:
                new["made_with"] = _made_with(made_with)
            self.store.log(label_event("submit" if status == "submitted" else "save", new, old))
            self.store.put("labels", record["id"], new)
            kind = "label_submitted" if status == "submitted" else "label_saved"
            self.emit(Change(kind, model_id=record["model_id"], example_ids=(record["id"],), tables=("labels",)))
        return Label.from_record(new)

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

    def delete_label(self, example: ExampleRef, *, author: str | None = None) -> None:
        """Delete the example's label (a tombstone version; the history stays in the audit trail)."""
        with self.write():
            record = self.example_record(example)
            old = self.store.get("labels", record["id"])
            if old is None or old["status"] == "deleted":
                raise NotFoundError(f"example {record['id']} has no label to delete")
            author = self._author(author)
            self._require_label_rights(old, author, "deleting a label")
            new = {**old, "status": "deleted", "mask_ref": None, "classes": [], "version": old["version"] + 1}
            new.update(author=author, updated=now())
            self.store.log(label_event("delete", new, old))
            self.store.put("labels", record["id"], new)
            ids = (record["id"],)
            self.emit(Change("label_deleted", model_id=record["model_id"], example_ids=ids, tables=("labels",)))

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
            self.decide(record["id"], "deploy", reason, actor)
            return self.update_model(record["model_id"], champion_run_id=record["id"])

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
