"""Read-only views of the project's records, as handed to users and widgets.

The store holds plain dicts; these frozen dataclasses are what :class:`Project`
returns. Change things through :class:`Project`, never by editing a record.
"""

from __future__ import annotations

import copy
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeGuard

import numpy as np

from .errors import NotFoundError, ValidationError

__all__ = [
    "PALETTE",
    "PROBLEM_TYPES",
    "SPLITS",
    "STATUSES",
    "Change",
    "ClassInfo",
    "Example",
    "Label",
    "Model",
    "ModelCode",
    "Prediction",
    "Run",
    "Subject",
    "check_class_names",
    "class_indices",
    "class_record",
    "class_records",
    "clean_name",
    "clean_text",
    "is_color",
    "name_key",
    "split_for",
    "visible",
]

ProblemType = Literal["classification", "segmentation"]
ExampleStatus = Literal["unlabeled", "draft", "labeled"]

PROBLEM_TYPES = ("classification", "segmentation")
SPLITS = ("train", "val", "test")
#: fractions of subjects that go to train and val; the rest go to test.
SPLIT_FRACTIONS = (0.7, 0.15)
STATUSES = ("unlabeled", "draft", "labeled")
#: the colours classes get when none is given (by index)
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
#: the tables of a project (``Change.tables`` names these)
TABLES = ("models", "subjects", "examples", "labels", "readings", "runs", "predictions", "code", "members")


