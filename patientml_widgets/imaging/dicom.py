"""DICOM with pydicom: headers for grouping, and frames with the modality rescale applied.

One file may hold one image (most CT, MR, CR/DX slices) or many frames (ultrasound clips,
enhanced multi-frame CT/MR); every frame becomes one array. What pydicom gives is kept
lossless: 16-bit stays 16-bit, and the rescale slope / intercept is applied in integers when
both are whole numbers (CT in Hounsfield units fits int16), else in float32. Palette colour is
expanded to RGB, YBR is converted to RGB by pydicom, MONOCHROME1 is kept as stored and flagged
so the display inverts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from .read import MAX_PIXEL_BYTES

__all__ = ["DICOM_SUFFIXES", "DicomHeader", "is_dicom", "read_dicom_frames", "read_dicom_header", "read_frame_headers"]

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
#: patient and study attributes kept with a volume, for the objects derived from it (DICOM SEG)
IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: Files with more frames than this, or more decoded bytes than MAX_BYTES, are refused.
MAX_FRAMES = 4096
MAX_BYTES = 2 * 1024**3

#: What pydicom and its decoders raise for a damaged or hostile file, on reading or on the
#: first access of a value (pydicom converts values lazily). Programming errors are not caught.
_DICOM_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    KeyError,
    IndexError,
    struct.error,
    zlib.error,
    OverflowError,
    ZeroDivisionError,
    NotImplementedError,
    RuntimeError,
    MemoryError,
)

#: What to install to decode a transfer syntax that pydicom, numpy and Pillow cannot.
#: Only permissively licensed decoders are named (pylibjpeg-libjpeg is GPL, so it is not).
_DECODERS = {
    "1.2.840.10008.1.2.4.57": "python-gdcm",
    "1.2.840.10008.1.2.4.70": "python-gdcm",
    "1.2.840.10008.1.2.4.80": "pyjpegls (or python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pyjpegls (or python-gdcm)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg and pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg and pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg and pylibjpeg-openjpeg",
}


@dataclass(frozen=True)
class DicomHeader:
    """What grouping and ordering need, read without the pixel data."""

    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    series_description: str
    instance_number: int | None
    position: float | None  # along the slice normal, in mm
    frames: int
    #: geometry, for stacking slices into a volume (None where the header lacks it)
    rows: int | None = None
    columns: int | None = None
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient: row then column cosines
    image_position: tuple[float, ...] | None = None  # ImagePositionPatient (LPS, mm)
    pixel_spacing: tuple[float, ...] | None = None  # PixelSpacing: between rows, between columns (mm)
    slice_thickness: float | None = None
    frame_of_reference_uid: str = ""
    sop_class_uid: str = ""
    series_number: int | None = None
    #: patient and study attributes a derived object (a DICOM SEG) copies so viewers file it with the study
    identity: dict[str, str] = field(default_factory=dict)
    #: the scanner and where it stands (Manufacturer, ManufacturerModelName, InstitutionName): subgroups a model
    #: is evaluated on
    equipment: dict[str, str] = field(default_factory=dict)


#: the equipment attributes kept with an image (a model's evaluation compares them as subgroups)
EQUIPMENT_KEYWORDS = ("Manufacturer", "ManufacturerModelName", "InstitutionName")


def is_dicom(path: str | Path) -> bool:
    """A DICOM file by its suffix, or by the 'DICM' marker after the 128-byte preamble."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _dcmread(path: Path, label: str, *, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd value; errors are what count here
        try:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
            except InvalidDicomError:
                # Older files have no preamble and no file meta; accept them only if they hold an image.
                ds = pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)
                if "Rows" not in ds or "SOPClassUID" not in ds:
                    raise ImageError(f"{label} is not a DICOM file (no 'DICM' marker, no image header)") from None
        except ImageError:
            raise
        except InvalidDicomError as e:
            raise ImageError(f"{label} is not a readable DICOM file ({e})") from None
        except _pydicom_errors() as e:  # pydicom raises many kinds for damaged files
            raise ImageError(f"{label} is not a readable DICOM file ({type(e).__name__}: {e})") from None
    return ds


#: pydicom also raises AttributeError when a file meta lacks the transfer syntax its decoders need.
_DECODE_ERRORS: tuple[type[Exception], ...] = (AttributeError, *_DICOM_ERRORS)


def _pydicom_errors(base: tuple[type[Exception], ...] = _DICOM_ERRORS) -> tuple[type[Exception], ...]:
    """``base`` and pydicom's own exception for a value of the wrong length (pydicom is imported late)."""
    from pydicom.errors import BytesLengthException

    return (*base, BytesLengthException)


