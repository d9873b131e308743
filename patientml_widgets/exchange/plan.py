"""Plan a folder import: which files, in what order, for which subject and split, with what label.

Planning reads no pixels: DICOM headers only. It decides

- the files: every image under the folder (PNG/JPEG/TIFF/.npy, and DICOM by suffix or by its
  'DICM' marker), or exactly the rows of an index CSV;
- the subject: the CSV's ``subject`` column, else DICOM PatientID, else the parent folder;
- the split: the CSV's ``split`` column, else a folder named train / val / test on the way
  to the file, else (``None``) the project's hash of the subject;
- the order: DICOM series together, slices along the slice normal (then instance number),
  frames in frame order; other files by path;
- the label: the CSV's ``mask`` (a PNG of class indices) or ``classes`` (names joined by ``|``);
  a ``frame`` column picks one frame of a multi-frame DICOM file, so frames are labeled one by one.

Paths in a CSV are relative to the folder and must stay inside it; a file that cannot be
planned is skipped with the reason, and the rest still imports.
"""

from __future__ import annotations

import errno
import lzma
import math
import os
import shutil
import stat
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ImageError, PatientMLError, StoreError, ValidationError
from ..imaging import IMAGE_SUFFIXES
from ..imaging.dicom import DicomHeader, is_dicom, read_dicom_header, read_frame_headers
from ..imaging.volumes import is_nifti, stack_series
from ..store.files import inside
from . import csvfile
from .dicom_seg import is_segmentation

__all__ = ["SPLIT_FOLDERS", "Entry", "Plan", "SeriesVolume", "extract_zip", "plan_coco", "plan_folder", "unpack_cap"]

#: Zip archives. One import unpacks at most the smaller of MAX_ARCHIVE_BYTES and
#: ARCHIVE_FREE_FRACTION of the free space on the project's disk (see ``unpack_cap``): the
#: absolute cap is what stops a bomb, however its bytes are spread over members.
MAX_ARCHIVE_BYTES = 64 * 1024**3
ARCHIVE_FREE_FRACTION = 0.5
#: A member over RATIO_FROM_BYTES that inflates more than MAX_COMPRESSION_RATIO times is refused.
#: DEFLATE tops out near 1032:1 (reached only by long runs of one byte), so the old 1100:1 never
#: fired. Real images stay far below 200:1: deflated DICOM CT/MR and 16-bit .npy scans run about
#: 2-10:1, mostly-black radiographs and scans with wide air margins 10-50:1; PNG/JPEG/compressed
#: DICOM are already compressed (about 1:1). Only near-constant data (a crafted bomb, or an
#: empty image no model learns from) passes 200:1. Small members are exempt: a blank 1 MB mask
#: at 1000:1 costs nothing, and whatever they add up to is bounded by the absolute cap.
MAX_COMPRESSION_RATIO = 200
RATIO_FROM_BYTES = 4 * 1024**2

#: Folder names that set the split (case-insensitive).
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
IMAGE_COLUMNS = ("image", "file", "path")
#: index columns read exactly as written (free text); the others are paths, numbers or keywords,
#: read without the space around them
EXACT_COLUMNS = frozenset({"author"})
SKIPPED_NAMES = frozenset({"DICOMDIR", "Thumbs.db", "desktop.ini"})

SubjectRule = str | Callable[[Path], str | None]


@dataclass
class Entry:
    """One file to import (a DICOM file may give several frames)."""

    path: Path
    rel: str
    subject: str | None
    split: str | None
    label: dict[str, Any] | None = None
    dicom: DicomHeader | None = None
    #: display fields an index row gives (modality, window, invert)
    display: dict[str, Any] = field(default_factory=dict)
    #: an index row's ``frame`` (0-based): import just this frame of a multi-frame DICOM file
    frame: int | None = None
    #: DICOM: where this file's first frame sits in its series, and the series' frame count
    series_start: int = 0
    series_size: int = 1
    #: a NIfTI file: one volume
    nifti: bool = False