def visible(text: str) -> str:
    """``text`` with every character a name may not hold (but line breaks and tabs) written as an escape."""
    return "".join(
        ch if ch in "\n\t" or not _refused_character(ch) else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _whole(value: Any, default: int) -> int:
    """An integer from a stored source field, or ``default`` if it holds something else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _build(cls, record: dict[str, Any], **extra: Any):
    """A dataclass from a store record, copying nested values so no one edits the store's own."""
    values = {}
    for f in fields(cls):
        if f.name in extra:
            values[f.name] = extra[f.name]
        elif f.name in record:
            value = record[f.name]
            if isinstance(value, list):
                value = tuple(copy.deepcopy(value))
            elif isinstance(value, dict):
                value = copy.deepcopy(value)
            values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class ClassInfo:
    index: int
    name: str
    color: str
    description: str = ""

    @classmethod
    def from_record(cls, c: dict[str, Any]) -> ClassInfo:
        """From a stored class: a colour that is not #rrggbb (a crafted project) gets the palette's."""
        index = int(c["index"])
        color = c.get("color")
        description = c.get("description")
        return cls(
            index=index,
            name=str(c["name"]),
            color=color.lower() if is_color(color) else PALETTE[index % len(PALETTE)],
            description=description if isinstance(description, str) else "",
        )


@dataclass(frozen=True)
class Model:
    """A model config: a row of the model table."""

    id: str
    name: str
    problem_type: ProblemType
    classes: tuple[ClassInfo, ...]
    description: str = ""
    multi_label: bool = False
    champion_run_id: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    retrain: dict[str, Any] = field(default_factory=dict)
    #: several readers per example (see :mod:`patientml_widgets.reading`); empty: one label per example
    reading: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Model:
        classes = tuple(ClassInfo.from_record(c) for c in record["classes"])
        return _build(cls, record, classes=classes)

    @property
    def deployed(self) -> bool:
        return self.champion_run_id is not None

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def class_index(self, ref: int | str) -> int:
        """The index of a class given by name or index; NotFoundError if the model has none such."""
        if isinstance(ref, str):
            ref = unicodedata.normalize("NFC", ref)
            found = [c.index for c in self.classes if c.name == ref]
        elif isinstance(ref, int | np.integer) and not isinstance(ref, bool | np.bool_):
            found = [c.index for c in self.classes if c.index == int(ref)]
        else:
            raise NotFoundError(f"a class is given by its name or index, not {ref!r}")
        if found:
            return found[0]
        raise NotFoundError(f"model {self.name!r} has no class {ref!r} (classes: {self.class_names})")


@dataclass(frozen=True)
class Subject:
    """A patient (or any unit that must never span splits)."""

    id: str
    name: str
    external_ids: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    #: what the source said about the subject (e.g. DICOM PatientName); stays in the project
    metadata: dict[str, str] = field(default_factory=dict)
    created: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Subject:
        return _build(cls, record)


@dataclass(frozen=True)
class Example:
    """One image to label, with its derived status at the time it was read."""

    id: str
    model_id: str
    subject_id: str | None
    split: str
    width: int
    height: int
    channels: int
    dtype: str
    image_ref: str
    thumbnail_ref: str
    source: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    status: ExampleStatus = "unlabeled"
    label_updated: str | None = None
    #: volumes only: the number of slices, ``(dz, dy, dx)`` in mm, and the 4 x 4 affine from
    #: (column, row, slice) indices to RAS+ mm (see ``imaging.volumes``)
    depth: int | None = None
    spacing: tuple[float, ...] | None = None
    affine: tuple[tuple[float, ...], ...] | None = None
    #: volumes only: how many slices the current label gives a class other than the background
    labeled_slices: int | None = None
    #: a reviewer's verdict on the label: "accepted", "returned", or None (not reviewed)
    review: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any], label: dict[str, Any] | None = None) -> Example:
        live = label if label is not None and label["status"] != "deleted" else None
        slices = live.get("slices") if live is not None else None
        verdict = (live.get("review") or {}).get("state") if live is not None else None
        example = _build(
            cls,
            record,
            status=status_of(label),
            label_updated=label_time(label),
            labeled_slices=len(slices) if isinstance(slices, list) else None,
            review=verdict if verdict in ("accepted", "returned") else None,
        )
        if example.affine is not None:  # rows as tuples too: the record's lists are not shared
            object.__setattr__(example, "affine", tuple(tuple(row) for row in example.affine))
        return example

    @property
    def is_volume(self) -> bool:
        return self.depth is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(height, width)``, or ``(depth, height, width)`` for a volume: the shape of its mask."""
        return (self.height, self.width) if self.depth is None else (self.depth, self.height, self.width)

    @property
    def size(self) -> str:
        """``"512 x 512"``, or a volume's ``"512 x 512 x 300 (0.70 x 0.70 x 2.50 mm)"`` (columns, rows, slices)."""
        text = f"{self.width} x {self.height}"
        if self.depth is None:
            return text
        text += f" x {self.depth}"
        if self.spacing:
            dz, dy, dx = self.spacing
            text += f" ({dx:.2f} x {dy:.2f} x {dz:.2f} mm)"
        return text

    @property
    def origin(self) -> str:
        """Where the image came from, in a few words: ``"CT Phantom chest 3/8"`` or the file name."""
        s = self.source
        if s.get("series_uid"):
            words = [s.get("modality", ""), s.get("series_description", "")]
            size, index = _whole(s.get("series_size"), 1), _whole(s.get("series_index"), 0)
            if size > 1:
                words.append(f"{index + 1}/{size}")
            return " ".join(str(w) for w in words if w) or str(s.get("file", ""))
        return str(s.get("file", ""))


@dataclass(frozen=True)
class Label:
    """The current annotation of an example."""

    example_id: str
    model_id: str
    status: Literal["draft", "submitted", "assigned"]  #: assigned: a reading not begun
    version: int
    classes: tuple[int, ...] = ()
    mask_ref: str | None = None
    author: str = ""
    time_spent: float | None = None
    source: str = "human"
    created: str = ""
    updated: str = ""
    #: volumes only: the slices that hold a class other than the background
    slices: tuple[int, ...] | None = None
    #: how the label was made (LabelCanvas: edits per tool; per interactive engine the proposals
    #: accepted / rejected and the prompts they took), or None when not recorded
    made_with: dict[str, Any] | None = None
    #: a reviewer's verdict: ``{"state": "accepted" | "returned", "by", "comment", "time"}``, or None
    review: dict[str, Any] | None = None
    #: one reader's label of an example read by several: the reader (None: the example's own label)
    reader: str | None = None
    #: the example's own label made from readings: whose, and how well they agreed (mean pairwise Dice or
    #: share of agreeing pairs)
    readers: tuple[str, ...] = ()
    agreement: float | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Label:
        return _build(cls, record)