@contextlib.contextmanager
def _header_errors(label: str) -> Iterator[None]:
    """A damaged header value (pydicom converts values on first access) as an ImageError naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except ImageError:
            raise
        except _pydicom_errors() as e:
            raise ImageError(f"{label} has a damaged DICOM header ({type(e).__name__}: {e})") from None


def read_dicom_header(path: str | Path, *, name: str | None = None) -> DicomHeader:
    """Identity and position of a DICOM image, without decoding pixels (ImageError if none)."""
    path = Path(path)
    label = name or str(path)
    return _header(_dcmread(path, label, pixels=False), label)


def _header(ds, label: str) -> DicomHeader:
    with _header_errors(label):
        _check_image(ds, label)
        return DicomHeader(
            patient_id=_text(ds, "PatientID"),
            patient_name=_text(ds, "PatientName"),
            study_uid=_text(ds, "StudyInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"),
            sop_uid=_text(ds, "SOPInstanceUID"),
            modality=_text(ds, "Modality"),
            series_description=_text(ds, "SeriesDescription"),
            instance_number=_int(ds.get("InstanceNumber")),
            position=_slice_position(ds),
            frames=_frame_count(ds),
            rows=_int(ds.get("Rows")),
            columns=_int(ds.get("Columns")),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            image_position=_floats(ds.get("ImagePositionPatient"), 3),
            pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
            slice_thickness=_float(ds.get("SliceThickness"), None),
            frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
            sop_class_uid=_text(ds, "SOPClassUID"),
            series_number=_int(ds.get("SeriesNumber")),
            identity={k: _text(ds, k) for k in IDENTITY_KEYWORDS if _text(ds, k)},
            equipment={k: _text(ds, k) for k in EQUIPMENT_KEYWORDS if _text(ds, k)},
        )


def read_frame_headers(path: str | Path, *, name: str | None = None) -> list[DicomHeader] | None:
    """One header per frame of an enhanced multi-frame image (CT, MR, PET), with the frame's own
    position, orientation and pixel spacing from its functional groups; None when the frames carry
    no plane positions (an ultrasound clip, say: frames in time, not in space).
    """
    path = Path(path)
    label = name or str(path)
    ds = _dcmread(path, label, pixels=False)
    header = _header(ds, label)  # the file is read once
    if header.frames < 2:
        return None
    out = []
    with _header_errors(label):
        for index in range(header.frames):
            position = _functional_item(ds, index, "PlanePositionSequence")
            orientation = _functional_item(ds, index, "PlaneOrientationSequence")
            measures = _functional_item(ds, index, "PixelMeasuresSequence")
            if position is None or orientation is None or measures is None:
                return None
            at = _floats(position.get("ImagePositionPatient"), 3)
            cosines = _floats(orientation.get("ImageOrientationPatient"), 6)
            out.append(
                dataclasses.replace(
                    header,
                    frames=1,
                    instance_number=index + 1,
                    image_position=at,
                    orientation=cosines,
                    pixel_spacing=_floats(measures.get("PixelSpacing"), 2),
                    slice_thickness=_float(measures.get("SliceThickness"), None),
                    position=_along_normal(cosines, at),
                )
            )
    return out


def _along_normal(cosines: tuple[float, ...] | None, at: tuple[float, ...] | None) -> float | None:
    if cosines is None or at is None:
        return None
    return float(np.dot(np.cross(cosines[:3], cosines[3:6]), at))


def _check_image(ds, label: str) -> None:
    if "Rows" not in ds or "Columns" not in ds:
        kind = _text(ds, "Modality") or "non-image"
        raise ImageError(f"{label} holds no image (a {kind} object)")
    if _text(ds, "Modality").upper() == "SEG":
        raise ImageError(f"{label} is a DICOM SEG (a segmentation of other images), not an image to label")


def read_dicom_frames(
    path: str | Path, *, max_pixels: int, name: str | None = None
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Yield ``(array, source)`` for every frame of a DICOM file, in frame order.

    ``source`` holds the modality, uids, frame number, the header's windows (the first is the
    default window) and whether the image displays inverted. Raises ImageError with the reason
    (not DICOM, no image, too large, truncated, a compression no installed decoder reads).
    """
    from pydicom import pixels

    path = Path(path)
    label = name or str(path)
    ds = _dcmread(path, label, pixels=True)
    with _header_errors(label):
        _check_image(ds, label)
        frames = _check_pixel_size(ds, label, max_pixels)
        photometric = _text(ds, "PhotometricInterpretation").upper()
        common = _common_source(ds, photometric, frames)
    yield from _decode_frames(pixels, ds, label, frames, photometric, common)


