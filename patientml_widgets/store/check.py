"""``python -m patientml_widgets check PATH [--repair]``: find every problem of a project folder.

:func:`check` reads everything without trusting anything: the manifest, every shard
file it names, every committed audit line, every record's references (its model, its
example, its blobs). :func:`repair` then rebuilds what the audit trail proves - labels
(each version's event holds its classes and mask), the manifest (from the newest
readable shard files), an audit trail without its unreadable lines - removes what
points nowhere (labels of examples that are gone, stale cached predictions), and says
plainly what it could not restore. A copy of every file it replaces goes to
``damaged/<time>/`` first. Run it with no other kernel using the project.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock

from ..errors import StoreError
from ..team import ROLES
from .audit import encode_events
from .blobs import BlobStore, is_blob_ref
from .files import atomic_write, fsync_dir, make_dirs, write_new
from .storage import Records, decode_shard, encode_shard
from .store import (
    AUDIT,
    AUDIT_FILE,
    COMMIT_FILE,
    LAYOUT_SCHEMA,
    MANIFEST,
    TABLES,
    TMP,
    blob_refs,
    now,
    read_manifest,
    schema_for,
    shard_name,
    shard_of,
)

__all__ = ["CheckReport", "check", "repair"]

LABEL_ACTIONS = ("submit", "save", "delete", "repair", "accept", "return", "consensus", "adjudicate")


@dataclass
class CheckReport:
    """What :func:`check` found (and :func:`repair` did)."""

    root: Path
    problems: list[str] = field(default_factory=list)  #: damage: the project does not read as it should
    notes: list[str] = field(default_factory=list)  #: leftovers and upkeep; nothing is lost
    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  #: what repair could not restore

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost

    def __str__(self) -> str:
        state = f"{len(self.problems)} problem(s)" if self.problems else "no problems"
        if self.repaired or self.lost:
            state = "repaired" + (f"; {len(self.problems)} problem(s) remain" if self.problems else "")
        lines = [f"{self.root}: {state}"]
        for title, items in (("problem", self.problems), ("repaired", self.repaired), ("NOT restored", self.lost)):
            lines += [f"  {title}: {item}" for item in items]
        lines += [f"  note: {item}" for item in self.notes]
        return "\n".join(lines)


@dataclass
class _State:
    """The project as far as it can be read."""

    manifest: dict[str, Any] | None
    shards: dict[str, dict[str, dict[str, Any]]]  # shard name -> records (damaged ones absent)
    damaged: dict[str, str]  # shard name -> what is wrong
    events: list[dict[str, Any]]
    audit_lines: list[bytes]  # committed, readable lines
    audit_bad: list[int]  # committed line numbers that do not parse
    audit_cut: bool
    unrepairable: list[str] = field(default_factory=list)  # problems whose data is stored nowhere else

    def table(self, table: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for shard in range(TABLES[table]):
            out.update(self.shards.get(shard_name(table, shard), {}))
        return out


def _names() -> list[tuple[str, str]]:
    return [(table, shard_name(table, s)) for table, n in TABLES.items() for s in range(n)]


def _read(root: Path, report: CheckReport) -> _State:
    try:
        found = read_manifest(root)
        if found["schema_version"] < LAYOUT_SCHEMA:
            raise StoreError(
                f"{root} uses schema {found['schema_version']}: open it once (that migrates it), then check"
            )
        manifest: dict[str, Any] | None = found
    except StoreError as e:
        if "newer" in str(e):
            raise
        report.problems.append(str(e).split(". Run")[0])
        manifest = None
    files = manifest["files"] if manifest else _newest_files(root)
    shards, damaged = {}, {}
    for table, name in _names():
        file = files.get(name)
        if file is None:
            continue
        path = root / "tables" / file
        try:
            shards[name] = decode_shard(path.read_bytes(), table, path)
        except FileNotFoundError:
            damaged[name] = f"{path} is missing"
        except StoreError as e:
            damaged[name] = str(e).split(". Run `python -m")[0]
    for what in damaged.values():
        report.problems.append(what)
    audit_path = root / (manifest.get("audit", AUDIT) if manifest else _newest_audit(root))
    raw = audit_path.read_bytes() if audit_path.exists() else b""
    committed = manifest["audit_bytes"] if manifest else raw.rfind(b"\n") + 1
    cut = len(raw) < committed or (committed and not raw[:committed].endswith(b"\n"))
    if cut:
        report.problems.append(
            f"{root / 'audit.jsonl'} is shorter than the commits say ({len(raw)} of {committed} bytes)"
        )
    elif len(raw) > committed:
        report.notes.append(
            f"audit.jsonl holds {len(raw) - committed} bytes a killed commit wrote (the next write cuts them)"
        )
    body = raw[:committed]
    body = body[: body.rfind(b"\n") + 1]
    events, lines, bad = [], [], []
    for number, line in enumerate(body.splitlines(), start=1):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            events.append(event)
            lines.append(line + b"\n")
        else:
            bad.append(number)
    if bad:
        report.problems.append(f"{audit_path}: line(s) {_few(bad)} are damaged (not JSON events)")
    return _State(manifest, shards, damaged, events, lines, bad, bool(cut))


def _newest_audit(root: Path) -> str:
    """For a lost manifest: the audit trail the last repair wrote, else audit.jsonl."""
    names = [p.name for p in root.glob("audit*.jsonl") if AUDIT_FILE.match(p.name)]
    return max(names, key=lambda n: int(n.split(".")[1]) if n.count(".") == 2 else -1, default=AUDIT)


def _newest_files(root: Path) -> dict[str, str]:
    """For a lost manifest: the newest readable file of each shard."""
    best: dict[str, tuple[int, str]] = {}
    table_of = {name: table for table, name in _names()}
    for path in (root / "tables").glob("*.json"):
        m = COMMIT_FILE.match(path.name)
        if not m or m["shard"] not in table_of:
            continue
        try:
            decode_shard(path.read_bytes(), table_of[m["shard"]], path)
        except (OSError, StoreError):
            continue
        if int(m["commit"]) >= best.get(m["shard"], (-1, ""))[0]:
            best[m["shard"]] = (int(m["commit"]), path.name)
    return {name: file for name, (_, file) in best.items()}


def _few(items: list[Any], n: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


_LABEL_EVENT = {
    "example_id": lambda v: isinstance(v, str),
    "model_id": lambda v: isinstance(v, str),
    "version": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    "status": lambda v: v in ("draft", "submitted", "deleted"),
    "time": lambda v: isinstance(v, str),
}


@dataclass
class _Trail:
    """What the audit trail proves about labels and deletions."""

    labels: dict[str, list[dict[str, Any]]]  # example id -> label events by version
    readings: dict[str, list[dict[str, Any]]]  # "<example id>/<reader>" -> its events by version (0: assigned)
    deleted_examples: set[str]
    deleted_models: set[str]
    unusable: int  # label events that lack what a label needs


def _label_history(events: list[dict[str, Any]]) -> _Trail:
    """Label events by example, by version (a retried version replaces an uncommitted one)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    readings: dict[str, dict[int, dict[str, Any]]] = {}
    deleted_examples: set[str] = set()
    deleted_models: set[str] = set()
    unusable = 0
    for e in events:
        action = e.get("action")
        if action in LABEL_ACTIONS and "reader" in e:  # one reader's reading of an example read by several
            if isinstance(e["reader"], str) and all(k in e and ok(e[k]) for k, ok in _LABEL_EVENT.items()):
                readings.setdefault(f"{e['example_id']}/{e['reader']}", {})[e["version"]] = e
            else:
                unusable += 1
        elif action == "assign" and isinstance(e.get("assigned"), dict) and isinstance(e.get("model_id"), str):
            for reader, ids in e["assigned"].items():
                for example_id in ids if isinstance(ids, list) else []:
                    if isinstance(example_id, str):
                        readings.setdefault(f"{example_id}/{reader}", {})[0] = {
                            "example_id": example_id, "model_id": e["model_id"], "reader": reader,
                            "status": "assigned", "version": 0, "time": e.get("time", ""), "actor": e.get("actor"),
                        }  # fmt: skip
        elif action in LABEL_ACTIONS:
            if all(k in e and ok(e[k]) for k, ok in _LABEL_EVENT.items()):
                out.setdefault(e["example_id"], {})[e["version"]] = e
            else:
                unusable += 1
        elif action == "delete_example" and isinstance(e.get("example_id"), str):
            out.pop(e["example_id"], None)
            for key in [k for k in readings if k.split("/", 1)[0] == e["example_id"]]:
                del readings[key]
            deleted_examples.add(e["example_id"])
        elif action == "delete_model" and isinstance(e.get("model_id"), str):
            deleted_models.add(e["model_id"])
    labels = {k: [v[n] for n in sorted(v)] for k, v in out.items()}
    read = {k: [v[n] for n in sorted(v)] for k, v in readings.items()}
    return _Trail(labels, read, deleted_examples, deleted_models, unusable)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def label_from_event(event: dict[str, Any], history: list[dict[str, Any]], problem_type: str | None) -> dict[str, Any]:
    """The label record an audit event wrote."""
    created = event.get("created")
    if created is None:  # events before 0.3 do not carry it: the first event since the last deletion
        created = event["time"]
        for e in history:
            if e["version"] > event["version"]:
                break
            created = e["time"] if e.get("status") == "deleted" or created is None else created
    kind = event.get("kind") or ("mask" if event.get("mask_ref") or problem_type == "segmentation" else "classes")
    return {
        "example_id": event["example_id"],
        "model_id": event["model_id"],
        "kind": kind,
        "status": event["status"],
        "classes": [c for c in event.get("classes") or [] if isinstance(c, int)],
        "mask_ref": event.get("mask_ref") if is_blob_ref(event.get("mask_ref")) else None,
        "author": event.get("actor"),
        "time_spent": event.get("time_spent"),
        "source": str(event.get("source", "human")),
        "version": event["version"],
        "created": created,
        "updated": event["time"],
        **({"made_with": event["made_with"]} if isinstance(event.get("made_with"), dict) else {}),
        **({"review": event["review"]} if isinstance(event.get("review"), dict) else {}),
        **({"readers": event["readers"]} if _texts(event.get("readers")) else {}),
        **({"agreement": event["agreement"]} if isinstance(event.get("agreement"), float) else {}),
        **({"pairs": event["pairs"]} if isinstance(event.get("pairs"), dict) else {}),
    }