@dataclass(frozen=True)
class QueueEntry:
    """An example in one reader's queue: where it stands for them, and a reviewer's comment if returned."""

    example: Example
    state: str  #: to do, draft, returned, submitted or accepted
    comment: str = ""


@dataclass(frozen=True)
class Run:
    """One trained version of a model: what it was trained on, how, and how well it did."""

    id: str
    model_id: str
    slug: str
    status: str  #: queued, running, succeeded, failed or cancelled
    trigger: str
    snapshot: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)
    trials: tuple[dict[str, Any], ...] = ()
    test_examples: tuple[dict[str, Any], ...] = ()  #: per test example score, worst first
    approvals: tuple[dict[str, Any], ...] = ()
    distributed: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)  #: summary of the training data
    plan: dict[str, Any] = field(default_factory=dict)  #: settings derived from the fingerprint and machine
    hardware: dict[str, Any] = field(default_factory=dict)  #: device, precision, threads and why
    training: dict[str, Any] = field(default_factory=dict)  #: steps done, best step, why it stopped, seconds
    #: the test evaluation with intervals (``evaluation.evaluate``): overall, champion, difference, subgroups,
    #: calibration; computed by the worker after training
    evaluation: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)  #: per-class operating thresholds chosen on validation
    classes: tuple[dict[str, Any], ...] = ()  #: the class vocabulary it was trained with (its outputs' order)
    model_card: dict[str, Any] = field(default_factory=dict)  #: written when the run is deployed
    artifact_ref: str | None = None
    error: str | None = None
    traceback: str | None = None
    created: str = ""
    started: str | None = None
    ended: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Run:
        return _build(cls, record)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    @property
    def objective(self) -> tuple[str, float | None]:
        """The objective metric's name and its value on the test split (None until evaluated)."""
        name = self.spec.get("objective", "")
        return name, self.metrics.get("test", {}).get(name)


@dataclass(frozen=True)
class ModelCode:
    """Model code stored in a project: its source, where it came from, and whether you trust it."""

    name: str
    source: str
    factory: str
    train_step: str | None
    registered_by: str
    registered: str | None
    file: str  #: the stored source file, to read in any editor
    trusted: bool  #: by the current user (only trusted code runs)

    def __repr__(self) -> str:
        """The source as it would run, with every hidden character shown (an escape sequence that
        conceals a line in a terminal, a bidi override that reorders it: "Trojan Source").
        """
        state = "trusted by you" if self.trusted else "NOT trusted by you: it does not run"
        who, when = visible(self.registered_by), visible(str(self.registered))
        header = f"# model code {self.name!r}, registered by {who} on {when}; {state}"
        hidden = sum(1 for line in self.source.splitlines() for ch in line if _refused_character(ch, "\t"))
        if hidden:
            header += (
                f"\n# WARNING: the source holds {hidden} hidden character(s), shown as \\x.. / \\u....; read it closely"
            )
        return f"{header}\n# stored in {visible(self.file)}\n{visible(self.source)}"


@dataclass(frozen=True, eq=False)
class Prediction:
    """The deployed run's output for one image."""

    run_id: str
    example_id: str | None
    probabilities: dict[str, float]  #: per class (segmentation: mean over the pixels)
    uncertainty: float  #: 0 = sure; used to order the labeling queue
    mask: Any = None  #: segmentation: uint8 class indices at the image's size
    #: classification: the run's operating threshold per class, chosen on validation (empty: none chosen)
    thresholds: dict[str, float] = field(default_factory=dict)
    multi_label: bool = False

    @property
    def classes(self) -> list[str]:
        """Classification: the predicted class (single-label) or classes (multi-label: those whose probability
        reaches its threshold, 0.5 without one; the most probable when none does).

        With thresholds, a single-label prediction of two classes is the second (the finding) when its
        probability reaches its threshold, else the first; of more classes, the class whose probability is
        largest relative to its threshold (1 / the number of classes for a class without one).
        """
        p, t = self.probabilities, self.thresholds
        ranked = sorted(p, key=lambda c: p[c], reverse=True)
        if not t:
            return [c for c in ranked if p[c] >= 0.5] or ranked[:1]
        if self.multi_label:
            return [c for c in ranked if p[c] >= t.get(c, 0.5)] or ranked[:1]
        names = list(p)
        if len(names) == 2 and names[1] in t:
            return [names[1] if p[names[1]] >= t[names[1]] else names[0]]
        return [max(ranked, key=lambda c: p[c] / max(t.get(c, 1 / len(p)), 1e-9))]


