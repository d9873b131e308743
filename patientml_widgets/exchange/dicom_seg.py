"""Volume labels as DICOM Segmentation objects (SEG), for 3D Slicer, OHIF and PACS, and back.

Writing (:func:`write_dicom_seg`) uses highdicom and needs no source files: the metadata kept
on a volume example at import (``meta``: uids, positions, orientation, spacing, patient and
study attributes) is turned into header-only stand-ins of the source slices
(:func:`reference_datasets`), which is all highdicom reads from them. The SEG is BINARY, has
one segment per class present in the mask (segment numbers 1..n in ascending class order),
and every frame references the SOP instance of the slice it was cut from. The class index
is kept twice in each segment, so an import recovers it even after another tool rewrote one
of them: SegmentDescription and TrackingID both read ``patientml-widgets class <index>``;
SegmentLabel is the class name.

Reading (:func:`read_dicom_seg`) uses pydicom alone, so it reads SEGs from other tools too
(BINARY, FRACTIONAL thresholded at 0.5, and LABELMAP). Sizes are checked on the header
before any pixel data is read; frames are placed on the series' slices by their referenced
SOP instance uids, or by ImagePositionPatient when a SEG has no per-frame references and
the series geometry is given.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, ValidationError
from ..store.files import atomic_write

__all__ = [
    "MAX_SEG_BYTES",
    "SEG_SOP_CLASSES",
    "dicom_lab_to_rgb",
    "is_segmentation",
    "read_dicom_seg",
    "referenced_series",
    "reference_datasets",
    "rgb_to_dicom_lab",
    "write_dicom_seg",
]

#: SEG files on disk, and their decoded frames (one byte a voxel), larger than this are refused.
MAX_SEG_BYTES = 2 * 1024**3
#: Segmentation Storage and Label Map Segmentation Storage.
SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG", "1.2.840.10008.5.1.4.1.1.66.7": "LABELMAP"}

_MARK = "patientml-widgets class"
_MARK_RE = re.compile(r"^\s*patientml-widgets class (\d{1,3})\s*$")
#: generic SNOMED CT concepts (3D Slicer's default terminology entry): category and type "Tissue"
_TISSUE = ("85756007", "SCT", "Tissue")
_PATIENT_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
_STUDY_KEYS = ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")
_META_KEYS = ("sop_class_uid", "frame_of_reference_uid", "study_uid", "series_uid", "sop_uids", "positions")

#: What pydicom raises for a damaged file, on reading or on the first access of a (lazily
#: converted) value. Programming errors are not caught.
_DICOM_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    zlib.error,
    OverflowError,
    NotImplementedError,
    RuntimeError,
)


# --- colours -------------------------------------------------------------------------------------
# DICOM keeps recommended display colours as CIELab (D65 white, as highdicom converts), each
# component scaled to 0..65535: L* from 0..100, a* and b* from -128..127.


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _linear_to_srgb(c: float) -> float:
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


_WHITE = (0.95047, 1.0, 1.08883)
_EPS = (6 / 29) ** 3


def rgb_to_dicom_lab(color: str) -> list[int]:
    """``#rrggbb`` as a RecommendedDisplayCIELabValue (three 16-bit integers)."""
    r, g, b = (_srgb_to_linear(int(color[i : i + 2], 16) / 255) for i in (1, 3, 5))
    xyz = (
        0.4124 * r + 0.3576 * g + 0.1805 * b,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        0.0193 * r + 0.1192 * g + 0.9505 * b,
    )
    fx, fy, fz = (t ** (1 / 3) if t > _EPS else t / (3 * (6 / 29) ** 2) + 4 / 29 for t in _div(xyz, _WHITE))
    lab = (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))
    lightness = min(max(lab[0], 0.0), 100.0)
    a, b_ = (min(max(v, -128.0), 127.0) for v in lab[1:])
    return [round(lightness * 0xFFFF / 100), round((a + 128) * 0xFFFF / 255), round((b_ + 128) * 0xFFFF / 255)]