def reading_from_event(
    event: dict[str, Any], history: list[dict[str, Any]], problem_type: str | None
) -> dict[str, Any]:
    """The reading record an audit event wrote (version 0: the assignment)."""
    kind = "mask" if problem_type == "segmentation" else "classes"
    if event["version"] == 0:
        time = str(event.get("time", ""))
        return {
            "example_id": event["example_id"], "model_id": event["model_id"], "reader": event["reader"],
            "kind": kind, "status": "assigned", "version": 0, "classes": [], "mask_ref": None,
            "author": str(event.get("actor") or ""), "source": "human", "created": time, "updated": time,
        }  # fmt: skip
    record = label_from_event(event, history, problem_type)
    record["reader"] = event["reader"]
    return record


def check(root: str | os.PathLike) -> CheckReport:
    """Every problem of the project in ``root`` (it changes nothing)."""
    report = CheckReport(Path(root))
    state = _read(report.root, report)
    _check_references(report.root, state, report)
    _check_leftovers(report.root, state, report)
    return report


def _check_references(root: Path, state: _State, report: CheckReport) -> None:
    blobs = BlobStore(root / "blobs", root / TMP)

    def lost(problem: str) -> None:
        report.problems.append(problem)
        state.unrepairable.append(problem)

    models, examples, labels = state.table("models"), state.table("examples"), state.table("labels")
    runs = state.table("runs")
    for table, name in _names():
        for key in state.shards.get(name, {}):
            if shard_name(table, shard_of(table, key)) != name:
                report.problems.append(f"{table} record {key!r} is in the wrong shard file ({name})")
    for ex in examples.values():
        if ex["model_id"] not in models and "models" not in state.damaged:
            lost(f"example {ex['id']} belongs to model {ex['model_id']}, which is gone")
        for ref in (ex.get("image_ref"), ex.get("thumbnail_ref")):
            if ref and not blobs.exists(ref):
                lost(f"example {ex['id']}: its file {blobs.path(ref)} is missing")
    for key, label in labels.items():
        if key not in examples and shard_name("examples", shard_of("examples", key)) not in state.damaged:
            report.problems.append(f"the label of example {key} has no example record")
        if label.get("mask_ref") and not blobs.exists(label["mask_ref"]):
            report.problems.append(f"the mask of example {key} (v{label['version']}) is missing")
    readings = state.table("readings")
    for key, read in readings.items():
        example_id = key.split("/", 1)[0]
        if example_id not in examples and shard_name("examples", shard_of("examples", example_id)) not in state.damaged:
            report.problems.append(f"the reading {key} has no example record")
        if read.get("mask_ref") and not blobs.exists(read["mask_ref"]):
            report.problems.append(f"the mask of reading {key} (v{read['version']}) is missing")
    trail = _label_history(state.events)
    for key, events in trail.readings.items():
        name = shard_name("readings", shard_of("readings", key))
        if key.split("/", 1)[0] in examples and name not in state.damaged and key not in readings:
            report.problems.append(
                f"the reading {key} (v{events[-1]['version']} in the audit trail) is missing from tables/{name}"
            )
    for example_id, events in trail.labels.items():
        name = shard_name("labels", shard_of("labels", example_id))
        if example_id in examples and name not in state.damaged and example_id not in labels:
            report.problems.append(
                f"the label of example {example_id} (v{events[-1]['version']} in the audit trail) is missing "
                f"from tables/{name}"
            )
    for run in runs.values():
        if run["model_id"] not in models and "models" not in state.damaged:
            lost(f"run {run['id']} belongs to model {run['model_id']}, which is gone")
        if run.get("artifact_ref") and not blobs.exists(run["artifact_ref"]):
            lost(f"run {run['id']}: its weights {blobs.path(run['artifact_ref'])} are missing (train it again)")
    for model in models.values():
        if model.get("champion_run_id") and model["champion_run_id"] not in runs and "runs" not in state.damaged:
            lost(f"model {model['name']!r} is deployed with run {model['champion_run_id']}, which is gone")
    for code in state.table("code").values():
        if not blobs.exists(code["source_ref"]):
            lost(f"model code {code['name']!r}: its source {blobs.path(code['source_ref'])} is missing")
    stale = [
        k
        for k, p in state.table("predictions").items()
        if p["run_id"] not in runs or p.get("example_id") not in examples
    ]
    if stale:
        report.problems.append(f"{len(stale)} cached prediction(s) refer to runs or examples that are gone")