@dataclass
class SeriesVolume:
    """One DICOM series (or the part of it of one size and orientation) to stack into a volume."""

    rel: str  # the series' folder, as the report names it
    entries: list[Entry]  # in slice order
    affine: Any  # 4 x 4, voxel indices to RAS+ mm
    subject: str | None
    split: str | None
    #: an enhanced multi-frame file (one entry): its frames in slice order
    frames: list[int] | None = None


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: ``plan_folder(..., volumes=True)``: the DICOM series stacked as volumes (their files are not in ``entries``)
    volumes: list[SeriesVolume] = field(default_factory=list)
    #: ``volumes=True``: DICOM SEG files, imported as the labels of the volumes they segment
    segmentations: list[tuple[str, Path]] = field(default_factory=list)


def plan_folder(
    root: Path,
    *,
    index: str | os.PathLike | None = None,
    subject_from: SubjectRule = "auto",
    split_from: str = "auto",
    recursive: bool = True,
    volumes: bool = False,
) -> Plan:
    """The import plan for ``root`` (a folder, or one file).

    ``volumes``: every DICOM series of two or more slices becomes one volume (split by slice size
    and orientation, a part of one image staying a 2-D example), and NIfTI files are volumes;
    without it, every DICOM frame is an image and NIfTI files are skipped (saying why).
    """
    if not (callable(subject_from) or subject_from in ("auto", "folder", "dicom", "none")):
        raise ValidationError("subject_from must be 'auto', 'folder', 'dicom', 'none' or a function of the path")
    if split_from not in ("auto", "hash"):
        raise ValidationError("split_from must be 'auto' (index column, else a train/val/test folder) or 'hash'")
    plan = Plan()
    if root.is_file():
        rows = [{"image": root.name}]
        base = root.parent
    elif index is not None:
        base = root
        rows = _read_index(root, Path(index))
    else:
        base = root
        rows = [{"image": p.relative_to(root).as_posix()} for p in _walk(root, recursive)]
    for row in rows:
        try:
            entry = _plan_row(base, row, subject_from, split_from, plan, volumes)
        except (OSError, ValueError, RuntimeError) as e:  # a name the file system cannot take, a link loop
            if isinstance(e, PatientMLError):
                raise
            rel = next((row[c] for c in IMAGE_COLUMNS if row.get(c)), "") or "(empty)"
            plan.skipped.append((rel, _os_reason(e)))
            continue
        if entry is not None:
            plan.entries.append(entry)
    _order_series(plan.entries)
    if volumes:
        _stack_series(plan, root.name)
    _check_splits(plan)
    return plan


def extract_zip(archive: Path, target: Path) -> list[tuple[str, str]]:
    """Unpack ``archive`` into the empty folder ``target``; return the members skipped and why.

    Each member that cannot be unpacked safely is skipped with its reason and the rest goes on:
    a name that leaves ``target`` (absolute, ``..`` past the top, a drive letter), a link, a
    name the file system refuses (too long, a NUL), a name another member already took (a file
    and a folder of the same name, or the same name twice), an encrypted member, an unsupported
    compression method, damaged data (bad CRC, truncated), and a member compressed beyond
    MAX_COMPRESSION_RATIO. The whole archive is refused (ValidationError) when its members
    unpack to more than :func:`unpack_cap` - checked from the archive's directory before
    anything is written, and again on the bytes actually written, since a directory can lie.
    """
    skipped: list[tuple[str, str]] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ValidationError(
            f"{archive.name} is not a readable zip archive ({e}); check the file, or unpack it and import the folder"
        ) from None
    with zf:
        members = []
        for member in zf.infolist():
            if member.is_dir():
                continue
            reason = _member_refused(member)
            if reason:
                skipped.append((member.filename, reason))
            else:
                members.append(member)
        free = shutil.disk_usage(target).free
        cap = unpack_cap(free)
        total = sum(m.file_size for m in members)
        if total > cap:
            raise _too_big(archive, total, cap, free)
        written = 0
        for member in members:
            reason, size = _extract_member(zf, member, target, cap - written)
            written += size
            if reason:
                skipped.append((member.filename, reason))
            if written > cap:  # the directory lied: stop now
                raise _too_big(archive, written, cap, free, counted=True)
    return skipped