def _div(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Element-wise ``a / b`` of two triples."""
    return [x / y for x, y in zip(a, b)]


def dicom_lab_to_rgb(value: Sequence[Any]) -> str | None:
    """A RecommendedDisplayCIELabValue as ``#rrggbb`` (clipped to the sRGB gamut); None if malformed."""
    try:
        ell, a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) and 0 <= v <= 0xFFFF for v in (ell, a, b)):
        return None
    ell, a, b = ell * 100 / 0xFFFF, a * 255 / 0xFFFF - 128, b * 255 / 0xFFFF - 128
    fy = (ell + 16) / 116
    f = (fy + a / 500, fy, fy - b / 200)
    x, y, z = (w * (t**3 if t > 6 / 29 else 3 * (6 / 29) ** 2 * (t - 4 / 29)) for w, t in zip(_WHITE, f))
    rgb = (
        3.2406 * x - 1.5372 * y - 0.4986 * z,
        -0.9689 * x + 1.8758 * y + 0.0415 * z,
        0.0557 * x - 0.2040 * y + 1.0570 * z,
    )
    return "#" + "".join(f"{round(min(max(_linear_to_srgb(max(c, 0.0)), 0.0), 1.0) * 255):02x}" for c in rgb)


# --- writing -------------------------------------------------------------------------------------


def _check_meta(meta: Mapping[str, Any]) -> None:
    if not isinstance(meta, Mapping):
        raise ValidationError(f"the series metadata is a dict, not {type(meta).__name__}")
    missing = [k for k in (*_META_KEYS, "orientation", "pixel_spacing") if not meta.get(k)]
    if missing:
        raise ValidationError(f"the series metadata lacks {missing}: a DICOM SEG cannot reference the series")
    if len(meta["positions"]) != len(meta["sop_uids"]):
        raise ValidationError(
            f"the series metadata has {len(meta['sop_uids'])} SOP instance uids and {len(meta['positions'])} positions"
        )
    if len(set(meta["sop_uids"])) != len(meta["sop_uids"]):
        raise ValidationError("the series metadata names a SOP instance uid twice")
    try:
        positions = np.asarray(meta["positions"], dtype=float)
        orientation = np.asarray(meta["orientation"], dtype=float)
        spacing = np.asarray(meta["pixel_spacing"], dtype=float)
    except (TypeError, ValueError):
        raise ValidationError("the series metadata's positions, orientation and pixel spacing are numbers") from None
    if positions.shape != (len(meta["sop_uids"]), 3) or orientation.shape != (6,) or spacing.shape != (2,):
        raise ValidationError(
            "the series metadata needs one [x, y, z] position a slice, 6 orientation cosines and 2 pixel spacings"
        )
    if not (np.isfinite(positions).all() and np.isfinite(orientation).all() and (spacing > 0).all()):
        raise ValidationError("the series metadata's positions, orientation or pixel spacing are not finite")


def _ds_number(value: Any) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def reference_datasets(meta: Mapping[str, Any], rows: int, columns: int) -> list[Any]:
    """Header-only stand-ins of the series' slices, in ``meta``'s slice order, for highdicom.

    They carry what a SEG copies or references (uids, Frame of Reference, geometry, patient
    and study) and no pixel data: highdicom's ``Segmentation`` reads only headers of its
    source images.
    """
    from pydicom.dataset import Dataset

    _check_meta(meta)
    patient = dict(meta.get("patient") or {})
    study = dict(meta.get("study") or {})
    orientation = [_ds_number(v) for v in meta["orientation"]]
    spacing = [_ds_number(v) for v in meta["pixel_spacing"]]
    out = []
    for sop_uid, position in zip(meta["sop_uids"], meta["positions"]):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names may be anything; ASCII is a subset
        ds.SOPClassUID = str(meta["sop_class_uid"])
        ds.SOPInstanceUID = str(sop_uid)
        ds.StudyInstanceUID = str(meta["study_uid"])
        ds.SeriesInstanceUID = str(meta["series_uid"])
        ds.FrameOfReferenceUID = str(meta["frame_of_reference_uid"])
        ds.Modality = str(meta.get("modality") or "OT")
        if meta.get("series_number") is not None:
            ds.SeriesNumber = int(meta["series_number"])
        for key in _PATIENT_KEYS:
            setattr(ds, key, str(patient.get(key) or ""))  # highdicom reads each; empty is allowed (type 2)
        for key in _STUDY_KEYS:
            setattr(ds, key, str(study.get(key) or ""))
        ds.Rows, ds.Columns = int(rows), int(columns)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.ImagePositionPatient = [_ds_number(v) for v in position]
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = spacing
        if meta.get("slice_thickness") is not None:
            ds.SliceThickness = _ds_number(meta["slice_thickness"])
        out.append(ds)
    return out