def _check_leftovers(root: Path, state: _State, report: CheckReport) -> None:
    if state.manifest is not None:
        named = set(state.manifest["files"].values()) | {r[0] for r in state.manifest["retired"]}
        unnamed = [p.name for p in (root / "tables").glob("*") if p.is_file() and p.name not in named]
        if unnamed:
            report.notes.append(f"{len(unnamed)} file(s) in tables/ no commit refers to (the next write removes them)")
    scratch = [p.name for p in root.glob(".import-*")] + [p.name for p in (root / TMP).glob("*")]
    if scratch:
        report.notes.append(f"{len(scratch)} temp file(s) or scratch folder(s) (the next open or write removes them)")
    keep: set[str] = set()
    for records in state.shards.values():
        blob_refs(list(records.values()), keep)
    blob_refs(state.events, keep)
    spare = [p for ref, p in BlobStore(root / "blobs", root / TMP).stored() if ref not in keep]
    if spare and not state.damaged:
        size = sum(p.stat().st_size for p in spare)
        report.notes.append(
            f"{len(spare)} blob file(s) nothing refers to ({size / 1e6:.1f} MB): Project.vacuum() removes them"
        )


def repair(root: str | os.PathLike) -> CheckReport:
    """Rebuild what the audit trail proves and commit it; the report says what could not be restored."""
    root = Path(root)
    with FileLock(root / ".lock", timeout=60):
        report = CheckReport(root)
        state = _read(root, report)
        _check_references(root, state, report)
        if not report.problems:
            return report
        backup = root / "damaged" / time.strftime("%Y%m%d-%H%M%S")
        _repair(root, state, report, backup)
        after = check(root)
        report.problems = [f"(still) {p}" for p in after.problems]
        return report