def unpack_cap(free: int) -> int:
    """The most one archive import may unpack, given the free bytes on the project's disk.

    Half the free space, because the import then stores each image again (losslessly) in the
    project's blobs before the unpacked copy is removed; and never more than MAX_ARCHIVE_BYTES.
    """
    return min(MAX_ARCHIVE_BYTES, int(free * ARCHIVE_FREE_FRACTION))


def _too_big(archive: Path, total: int, cap: int, free: int, *, counted: bool = False) -> ValidationError:
    how = "unpacked more than it declares, past" if counted else "would unpack to"
    return ValidationError(
        f"{archive.name} {how} {_gb(total)} GB; one import may unpack at most {_gb(cap)} GB here "
        f"(half the {_gb(free)} GB free on the project's disk, and never over {_gb(MAX_ARCHIVE_BYTES)} GB). "
        "Nothing was imported: free disk space, split the archive, or unpack it yourself and import the folder"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g}"


def _member_refused(member: zipfile.ZipInfo) -> str | None:
    """Why a member is skipped before any byte of it is read, or None."""
    name = member.filename
    if "\0" in name:
        return "its name holds a NUL character"
    if ":" in name.replace("\\", "/").split("/")[0] or name.replace("\\", "/").startswith("/"):
        return "the name leaves the archive's folder (an absolute path or a drive letter)"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "it is a link (links are not followed)"
    if member.flag_bits & 0x1:
        return "it is encrypted; unpack the archive with its password and import the folder"
    if member.file_size > RATIO_FROM_BYTES and member.file_size > max(member.compress_size, 1) * MAX_COMPRESSION_RATIO:
        ratio = member.file_size / max(member.compress_size, 1)
        return (
            f"refused as a possible zip bomb: {member.file_size / 1e6:.0f} MB from {member.compress_size / 1e3:.0f} KB "
            f"({ratio:.0f}:1; real images stay below {MAX_COMPRESSION_RATIO}:1)"
        )
    return None


def _extract_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> tuple[str | None, int]:
    """Unpack one member: (why it was skipped or None, the bytes written and kept).

    Writes at most its declared size and at most ``budget`` bytes (a file that passes either is
    removed); a full disk is a StoreError for the whole import.
    """
    try:
        path = inside(target, member.filename)
    except (OSError, ValueError, RuntimeError) as e:
        return _os_reason(e), 0
    if path is None or path == target.resolve():
        return "the name leaves the archive's folder", 0
    created = False
    written = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "xb": never over another member (a clash is skipped, not merged); zf.open fails first
        with zf.open(member) as src, open(path, "xb") as dst:
            created = True
            limit = min(member.file_size, budget)
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    path.unlink()
                    if written > budget:
                        return None, written  # past the import's cap: the caller refuses the archive
                    return "it inflates past the size it declares", 0
                dst.write(chunk)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(
                f"the disk is full while unpacking {member.filename}; free space and import the archive again"
            ) from None
        reason = _os_reason(e)
    except zipfile.BadZipFile as e:
        reason = f"it is damaged ({e}); the archive may be truncated or corrupt"
    except (EOFError, zlib.error, lzma.LZMAError) as e:
        reason = f"it is damaged or truncated ({type(e).__name__}: {e})"
    except NotImplementedError:
        reason = f"its compression method ({member.compress_type}) is not supported; repack it with deflate"
    except RuntimeError as e:  # zipfile: encrypted without a password flag, and the like
        reason = f"it cannot be unpacked ({e})"
    except ValueError as e:
        reason = f"it cannot be unpacked ({e})"
    else:
        return None, written
    if created:
        with suppress(OSError):
            path.unlink()
    return reason, 0


def _os_reason(e: BaseException) -> str:
    """A skipped file's reason for an error of the file system (or of a name it cannot take)."""
    code = getattr(e, "errno", None)
    if code == errno.ENAMETOOLONG:
        return "its name is too long for this file system"
    if code in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return "its name clashes with another member (a file and a folder, or two files, of the same name)"
    if code == errno.ELOOP or isinstance(e, RuntimeError):
        return "its path runs through a loop of links"
    if isinstance(e, ValueError):
        return f"its name cannot be a file name ({e})"
    return f"it could not be written ({getattr(e, 'strerror', None) or e})"


def _walk(root: Path, recursive: bool) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            if name.startswith(".") or name in SKIPPED_NAMES:
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES or is_nifti(path) or is_dicom(path):
                found.append(path)
    return found