def _check_pixel_size(ds, label: str, max_pixels: int) -> int:
    """The number of frames, once the pixel data is there and within the limits (ImageError if not).

    All from the header, before any pixel is decoded: at most ``max_pixels`` pixels (Rows x Columns)
    per frame, at most ``max_pixels * MAX_PIXEL_BYTES`` decoded bytes per frame (Rows x Columns x
    SamplesPerPixel x BitsAllocated / 8), at most MAX_FRAMES frames and MAX_BYTES for the whole file.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageError(f"{label} has an image header but no pixel data")
    rows, cols, frames = _int(ds.get("Rows")), _int(ds.get("Columns")), _frame_count(ds)
    samples, bits = _int(ds.get("SamplesPerPixel")) or 1, _int(ds.get("BitsAllocated")) or 8
    if rows is None or cols is None or rows < 1 or cols < 1 or frames < 1:
        raise ImageError(f"{label} has an empty image ({cols} x {rows}, {frames} frames)")
    if rows * cols > max_pixels:
        raise ImageError(
            f"{label} has {cols} x {rows} = {rows * cols:,} pixels per frame, more than the limit of {max_pixels:,}"
        )
    if samples not in (1, 3) or bits not in (1, 8, 16, 32, 64):
        raise ImageError(
            f"{label} has {samples} samples per pixel of {bits} bits allocated; only gray or RGB images of "
            "1, 8, 16, 32 or 64 bits are read"
        )
    per_frame = rows * cols * samples * max(1, bits // 8)
    if per_frame > max_pixels * MAX_PIXEL_BYTES:
        raise ImageError(
            f"{label} would decode to {per_frame:,} bytes per frame, more than the limit of "
            f"{max_pixels * MAX_PIXEL_BYTES:,} ({max_pixels:,} pixels x {MAX_PIXEL_BYTES} bytes)"
        )
    size = per_frame * frames
    if frames > MAX_FRAMES or size > MAX_BYTES:
        raise ImageError(
            f"{label} has {frames} frames ({size / 1e9:.1f} GB decoded); the limits are {MAX_FRAMES} frames "
            f"and {MAX_BYTES / 1e9:.1f} GB per file"
        )
    return frames


def _common_source(ds, photometric: str, frames: int) -> dict[str, Any]:
    """The part of ``source`` that every frame of the file shares."""
    common: dict[str, Any] = {
        "modality": _text(ds, "Modality"),
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "sop_uid": _text(ds, "SOPInstanceUID"),
        "series_description": _text(ds, "SeriesDescription"),
        "photometric": photometric,
        **{k: _text(ds, k) for k in EQUIPMENT_KEYWORDS if _text(ds, k)},
    }
    if frames > 1:
        common["frames"] = frames
    return common


def _decode_frames(
    pixels, ds, label: str, frames: int, photometric: str, common: dict[str, Any]
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Decode the frames one by one; a decoder's failure becomes an ImageError that says why."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # one frame: pixel_array (iter_pixels trips on some sign-corrected JPEG 2000 files)
            decoded = [pixels.pixel_array(ds)] if frames == 1 else pixels.iter_pixels(ds)
            for index, frame in enumerate(decoded):
                yield _frame_and_source(pixels, ds, index, frame, frames, photometric, common)
        except ImageError:
            raise
        except _pydicom_errors(_DECODE_ERRORS) as e:
            raise ImageError(_decode_failure(label, syntax, e)) from None


def _frame_and_source(
    pixels, ds, index: int, frame: np.ndarray, frames: int, photometric: str, common: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """One decoded frame as stored (palette expanded, rescaled) with its ``source``."""
    if photometric == "PALETTE COLOR":
        frame = _narrow_palette(pixels.apply_color_lut(frame, ds))
    frame = frame.astype(frame.dtype.newbyteorder("="), copy=False)
    slope, intercept, windows = _frame_values(ds, index)
    source = dict(common)
    if frames > 1:
        source["frame"] = index
    if (slope, intercept) != (1.0, 0.0):
        frame = _rescale(frame, slope, intercept)
        source["rescale"] = {"slope": slope, "intercept": intercept}
    if windows:
        source["windows"] = windows
        source["window"] = {"center": windows[0]["center"], "width": windows[0]["width"]}
    if photometric == "MONOCHROME1":
        source["invert"] = True
    return frame, source


def _decode_failure(label: str, syntax: str, error: Exception) -> str:
    from pydicom.uid import UID

    message = str(error)
    name = UID(syntax).name if syntax else "an unknown transfer syntax"
    if not syntax and "Transfer Syntax UID" in message:
        return f"{label} has no transfer syntax in its file meta, so its pixel data cannot be decoded"
    if "12-bit precision" in message:
        return (
            f"{label} is 12-bit {name}: no permissively licensed decoder reads it (pylibjpeg-libjpeg does, "
            "under the GPL-3.0); convert the files, or install that if its licence suits you"
        )
    if "missing dependencies" in message:
        install = _DECODERS.get(syntax)
        hint = f"; pip install {install}" if install else ""
        return f"{label} is compressed as {name}, which no installed decoder reads{hint}"
    if "Unable to decode" in message:
        reasons = "; ".join(line.strip() for line in message.splitlines()[1:] if line.strip())
        install = _DECODERS.get(syntax)
        hint = f"; another decoder may read it: pip install {install}" if install else ""
        return f"{label} is compressed as {name}, and the installed decoders failed on it ({reasons}){hint}"
    if "less than expected" in message or "truncated" in message.lower():
        return f"{label} is truncated: its pixel data is shorter than its header says"
    return f"{label} could not be decoded ({type(error).__name__}: {message.splitlines()[0] if message else ''})"


def _rescale(frame: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if frame.ndim == 3:
        return frame  # the modality rescale applies to gray images only
    if float(slope).is_integer() and float(intercept).is_integer() and frame.dtype.kind in "iu":
        return frame.astype(np.int64) * int(slope) + int(intercept)  # narrowed losslessly on import
    return (frame.astype(np.float64) * slope + intercept).astype(np.float32)


def _narrow_palette(rgb: np.ndarray) -> np.ndarray:
    """16-bit palette entries that are 8-bit values scaled up (x256 or x257) become uint8 again."""
    if rgb.dtype == np.uint16:
        if not (rgb & 0xFF).any():
            return (rgb >> 8).astype(np.uint8)
        if not (rgb % 257).any():
            return (rgb // 257).astype(np.uint8)
    return rgb


def _frame_values(ds, index: int) -> tuple[float, float, list[dict[str, Any]]]:
    """Rescale slope, intercept and the VOI windows of one frame (enhanced multi-frame aware)."""
    transform = _functional_item(ds, index, "PixelValueTransformationSequence") or ds
    voi = _functional_item(ds, index, "FrameVOILUTSequence") or ds
    slope = _float(transform.get("RescaleSlope"), 1.0)
    intercept = _float(transform.get("RescaleIntercept"), 0.0)
    centers, widths = _many(voi.get("WindowCenter")), _many(voi.get("WindowWidth"))
    names = [str(n) for n in _many(voi.get("WindowCenterWidthExplanation"))]
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths)):
        c, w = _float(center, None), _float(width, None)
        if c is None or w is None or not w > 0:
            continue
        label = names[i].strip() if i < len(names) and names[i].strip() else ""
        entry: dict[str, Any] = {"center": c, "width": w}
        if label:
            entry["name"] = f"From the image: {label.title()}"
        windows.append(entry)
    return slope, intercept, windows


def _functional_item(ds, index: int, sequence: str):
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame) and per_frame[index].get(sequence):
        return per_frame[index][sequence][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and shared[0].get(sequence):
        return shared[0][sequence][0]
    return None


def _slice_position(ds) -> float | None:
    orientation = ds.get("ImageOrientationPatient")
    position = ds.get("ImagePositionPatient")
    try:
        row, col = np.array(orientation[:3], float), np.array(orientation[3:6], float)
        return float(np.dot(np.cross(row, col), np.array(position[:3], float)))
    except (TypeError, ValueError, IndexError):
        return None


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite numbers from a multi-valued header value, or None."""
    values = [_float(v, None) for v in _many(value)]
    if len(values) != n or any(v is None for v in values):
        return None
    return tuple(float(v) for v in values if v is not None)


def _frame_count(ds) -> int:
    return _int(ds.get("NumberOfFrames")) or 1


def _many(value) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _float(value, default):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if np.isfinite(out) else default


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(ds, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # an unparsable value in a damaged header
        return ""
    return "" if value is None else str(value).strip(" \x00")  # DICOM pads values with spaces or NULs