def _repair(root: Path, state: _State, report: CheckReport, backup: Path) -> None:
    blobs = BlobStore(root / "blobs", root / TMP)
    _back_up(root, state, backup)
    work = _Repair(state, report, backup, blobs)
    work.report_manifest_and_audit()
    work.empty_damaged_shards()
    work.report_unusable_events()
    work.rebuild_damaged_label_shards()
    work.rebuild_damaged_members()
    work.restore_readings()
    work.restore_missing_labels()
    work.move_misplaced_records()
    work.remove_labels_of_deleted_examples()
    work.remove_stale_predictions()
    work.restore_missing_masks()
    report.lost += [f"{p} (not stored anywhere else: restore it from a backup)" for p in state.unrepairable]
    _commit(root, state, work.shards, work.changed, work.new_events)


def _back_up(root: Path, state: _State, backup: Path) -> None:
    """Copy the audit trails, the manifest and the damaged shard files to ``backup`` first."""
    make_dirs(backup)
    for path in [*root.glob("audit*.jsonl"), root / MANIFEST]:
        if path.exists():
            shutil.copy2(path, backup / path.name)
    for name in state.damaged:
        file = (state.manifest["files"] if state.manifest else {}).get(name)
        if file and (root / "tables" / file).exists():
            shutil.copy2(root / "tables" / file, backup / file)