@dataclass(frozen=True)
class Change:
    """What a project observer is told after a change is committed.

    ``kind`` is one of: model_created, model_updated, model_deleted, subject_changed,
    examples_added, example_deleted, label_saved, label_submitted, label_deleted,
    run_created, run_updated, predictions_changed, code_registered, members_changed, and external (another
    process changed the project: ``tables`` says which tables its commits moved).
    ``tables`` names the tables the change wrote, so a view refreshes only what concerns it.
    """

    kind: str
    model_id: str | None = None
    example_ids: tuple[str, ...] = ()
    run_id: str | None = None
    subject_id: str | None = None
    tables: tuple[str, ...] = ()

    def touches(self, *tables: str) -> bool:
        """Whether the change wrote any of ``tables`` (a change that names none may have written any)."""
        return not self.tables or any(t in self.tables for t in tables)


def status_of(label: dict[str, Any] | None) -> ExampleStatus:
    if label is None or label["status"] == "deleted":
        return "unlabeled"
    return "labeled" if label["status"] == "submitted" else "draft"


def label_time(label: dict[str, Any] | None) -> str | None:
    if label is None or label["status"] == "deleted":
        return None
    return label["updated"]


# -- vocabulary and naming rules ---------------------------------------------------------------


def split_for(key: str) -> str:
    """The split of a subject (or of an example with no subject): stable, from a hash."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    if h < SPLIT_FRACTIONS[0]:
        return "train"
    return "val" if h < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1] else "test"


def is_color(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is a colour written ``#rrggbb``."""
    return isinstance(value, str) and _COLOR.match(value) is not None


#: characters no name or text may hold: control characters (NUL, newline, escape ...), bidirectional
#: overrides and isolates that make text display in another order than it is stored (U+202E ...),
#: zero-width and other invisible format characters, line/paragraph separators, surrogates.
#: Zero-width (non-)joiners stay: scripts such as Persian and Devanagari, and emoji, need them.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_JOINERS = "\u200c\u200d"
#: invisible characters pasted text carries that free text (not a name) may keep: the left-to-right,
#: right-to-left and Arabic letter marks (they change no order of what is stored), the soft hyphen,
#: and the tag characters of flag emoji
_TEXT_MARKS = "\u200e\u200f\u061c\u00ad"


def _refused_character(text: str, allowed: str = "") -> str | None:
    for ch in text:
        if ch in allowed or ch in _JOINERS:
            continue
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return ch
    return None


def _flag_tags(text: str) -> str:
    """The tag characters (U+E0020-E007F) of flag emoji in ``text`` (they follow U+1F3F4)."""
    return "".join({ch for ch in text if "\U000e0020" <= ch <= "\U000e007f"}) if "\U0001f3f4" in text else ""


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'control character')}"