def _class_table(segments: Iterable[Any]) -> dict[int, tuple[str, str]]:
    """Class index -> (name, colour) from class dicts or objects with index, name and color."""
    table: dict[int, tuple[str, str]] = {}
    for c in segments:
        get = c.get if isinstance(c, Mapping) else lambda k, c=c: getattr(c, k, None)
        raw: Any = get("index")
        try:
            index = int(raw)
        except (TypeError, ValueError):
            raise ValidationError(f"a class has an integer index, not {raw!r}") from None
        name, color = get("name"), get("color")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"class {index} has no name")
        if not (isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color)):
            raise ValidationError(f"class {index}'s colour is written #rrggbb, not {color!r}")
        if not 0 <= index <= 255 or index in table:
            raise ValidationError(f"class indices are distinct and within 0-255 ({index} is not)")
        table[index] = (name, color.lower())
    return table


def _lo(text: str) -> str:
    """A DICOM LO value: at most 64 characters, no backslash or control characters."""
    return re.sub(r"[\\\x00-\x1f\x7f]", " ", text).strip()[:64]


def write_dicom_seg(
    path: str | os.PathLike,
    mask: np.ndarray,
    meta: Mapping[str, Any],
    segments: Iterable[Any],
    *,
    series_description: str = "patientml-widgets labels",
    content_creator: str = "",
    manufacturer: str = "patientml-widgets",
) -> Path:
    """Write ``mask`` ((Z, Y, X) class indices, slice k = ``meta["sop_uids"][k]``) as a BINARY DICOM SEG.

    ``segments``: the model's classes (dicts or objects with index, name, color); one segment
    is written for each class present in the mask (background 0 never), numbered 1..n in
    ascending class index. The file is written whole to a temporary name and renamed.
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    _check_meta(meta)
    if not isinstance(mask, np.ndarray) or mask.ndim != 3 or mask.dtype.kind not in "biu":
        raise ValidationError("the mask is a (Z, Y, X) numpy array of integer class indices")
    if mask.shape[0] != len(meta["sop_uids"]) or 0 in mask.shape:
        raise ValidationError(f"the mask has {mask.shape[0]} slices; the series has {len(meta['sop_uids'])}")
    table = _class_table(segments)
    present = [int(v) for v in np.unique(mask) if v != 0]
    unknown = sorted(set(present) - set(table))
    if unknown:
        raise ValidationError(f"the mask holds class indices {unknown} that are not among the classes {sorted(table)}")
    if not present:
        raise ValidationError("the mask is empty: a DICOM SEG needs at least one labelled voxel")
    lut = np.zeros(256, np.uint8)
    descriptions = []
    tissue = Code(*_TISSUE)
    for number, index in enumerate(present, start=1):
        lut[index] = number
        name, color = table[index]
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=_lo(name) or f"class {index}",
            segmented_property_category=tissue,
            segmented_property_type=tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_id=f"{_MARK} {index}",
            tracking_uid=hd.UID(),
        )
        desc.SegmentDescription = f"{_MARK} {index}"
        desc.RecommendedDisplayCIELabValue = rgb_to_dicom_lab(color)
        descriptions.append(desc)
    labelmap = lut[mask.astype(np.uint8)]  # segment numbers; highdicom's label-map style input
    sources = reference_datasets(meta, mask.shape[1], mask.shape[2])
    series_number = meta.get("series_number")
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=labelmap,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=1000 + (int(series_number) if series_number is not None else 0),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=_lo(manufacturer),
            manufacturer_model_name="patientml-widgets",
            software_versions=_software_version(),
            device_serial_number="0",
            series_description=_lo(series_description) or None,
            content_description=_lo(series_description) or None,
            content_creator_name=_person(content_creator),
        )
        buffer = io.BytesIO()
        seg.save_as(buffer, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError) as e:
        raise ValidationError(f"the DICOM SEG could not be built from the series metadata: {e}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return path


def _person(name: str) -> str | None:
    """A user name as a DICOM person name: one component is the family name (a trailing caret says so)."""
    name = name.strip()
    if not name:
        return None
    return name if "^" in name else f"{name}^"


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("patientml-widgets")
    except PackageNotFoundError:
        return "0.0.0"


# --- reading -------------------------------------------------------------------------------------


def _dcmread(path: Path, *, pixels: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd value; errors are what count here
        try:
            return pydicom.dcmread(path, stop_before_pixels=not pixels)
        except InvalidDicomError:
            raise ImageError(f"{path.name} is not a DICOM file (no 'DICM' marker after the preamble)") from None
        except _DICOM_ERRORS as e:
            raise ImageError(f"{path.name} is not a readable DICOM file ({type(e).__name__}: {e})") from None


def is_segmentation(path: str | os.PathLike) -> bool:
    """Whether a DICOM file is a Segmentation (by its SOP class or modality), read without pixels."""
    try:
        ds = _dcmread(Path(path), pixels=False)
        return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES or str(ds.get("Modality", "")).upper() == "SEG"
    except ImageError:
        return False
    except _DICOM_ERRORS:
        return False


def referenced_series(path: str | os.PathLike, *, name: str | None = None) -> str:
    """The SeriesInstanceUID of the images a DICOM SEG segments (ValidationError if it names none)."""
    label = name or Path(path).name
    ds = _dcmread(Path(path), pixels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            item = _item(ds, "ReferencedSeriesSequence")
            uid = str(item.get("SeriesInstanceUID") or "") if item is not None else ""
        except _DICOM_ERRORS as e:
            raise ImageError(f"{label} has a damaged header ({type(e).__name__}: {e})") from None
    if not uid:
        raise ValidationError(f"{label} is a DICOM SEG that names no referenced series")
    return uid


def _size(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n} bytes"


def _item(ds: Any, keyword: str) -> Any:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _group_value(frame: Any, shared: Any, sequence: str, keyword: str) -> Any:
    """``keyword`` in ``sequence`` of the frame's functional groups, else of the shared ones."""
    for group in (frame, shared):
        item = _item(group, sequence) if group is not None else None
        if item is not None and keyword in item:
            return item.get(keyword)
    return None