class _Repair:
    """One repair's working copy: the shards as read, which of them changed, the audit events to add."""

    def __init__(self, state: _State, report: CheckReport, backup: Path, blobs: BlobStore) -> None:
        self.state, self.report, self.backup, self.blobs = state, report, backup, blobs
        self.shards = {name: dict(records) for name, records in state.shards.items()}
        self.changed: set[str] = set()
        self.new_events: list[dict[str, Any]] = []
        self.trail = _label_history(list(state.events))
        self.history = self.trail.labels
        self.problem_type = {m["id"]: m["problem_type"] for m in state.table("models").values()}
        self.examples: dict[str, dict[str, Any]] = {}  # the example records that read well (once known)

    def _label(self, trail: list[dict[str, Any]]) -> dict[str, Any]:
        """The label record of the newest event in an example's trail."""
        last = trail[-1]
        return label_from_event(last, trail, self.problem_type.get(last["model_id"]))

    def report_manifest_and_audit(self) -> None:
        state = self.state
        if state.manifest is None:
            self.report.repaired.append(f"{MANIFEST} rebuilt from the newest readable shard files")
        if state.audit_bad or state.audit_cut:
            self.report.lost.append(
                f"the audit trail: {len(state.audit_bad)} unreadable line(s) removed"
                + (", and the end of the trail was cut" if state.audit_cut else "")
                + f" (the old file is in {self.backup})"
            )

    def empty_damaged_shards(self) -> None:
        """Damaged shards start empty: labels come back from the audit trail; the rest cannot."""
        for name in self.state.damaged:
            self.shards[name] = {}
            self.changed.add(name)
            if not name.startswith(("labels", "readings", "members")):
                table = name.split("-")[0]
                known = [k for k in self.history if name == shard_name("examples", shard_of("examples", k))]
                extra = (
                    f"; at least {len(known)} examples with labels were in it" if table == "examples" and known else ""
                )
                self.report.lost.append(
                    f"tables/{name}: its {table} records cannot be rebuilt (the audit trail does not hold them)"
                    f"{extra}; restore the file from a backup (a copy is in {self.backup})"
                )
        # the example records as they stand from here on (the later moves between shards leave this as it is)
        self.examples = {
            k: v for name, recs in self.shards.items() if name.startswith("examples") for k, v in recs.items()
        }

    def report_unusable_events(self) -> None:
        if self.trail.unusable:
            self.report.lost.append(
                f"{self.trail.unusable} label event(s) in the audit trail lack what a label needs; not used"
            )

    def rebuild_damaged_label_shards(self) -> None:
        """Damaged label shards: each example's newest label event in the audit trail, if the example is known."""
        examples_lost = [n for n in self.state.damaged if n.startswith("examples")]
        for name in [n for n in self.state.damaged if n.startswith("labels")]:
            restored = orphaned = 0
            for example_id, trail in self.history.items():
                if shard_name("labels", shard_of("labels", example_id)) != name or not trail:
                    continue
                if example_id not in self.examples:
                    orphaned += 1
                    continue
                self.shards[name][example_id] = self._label(trail)
                restored += 1
            self.report.repaired.append(
                f"tables/{name}: {restored} label(s) rebuilt from the audit trail, masks included"
            )
            if orphaned and examples_lost:
                self.report.lost.append(
                    f"tables/{name}: {orphaned} label(s) of examples whose records were lost are not restored"
                )

    def restore_readings(self) -> None:
        """Readings of known examples that the audit trail holds and a shard lacks (a damaged one starts empty)."""
        rebuilt: dict[str, int] = {}
        for key, trail in self.trail.readings.items():
            name = shard_name("readings", shard_of("readings", key))
            if key.split("/", 1)[0] not in self.examples or key in self.shards.get(name, {}):
                continue
            last = trail[-1]
            self.shards.setdefault(name, {})[key] = reading_from_event(
                last, trail, self.problem_type.get(last["model_id"])
            )
            self.changed.add(name)
            rebuilt[name] = rebuilt.get(name, 0) + 1
        for name, count in sorted(rebuilt.items()):
            self.report.repaired.append(f"tables/{name}: {count} reading(s) rebuilt from the audit trail")

    def rebuild_damaged_members(self) -> None:
        """A damaged member list: replayed from the audit trail's member events (never left empty: that would
        turn the roles off).
        """
        if "members" not in self.state.damaged:
            return
        members: dict[str, dict[str, Any]] = {}
        for event in self.state.events:
            user, action = event.get("user"), event.get("action")
            if not isinstance(user, str) or not user:
                continue
            if action == "set_member" and event.get("role") in ROLES:
                added = members.get(user, {}).get("added", event.get("time", ""))
                members[user] = {
                    "user": user,
                    "role": event["role"],
                    "added": added,
                    "added_by": event.get("actor", ""),
                }
            elif action == "remove_member":
                members.pop(user, None)
        self.shards["members"] = members
        self.report.repaired.append(f"tables/members: {len(members)} member(s) rebuilt from the audit trail")

    def restore_missing_labels(self) -> None:
        """Labels missing from a shard that reads well, while the audit trail holds them."""
        for example_id, trail in self.history.items():
            name = shard_name("labels", shard_of("labels", example_id))
            if (
                example_id in self.examples
                and name not in self.state.damaged
                and example_id not in self.shards.get(name, {})
            ):
                self.shards.setdefault(name, {})[example_id] = self._label(trail)
                self.changed.add(name)
                self.report.repaired.append(
                    f"the label of example {example_id} (v{trail[-1]['version']}) restored from the audit trail"
                )

    def move_misplaced_records(self) -> None:
        """Records in the wrong shard file go to the right one."""
        for table, name in _names():
            for key in list(self.shards.get(name, {})):
                right = shard_name(table, shard_of(table, key))
                if right != name:
                    self.shards.setdefault(right, {})[key] = self.shards[name].pop(key)
                    self.changed |= {name, right}
                    self.report.repaired.append(f"{table} record {key!r} moved to its shard file")

    def remove_labels_of_deleted_examples(self) -> None:
        """Labels and readings without an example: removed if the audit trail deleted it, kept (and the example
        reported) if it was lost.
        """
        for name in [n for n in self.shards if n.startswith(("labels", "readings"))]:
            for key in [k for k in self.shards[name] if k.split("/", 1)[0] not in self.examples]:
                example_id = key.split("/", 1)[0]
                if shard_name("examples", shard_of("examples", example_id)) in self.state.damaged:
                    continue
                deleted = example_id in self.trail.deleted_examples
                if deleted or self.shards[name][key]["model_id"] in self.trail.deleted_models:
                    del self.shards[name][key]
                    self.changed.add(name)
                    what = f"reading {key.split('/', 1)[1]}" if "/" in key else "label"
                    self.report.repaired.append(
                        f"the {what} of deleted example {example_id} removed (its history stays in the audit trail)"
                    )
                elif "/" not in key:  # its example was lost, not deleted: keep the label for when it comes back
                    self.report.lost.append(
                        f"example {key} is gone without a deletion in the audit trail (its record was lost)"
                    )

    def remove_stale_predictions(self) -> None:
        """Cached predictions of runs or examples that are gone."""
        runs = {k: v for name, recs in self.shards.items() if name == "runs" for k, v in recs.items()}
        for name in [n for n in self.shards if n.startswith("predictions")]:
            records = self.shards[name]
            stale = [
                k for k, p in records.items() if p["run_id"] not in runs or p.get("example_id") not in self.examples
            ]
            for key in stale:
                del records[key]
            if stale:
                self.changed.add(name)
                self.report.repaired.append(f"{len(stale)} stale cached prediction(s) removed from tables/{name}")

    def restore_missing_masks(self) -> None:
        """Labels whose mask file is gone: the newest version whose mask is there, as a new version."""
        for name in [n for n in self.shards if n.startswith("labels")]:
            for key, label in list(self.shards[name].items()):
                if label.get("mask_ref") and not self.blobs.exists(label["mask_ref"]):
                    self._restore_mask(name, key, label)

    def _restore_mask(self, name: str, key: str, label: dict[str, Any]) -> None:
        """A repair event that makes the newest older version with its mask there the new version."""
        trail = self.history.get(key, [])
        older = [
            e
            for e in trail
            if e["version"] < label["version"] and e.get("mask_ref") and self.blobs.exists(e["mask_ref"])
        ]
        if not older:
            self.report.lost.append(
                f"example {key}: the mask of label v{label['version']} is missing and no older version has one"
            )
            return
        source = older[-1]
        event = {
            **source,
            "action": "repair",
            "version": label["version"] + 1,
            "previous_version": label["version"],
        }
        event.update(time=now(), actor="check --repair", created=label["created"])
        self.new_events.append(event)
        self.shards[name][key] = label_from_event(event, trail, None)
        self.changed.add(name)
        self.report.repaired.append(
            f"example {key}: the mask of v{label['version']} is missing; "
            f"v{source['version']}'s restored as v{event['version']}"
        )