def clean_name(value: Any, what: str) -> str:
    """A name: NFC-normalised, stripped of surrounding space, one line of visible text.

    ValidationError if it is not text, empty, over 200 characters, or holds a control,
    bidirectional-override or invisible format character (a name is shown, compared and written
    into files: "Cafe" with a composed and a decomposed accent is one name).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"a {what} must be a non-empty string, not {value!r}")
    value = unicodedata.normalize("NFC", value.strip())
    if unicodedata.category(value[0]).startswith("M"):
        raise ValidationError(f"a {what} cannot begin with a combining mark (in {value!r})")
    bad = _refused_character(value, allowed=_flag_tags(value))
    if bad is not None:
        raise ValidationError(
            f"a {what} cannot contain {_describe(bad)} (in {value!r}); use visible characters on one line"
        )
    if len(value) > 200:
        raise ValidationError(f"a {what} must be at most 200 characters")
    return value


def clean_text(value: Any, what: str, *, limit: int = 10_000) -> str:
    """Free text (a description, a comment): NFC-normalised; line breaks and tabs allowed.

    ValidationError if it is not text, longer than ``limit``, or holds another control,
    bidirectional-override or invisible format character.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"a {what} must be a string, not {type(value).__name__}")
    value = unicodedata.normalize("NFC", value)
    bad = _refused_character(value, allowed="\n\t" + _TEXT_MARKS + _flag_tags(value))
    if bad is not None:
        raise ValidationError(f"a {what} cannot contain {_describe(bad)}; remove it and try again")
    if len(value) > limit:
        raise ValidationError(f"a {what} must be at most {limit} characters, not {len(value)}")
    return value


def name_key(name: str) -> str:
    """What two names are compared by: compatibility-normalised and case-folded, so "Café" equals
    "CAFE\u0301" and a fullwidth "A" (U+FF21) equals "a" (names that look the same are one name).
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def class_records(classes: Sequence[str | dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Class records in the given order, and the retired placeholders for indices left out."""
    if isinstance(classes, (str, bytes, dict)) or not isinstance(classes, Sequence | Iterable):
        raise ValidationError(f"classes are a list of names or dicts (name, color, description), not {classes!r}")
    specs = []
    for c in classes:
        if not isinstance(c, str | dict):
            raise ValidationError(f"a class is a name or a dict (name, color, description), not {c!r}")
        specs.append({"name": c} if isinstance(c, str) else dict(c))
    given = ["index" in c for c in specs]
    if not any(given):
        return [class_record(i, c) for i, c in enumerate(specs)], []
    if not all(given):
        raise ValidationError("give an index for every class or for none")
    try:
        indices = [int(c.pop("index")) for c in specs]
    except (TypeError, ValueError):
        raise ValidationError("class indices are integers") from None
    if len(set(indices)) != len(indices) or not all(0 <= i <= 255 for i in indices):
        raise ValidationError(f"class indices must be distinct and within 0-255, not {indices}")
    records = [class_record(i, c) for i, c in zip(indices, specs, strict=True)]
    retired = [
        {"index": i, "name": f"(retired {i})", "color": PALETTE[i % len(PALETTE)], "description": ""}
        for i in range(max(indices))
        if i not in set(indices)
    ]
    return records, retired


def class_record(index: int, spec: str | dict[str, Any]) -> dict[str, Any]:
    """One class record (index, name, colour, description), checked."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    unknown = set(spec) - {"name", "color", "description"}
    if unknown:
        raise ValidationError(f"a class has name, color and description, not {sorted(unknown)}")
    color = spec.get("color")
    color = PALETTE[index % len(PALETTE)] if color is None or (isinstance(color, str) and not color) else color
    if not is_color(color):
        raise ValidationError(f"class colors are written #rrggbb, not {color!r}")
    return {
        "index": index,
        "name": clean_name(spec.get("name"), "class name"),
        "color": str(color).lower(),
        "description": clean_text(spec.get("description"), "class description"),
    }


def check_class_names(names: list[str]) -> None:
    """ValidationError if a class name is given twice (case-insensitively)."""
    seen = set()
    for name in names:
        if name_key(name) in seen:
            raise ValidationError(f"class name {name!r} is given twice")
        seen.add(name_key(name))


def class_indices(model: Model, classes: Any) -> list[int]:
    """The sorted class indices a classification label names (by name or index), checked."""
    items = [classes] if isinstance(classes, (str, int, np.integer)) else list(classes)
    try:
        indices = sorted({model.class_index(int(c) if isinstance(c, np.integer) else c) for c in items})
    except NotFoundError as e:
        raise ValidationError(str(e)) from None
    if not model.multi_label and len(indices) != 1:
        raise ValidationError(f"model {model.name!r} takes exactly one class per example, got {items!r}")
    return indices