def _read_index(root: Path, index: Path) -> list[dict[str, str]]:
    path = index if index.is_absolute() else root / index
    if not path.is_file():
        raise ValidationError(f"no index file {path}")
    header, table = csvfile.read_csv(path)
    columns = [c.strip().lower() for c in header]
    if not any(c in columns for c in IMAGE_COLUMNS):
        raise ValidationError(
            f"{path.name} needs an image column (one of {', '.join(IMAGE_COLUMNS)}); it has {columns[:20]}"
        )
    rows = []
    for cells in table:
        if not any(cells):
            continue  # a blank line
        row = dict.fromkeys(columns, "")
        for column, value in zip(columns, cells, strict=False):  # cells past the header are ignored
            row[column] = value if column in EXACT_COLUMNS else value.strip()
        rows.append(row)
    return rows


def _plan_row(base: Path, row: dict[str, str], subject_from, split_from, plan: Plan, volumes: bool) -> Entry | None:
    rel = next((row[c] for c in IMAGE_COLUMNS if row.get(c)), "")
    if "\0" in rel or any("\ud800" <= c <= "\udfff" for c in rel):
        # a file name of bytes that are not UTF-8 (os.fsdecode keeps them as surrogates): the project
        # stores names as text, so one such file would refuse its whole chunk
        plan.skipped.append((rel, "its name is not UTF-8 text (or holds a NUL); rename the file and import it again"))
        return None
    path = inside(base, rel)
    if path is None:
        plan.skipped.append((rel or "(empty)", "the path leaves the import folder or is empty"))
        return None
    if not path.is_file():
        plan.skipped.append((rel, "no such file"))
        return None
    header = None
    if is_nifti(path):
        if not volumes:
            plan.skipped.append((rel, "a NIfTI volume: import it with add_folder(..., volumes=True) or add_volume"))
            return None
    elif is_dicom(path):
        try:
            header = read_dicom_header(path, name=rel)
        except ImageError as e:
            if volumes and is_segmentation(path):
                plan.segmentations.append((rel, path))
            else:
                plan.skipped.append((rel, str(e)))
            return None
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
        plan.skipped.append((rel, f"unsupported file type {path.suffix or '(none)'}"))
        return None
    parts = Path(rel).parts[:-1]
    split = None
    if split_from == "auto":
        if row.get("split"):
            split = SPLIT_FOLDERS.get(row["split"].lower())
            if split is None:
                plan.skipped.append((rel, f"split must be train, val or test, not {row['split']!r}"))
                return None
        else:
            split = next((SPLIT_FOLDERS[p.lower()] for p in parts if p.lower() in SPLIT_FOLDERS), None)
    frame = None
    if row.get("frame"):
        if header is None or not (row["frame"].isascii() and row["frame"].isdigit()):
            plan.skipped.append((rel, f"frame {row['frame']!r}: a frame number (from 0) of a DICOM file"))
            return None
        frame = int(row["frame"])
    subject = _subject(path, parts, row, header, subject_from, plan)
    label = _label_spec(base, rel, row, plan)
    if label is False:
        return None
    spec = label if isinstance(label, dict) and label else None
    entry = Entry(path=path, rel=rel, subject=subject, split=split, label=spec, dicom=header, frame=frame)
    entry.display = _display(row)
    entry.nifti = is_nifti(path)
    return entry


def _display(row: dict[str, str]) -> dict[str, Any]:
    """Modality, window and inversion from an index row (as an export writes them)."""
    out: dict[str, Any] = {}
    if row.get("modality"):
        out["modality"] = row["modality"]
    try:
        center, width = float(row.get("window_center", "")), float(row.get("window_width", ""))
    except ValueError:
        pass
    else:
        if width > 0 and math.isfinite(width) and math.isfinite(center):
            out["window"] = {"center": center, "width": width}
            out["windows"] = [dict(out["window"])]
    if row.get("invert", "").lower() in ("1", "true", "yes"):
        out["invert"] = True
    return out