def _references(group: Any) -> list[str]:
    if group is None:
        return []
    return [
        str(source.ReferencedSOPInstanceUID)
        for derivation in group.get("DerivationImageSequence") or []
        for source in derivation.get("SourceImageSequence") or []
        if "ReferencedSOPInstanceUID" in source
    ]


def _segments(ds: Any) -> list[dict[str, Any]]:
    out = []
    for item in ds.get("SegmentSequence") or []:
        if int(item.SegmentNumber) == 0:
            continue  # a LABELMAP SEG may describe its background
        index = None
        for keyword in ("SegmentDescription", "TrackingID"):
            found = _MARK_RE.match(str(item.get(keyword) or ""))
            if found and 1 <= int(found.group(1)) <= 255:
                index = int(found.group(1))
                break
        color = item.get("RecommendedDisplayCIELabValue")
        out.append(
            {
                "number": int(item.SegmentNumber),
                "label": str(item.get("SegmentLabel") or ""),
                "index": index,
                "color": dicom_lab_to_rgb(color) if color is not None else None,
            }
        )
    return out


def read_dicom_seg(
    path: str | os.PathLike,
    sop_uids: Sequence[str],
    shape: tuple[int, int, int],
    *,
    positions: Sequence[Sequence[float]] | None = None,
    orientation: Sequence[float] | None = None,
    max_bytes: int = MAX_SEG_BYTES,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A DICOM SEG as a (Z, Y, X) uint8 array on the series whose slice order is ``sop_uids``.

    Returns ``(array, segments)``; each segment is ``{"number", "label", "index", "color"}``
    (``index``: the class index patientml-widgets wrote, None for other tools' segments;
    ``color``: ``#rrggbb`` or None). The array holds the class indices when every segment
    has one (a SEG this package wrote), else segment numbers; 0 is background. FRACTIONAL
    frames count where they reach half the maximum value.

    Frames are placed by the SOP instance they reference; a SEG without per-frame references
    is placed by ImagePositionPatient when ``positions`` (one per slice, in the same order)
    and ``orientation`` of the series are given, else refused. Refused (ImageError or
    ValidationError): not DICOM, not a SEG, a SEG of another series, frames of another size,
    overlapping segments, files or frames over ``max_bytes``.
    """
    path = Path(path)
    if len(shape) != 3 or len(sop_uids) != int(shape[0]):
        raise ValidationError(f"the shape {shape} is (Z, Y, X) with one slice for each of {len(sop_uids)} SOP uids")
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageError(f"{path.name} cannot be read ({e.strerror or e})") from None
    if size > max_bytes:
        raise ImageError(f"{path.name} is {_size(size)}; DICOM SEGs over {_size(max_bytes)} are refused")
    header = _dcmread(path, pixels=False)
    try:
        sop_class = str(header.get("SOPClassUID", ""))
        kind = SEG_SOP_CLASSES.get(sop_class)
        if kind is None or str(header.get("Modality", "")) != "SEG":
            what = header.get("Modality") or "no modality"
            raise ImageError(f"{path.name} is not a DICOM Segmentation (SOP class {sop_class or '?'}, {what})")
        rows, columns = int(header.Rows), int(header.Columns)
        frames = int(header.get("NumberOfFrames") or 1)
        seg_type = "LABELMAP" if kind == "LABELMAP" else str(header.get("SegmentationType", ""))
        per_frame = list(header.get("PerFrameFunctionalGroupsSequence") or [])
        shared = _item(header, "SharedFunctionalGroupsSequence")
        segments = _segments(header)
        series = [str(s.get("SeriesInstanceUID", "?")) for s in header.get("ReferencedSeriesSequence") or []]
        max_fraction = int(header.get("MaximumFractionalValue") or 255)
        bits = int(header.get("BitsAllocated") or 0)
    except ImageError:
        raise
    except _DICOM_ERRORS as e:
        raise ImageError(f"{path.name} has a damaged SEG header ({type(e).__name__}: {e})") from None
    if rows * columns * frames > max_bytes:
        raise ImageError(
            f"{path.name} holds {frames} frames of {rows} x {columns}: over the limit of {max_bytes} decoded bytes"
        )
    if (rows, columns) != shape[1:]:
        raise ImageError(
            f"{path.name}'s frames are {rows} x {columns} pixels; the series' slices are {shape[1]} x {shape[2]}"
        )
    if seg_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise ImageError(f"{path.name} has SegmentationType {seg_type or '(none)'}; BINARY or FRACTIONAL is read")
    if frames > 1 and len(per_frame) != frames:
        raise ImageError(f"{path.name} has {frames} frames but {len(per_frame)} per-frame functional groups")
    if not segments:
        raise ImageError(f"{path.name} describes no segments")

    slices = _place_frames(path.name, per_frame or [None] * frames, shared, sop_uids, series, positions, orientation)
    numbers = [s["number"] for s in segments]
    ours = len({s["index"] for s in segments if s["index"] is not None}) == len(segments)
    value_of = {s["number"]: (s["index"] if ours else s["number"]) for s in segments}
    if len(set(numbers)) != len(numbers):
        raise ImageError(f"{path.name} describes segment numbers {sorted(numbers)}: one is given twice")
    if min(numbers) < 1:
        raise ImageError(f"{path.name} describes segment number {min(numbers)}; segment numbers are positive")
    if max(value_of.values()) > 255:
        raise ImageError(f"{path.name} has segment numbers up to {max(numbers)}; at most 255 fit a uint8 label")
    frame_segments: list[int] = []
    if seg_type != "LABELMAP":
        for i, group in enumerate(per_frame or [None]):
            number = _group_value(group, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
            if number is None or int(number) not in value_of:
                raise ImageError(f"{path.name}'s frame {i + 1} belongs to segment {number}, which it does not describe")
            frame_segments.append(int(number))

    pixels = _pixels(path, frames, rows, columns)
    out = np.zeros(shape, np.uint8)
    overlap = np.zeros(shape, bool)
    if seg_type == "LABELMAP":
        lut = np.zeros(int(pixels.max()) + 1, np.uint8)
        unknown = sorted(set(np.unique(pixels).tolist()) - {0, *value_of})
        if unknown:
            raise ImageError(f"{path.name} holds label values {unknown[:5]} that it describes as no segment")
        for number, value in value_of.items():
            if number < len(lut):
                lut[number] = value
        for i, k in enumerate(slices):
            plane = lut[pixels[i]]
            overlap[k] |= (plane != 0) & (out[k] != 0) & (out[k] != plane)
            out[k] = np.where(plane != 0, plane, out[k])
    else:
        threshold = 1 if seg_type == "BINARY" or bits == 1 else max_fraction / 2
        for i, k in enumerate(slices):
            on = pixels[i] >= threshold
            value = value_of[frame_segments[i]]
            overlap[k] |= on & (out[k] != 0) & (out[k] != value)
            out[k][on] = value
    overlapping = int(np.count_nonzero(overlap))
    if overlapping:
        raise ValidationError(
            f"{path.name}: {overlapping} voxels lie in more than one segment; a label holds one class a voxel, "
            "so overlapping segments are refused (make them exclusive in the tool that wrote them)"
        )
    return out, segments


def _place_frames(
    name: str,
    groups: Sequence[Any],
    shared: Any,
    sop_uids: Sequence[str],
    series: list[str],
    positions: Sequence[Sequence[float]] | None,
    orientation: Sequence[float] | None,
) -> list[int]:
    """The slice index of every frame: by referenced SOP instance, else by position."""
    slice_of = {str(uid): k for k, uid in enumerate(sop_uids)}
    placed: list[int | None] = []
    foreign = 0
    for group in groups:
        refs = _references(group) or (_references(shared) if len(groups) == 1 else [])
        hits = [slice_of[u] for u in refs if u in slice_of]
        placed.append(hits[0] if hits else None)
        foreign += bool(refs) and not hits
    if foreign:
        if all(k is None for k in placed):
            raise ValidationError(
                f"{name} segments another series ({', '.join(series) or 'its referenced series uid is not given'}): "
                "none of the instances its frames reference is a slice of this series"
            )
        raise ValidationError(f"{name}: {foreign} of its frames reference instances that are not slices of this series")
    missing = [i for i, k in enumerate(placed) if k is None]
    if missing:
        if positions is None or orientation is None:
            raise ValidationError(
                f"{name}: {len(missing)} frames do not say which slice they segment (no per-frame "
                "ReferencedSOPInstanceUID); give the series' positions and orientation to place them by position"
            )
        for i, k in zip(missing, _by_position(name, [groups[i] for i in missing], shared, positions, orientation)):
            placed[i] = k
    return [int(k) for k in placed if k is not None]


def _by_position(
    name: str, groups: Sequence[Any], shared: Any, positions: Sequence[Sequence[float]], orientation: Sequence[float]
) -> list[int]:
    """Slices whose ImagePositionPatient matches each frame's (within a tenth of the slice gap)."""
    series = np.asarray(positions, dtype=float).reshape(-1, 3)
    iop = _group_value(groups[0] if groups else None, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    cosines = _numbers(iop, 6)
    if cosines is None or not np.allclose(cosines, np.asarray(orientation, float), atol=1e-3):
        raise ValidationError(f"{name}'s frames are not oriented as the series' slices (orientation {iop})")
    gaps = np.linalg.norm(np.diff(series, axis=0), axis=1) if len(series) > 1 else np.array([1.0])
    tolerance = max(0.1 * float(gaps.min()), 1e-3)
    out = []
    for i, group in enumerate(groups):
        ipp = _group_value(group, shared, "PlanePositionSequence", "ImagePositionPatient")
        at = _numbers(ipp, 3)
        if at is None:
            raise ValidationError(f"{name}'s frame has neither a referenced instance nor a position (x, y, z)")
        distance = np.linalg.norm(series - at, axis=1)
        k = int(distance.argmin())
        if distance[k] > tolerance:
            raise ValidationError(
                f"{name}: frame {i + 1} lies at {list(ipp)}, {distance[k]:.2f} mm from the nearest slice of this series"
            )
        out.append(k)
    return out


def _numbers(value: Any, n: int) -> np.ndarray | None:
    """``n`` finite numbers from a (multi-valued) header value, else None."""
    try:
        out = np.asarray(list(value) if value is not None else [], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _pixels(path: Path, frames: int, rows: int, columns: int) -> np.ndarray:
    """The frames, decoded (1-bit frames unpacked to 0/1), as (frames, rows, columns)."""
    ds = _dcmread(path, pixels=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pixels = np.asarray(ds.pixel_array)
        except _DICOM_ERRORS as e:
            raise ImageError(f"{path.name}'s frames cannot be decoded ({type(e).__name__}: {e})") from None
    if pixels.size != frames * rows * columns:
        raise ImageError(f"{path.name}'s pixel data holds {pixels.size} values, not {frames} x {rows} x {columns}")
    return pixels.reshape(frames, rows, columns)