def _commit(root: Path, state: _State, shards, changed: set[str], new_events: list[dict[str, Any]]) -> None:
    """Write the repaired shards and audit trail, then a new manifest (the commit)."""
    make_dirs(root / TMP)
    make_dirs(root / "tables")
    old = state.manifest
    files = dict(old["files"]) if old else _newest_files(root)
    commits = [int(m["commit"]) for p in (root / "tables").glob("*.json") if (m := COMMIT_FILE.match(p.name))]
    number = max([old["commit"] if old else 0, *commits]) + 1
    table_of = {name: table for table, name in _names()}
    for name in sorted(changed):
        file = f"{name}.{number}.json"
        write_new(
            root / "tables" / file, encode_shard(table_of[name], Records.of(shards.get(name, {}), table_of[name]))
        )
        files[name] = file
    fsync_dir(root / "tables")
    audit = b"".join(state.audit_lines) + encode_events(new_events)
    audit_name = f"audit.{number}.jsonl"  # a new file: a kill before the manifest leaves the old trail in use
    write_new(root / audit_name, audit)
    fsync_dir(root)
    manifest: dict[str, Any] = {
        "schema_version": schema_for(files, (old or {}).get("schema_version", LAYOUT_SCHEMA)),
        "created": (old or {}).get("created") or now(),
        "commit": number,
        "audit": audit_name,
        "audit_bytes": len(audit),
        "files": files,
        "retired": [],
    }
    atomic_write(root / MANIFEST, orjson.dumps(manifest), tmp_dir=root / TMP)