def _subject(path: Path, parts: tuple[str, ...], row: dict[str, str], header, rule, plan: Plan) -> str | None:
    if callable(rule):
        value = rule(path)
        return None if value is None else str(value)
    if rule == "none":
        return None
    if rule == "auto" and "subject" in row:  # an index with a subject column decides, even when empty
        return row["subject"] or None
    if rule in ("auto", "dicom") and header is not None:
        if header.patient_id:
            return header.patient_id
        if header.study_uid:
            plan.warnings.append(
                f"{path.name} has no PatientID; its study ({header.study_uid}) stands in as the subject"
            )
            return f"study-{header.study_uid}"
    if rule in ("auto", "folder"):
        folders = [p for p in parts if p.lower() not in SPLIT_FOLDERS]
        return folders[-1] if folders else None
    return None


def _label_spec(base: Path, rel: str, row: dict[str, str], plan: Plan) -> dict[str, Any] | bool:
    """The row's label: a mask file, or classes (``class_indices`` if given, else names); False to skip."""
    spec: dict[str, Any] = {}
    if row.get("mask"):
        mask = inside(base, row["mask"])
        if mask is None or not mask.is_file():
            plan.skipped.append((rel, f"its mask {row['mask']!r} is missing or outside the import folder"))
            return False
        spec["mask"] = mask
    elif row.get("class_indices") or row.get("classes") or (row.get("status") and "classes" in row):
        if row.get("class_indices"):
            try:
                spec["classes"] = [int(c) for c in row["class_indices"].split("|")]
            except ValueError:
                plan.skipped.append((rel, f"class_indices are integers joined by '|', not {row['class_indices']!r}"))
                return False
        else:
            spec["classes"] = [c.strip() for c in (row.get("classes") or "").split("|") if c.strip()]
    if spec:
        status = (row.get("status") or "submitted").lower()
        if status not in ("draft", "submitted"):
            plan.skipped.append((rel, f"status must be draft or submitted, not {row['status']!r}"))
            return False
        spec["status"] = status
        if row.get("author"):
            spec["author"] = row["author"]
    return spec


def plan_coco(root: Path, categories: list[dict[str, Any]], images: list[dict[str, Any]]) -> Plan:
    """The import plan for COCO images with their painted masks (from ``exports.read_coco``)."""
    plan = Plan()
    for im in images:
        rel = str(im.get("file_name") or "")
        path = inside(root, rel)
        if path is None or not path.is_file():
            plan.skipped.append((rel or "(empty)", "the image is missing or outside the import folder"))
            continue
        split = SPLIT_FOLDERS.get(str(im.get("split") or "").lower())
        subject = str(im["subject"]) if im.get("subject") else None
        status = str(im.get("status") or "submitted")
        # the mask is painted when this image is imported (exchange.export.coco_mask), not before
        label = {"coco": im, "status": status if status in ("draft", "submitted") else "submitted"}
        plan.entries.append(Entry(path=path, rel=rel, subject=subject, split=split, label=label))
    _check_splits(plan)
    return plan


def _order_series(entries: list[Entry]) -> None:
    """Sort in place: DICOM series together and in slice order, the other files by path."""
    series: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        if e.dicom is not None and e.dicom.series_uid:
            series[(e.dicom.study_uid, e.dicom.series_uid)].append(e)
    for members in series.values():
        members.sort(key=_slice_key)
        starts: dict[Path, int] = {}  # several index rows may name frames of one file: count it once
        start = 0
        for e in members:
            if e.path not in starts and e.dicom is not None:
                starts[e.path] = start
                start += e.dicom.frames
        for e in members:
            e.series_start, e.series_size = starts[e.path], start

    def key(e: Entry):
        if e.dicom is not None and e.dicom.series_uid:
            first = series[(e.dicom.study_uid, e.dicom.series_uid)][0].rel
            return (first, e.series_start + (e.frame or 0), e.rel)
        return (e.rel, e.frame or 0, e.rel)

    entries.sort(key=key)


def _slice_key(e: Entry):
    h = e.dicom
    assert h is not None  # only DICOM entries are ordered in series
    return (
        h.position is None,
        h.position if h.position is not None else 0.0,
        h.instance_number if h.instance_number is not None else 0,
        e.rel,
    )


def _stack_series(plan: Plan, root_name: str) -> None:
    """Move every DICOM series of two or more slices out of ``plan.entries`` into ``plan.volumes``.

    A series is split by slice size and orientation (a localizer at another angle is its own
    part); a part of one image stays a 2-D entry; a part that cannot be stacked (slices missing,
    two at one position, uneven steps) is skipped whole with the reason, so no volume is ever
    half-imported.
    """
    groups: dict[tuple[Any, ...], list[Entry]] = defaultdict(list)
    for e in plan.entries:
        h = e.dicom
        if h is not None and h.series_uid and h.frames == 1 and e.frame is None and not e.label:
            cosines = tuple(round(v, 3) for v in h.orientation) if h.orientation else None
            groups[(h.study_uid, h.series_uid, h.rows, h.columns, cosines)].append(e)
    parts: dict[tuple[str, str], int] = defaultdict(int)
    for key in groups:
        parts[key[:2]] += 1
    stacked: set[int] = set()
    for key, members in groups.items():
        if len(members) < 2:
            if parts[key[:2]] > 1:
                plan.warnings.append(
                    f"{members[0].rel}: one image of its series differs in size or orientation (a localizer?); "
                    "it is imported as a 2-D image"
                )
            continue
        rel = _series_folder(members, root_name)
        label = f"the series {rel}" + (
            f" ({members[0].dicom.series_description})"
            if members[0].dicom and members[0].dicom.series_description
            else ""
        )
        if parts[key[:2]] > 1:
            plan.warnings.append(
                f"{label} mixes slice sizes or orientations; each part of two or more slices is its own volume"
            )
        stacked.update(id(e) for e in members)
        try:
            order, affine = stack_series([e.dicom for e in members if e.dicom is not None], label)
        except ImageError as why:
            plan.skipped.append((rel, f"{why} (none of its {len(members)} files was imported)"))
            continue
        ordered = [members[i] for i in order]
        subjects = {e.subject for e in ordered}
        splits = {e.split for e in ordered}
        if len(subjects) > 1 or len(splits) > 1:
            plan.skipped.append((rel, "its slices belong to different subjects or splits; a volume is one patient's"))
            continue
        plan.volumes.append(SeriesVolume(rel, ordered, affine, subjects.pop(), splits.pop()))
    for entry in plan.entries:
        h = entry.dicom
        if h is not None and h.frames > 1 and entry.frame is None and not entry.label:
            volume = _multiframe_volume(entry, plan)
            if volume is not False:
                stacked.add(id(entry))
                if volume is not None:
                    plan.volumes.append(volume)
    plan.entries = [e for e in plan.entries if id(e) not in stacked]


def _multiframe_volume(e: Entry, plan: Plan) -> SeriesVolume | Literal[False] | None:
    """An enhanced multi-frame file as one volume.

    None: refused, with the reason; False: its frames are not planes in space (an ultrasound
    clip, say) and stay 2-D images.
    """
    try:
        frames = read_frame_headers(e.path, name=e.rel)
        if frames is None:
            return False
        order, affine = stack_series(frames, f"the multi-frame image {e.rel}")
    except ImageError as err:
        plan.skipped.append((e.rel, f"{err} (none of its frames was imported)"))
        return None
    return SeriesVolume(e.rel, [e], affine, e.subject, e.split, frames=order)


def _series_folder(members: list[Entry], root_name: str) -> str:
    """The folder the series' files share, relative to the import folder (named ``root_name``)."""
    common = os.path.commonpath([e.rel for e in members])
    if common in {e.rel for e in members}:
        common = str(Path(common).parent)
    return common if common not in ("", ".") else root_name


def _check_splits(plan: Plan) -> None:
    splits: dict[str, set[str]] = defaultdict(set)
    items: list[Entry | SeriesVolume] = [*plan.entries, *plan.volumes]
    for e in items:
        if e.subject is not None and e.split is not None:
            splits[e.subject].add(e.split)
    mixed = sorted(s for s, found in splits.items() if len(found) > 1)
    if mixed:
        shown = ", ".join(mixed[:5]) + (f" and {len(mixed) - 5} more" if len(mixed) > 5 else "")
        plan.warnings.append(
            f"{len(mixed)} subjects have images in more than one split ({shown}): "
            "a model tested on them has seen the same patients"
        )
