"""Volumes: CT and MR series and NIfTI files as (Z, Y, X) arrays with their geometry.

Conventions, everywhere in the package:

- the array is ``(Z, Y, X)``: slices, rows, columns (indices ``k, j, i``), gray values only;
- the affine is 4 x 4 and maps ``(i, j, k, 1)`` (column, row, slice) to RAS+ millimetres, the
  world of NIfTI, nibabel and 3D Slicer (DICOM's LPS becomes RAS by negating x and y);
- the spacing is ``(dz, dy, dx)`` in mm, in the array's axis order: the affine's column lengths.

A volume is stored as one multi-page TIFF, a page per slice, deflated (zlib level 1): lossless for
every stored type (int16 Hounsfield units included), read slice by slice without decoding the
rest, and the same volume always gives the same bytes (so it is stored once). A 3-D mask is
stored the same way with uint8 pages.

:func:`stack_series` turns the headers of one DICOM series into the slice order and the affine,
or says why the files are not one volume: slices missing, two at one position, uneven steps,
mixed sizes or orientations, too many slices.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from .dicom import DicomHeader
from .read import DEFAULT_MAX_PIXELS, MAX_PIXEL_BYTES, stored_values

__all__ = [
    "LPS_TO_RAS",
    "MAX_SLICES",
    "MAX_VOLUME_BYTES",
    "NIFTI_SUFFIXES",
    "StoredVolume",
    "Volume",
    "check_affine",
    "check_volume_size",
    "decode_volume",
    "encode_volume",
    "is_nifti",
    "read_nifti",
    "read_volume_slice",
    "spacing_of",
    "stack_series",
    "volume_from_array",
    "write_nifti",
]

#: A volume holds at most this many slices, and at most MAX_VOLUME_BYTES once decoded.
MAX_SLICES = 2048
MAX_VOLUME_BYTES = 2 * 1024**3
NIFTI_SUFFIXES = (".nii", ".nii.gz")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: slice steps may differ by this fraction of the median step (scanners round positions)
STEP_TOLERANCE = 0.05
_STORED_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32))


@dataclass(frozen=True)
class Volume:
    """A checked (Z, Y, X) array and its affine (voxel indices to RAS+ mm)."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_of(self.affine)


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """``(dz, dy, dx)``: the length of the affine's slice, row and column steps, in mm."""
    norms = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    return (float(norms[2]), float(norms[1]), float(norms[0]))


def check_affine(affine, label: str = "the affine") -> np.ndarray:
    """A finite, invertible 4 x 4 affine with a last row of 0 0 0 1, as float64 (ImageError if not)."""
    try:
        a = np.array(affine, dtype=float)
    except (TypeError, ValueError):
        raise ImageError(f"{label} is not a 4 x 4 matrix of numbers") from None
    if a.shape != (4, 4):
        raise ImageError(f"{label} has shape {a.shape}; expected 4 x 4")
    if not np.isfinite(a).all():
        raise ImageError(f"{label} holds NaN or infinite values")
    if not np.allclose(a[3], [0, 0, 0, 1]):
        raise ImageError(f"{label} must end with the row 0 0 0 1, not {a[3].tolist()}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-9 or min(spacing_of(a)) <= 1e-6:
        raise ImageError(f"{label} is singular: it maps the voxels onto a plane or a line")
    return a


def volume_from_array(
    array,
    *,
    spacing: Sequence[float] | None = None,
    affine=None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Volume:
    """A 3-D array (Z, Y, X) as a checked volume, with ``spacing`` (dz, dy, dx) in mm or a full ``affine``.

    Without either, the voxels are 1 mm cubes. Values are stored losslessly (see ``stored_values``).
    """
    label = name or "the volume"
    arr = np.asarray(array)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ImageError(
            f"{label} has shape {arr.shape}; a volume is (slices, rows, columns) of gray values"
            + (" (a 2-D image is added with add_example)" if arr.ndim == 2 else "")
        )
    check_volume_size(arr.shape, arr.dtype.itemsize, label, max_pixels)
    if spacing is not None and affine is not None:
        raise ImageError("give the spacing or the affine, not both (the affine holds the spacing)")
    if affine is None:
        steps = _spacing(spacing, label)
        affine = np.diag([steps[2], steps[1], steps[0], 1.0])
    values = stored_values(arr, label)
    return Volume(np.ascontiguousarray(values), check_affine(affine, f"the affine of {label}"))


def _spacing(spacing, label: str) -> tuple[float, float, float]:
    if spacing is None:
        return (1.0, 1.0, 1.0)
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ImageError(f"the spacing of {label} is (dz, dy, dx) in mm, not {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ImageError(f"the spacing of {label} is three positive numbers (dz, dy, dx) in mm, not {spacing!r}")
    return values


def check_volume_size(shape: Sequence[int], itemsize: int, label: str, max_pixels: int | None = None) -> None:
    """Refuse, before decoding, a volume of too many slices, pixels per slice or bytes."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    z, y, x = (int(v) for v in shape)
    if min(z, y, x) < 1:
        raise ImageError(f"{label} is empty ({z} x {y} x {x})")
    if z < 2:
        raise ImageError(f"{label} has {z} slice; a volume has at least 2 (add a single image with add_example)")
    if z > MAX_SLICES:
        raise ImageError(
            f"{label} has {z:,} slices, more than the limit of {MAX_SLICES:,} for one volume; a series "
            "this long is usually several acquisitions (phases, echoes, time points) in one: split it"
        )
    if y * x > limit:
        raise ImageError(f"{label} has {x} x {y} = {x * y:,} pixels per slice, more than the limit of {limit:,}")
    size = z * y * x * max(1, itemsize)
    if size > MAX_VOLUME_BYTES or y * x * itemsize > limit * MAX_PIXEL_BYTES:
        raise ImageError(
            f"{label} would take {size / 1e9:.2f} GB ({z} x {y} x {x} x {itemsize} bytes); "
            f"the limit is {MAX_VOLUME_BYTES / 1e9:.1f} GB per volume"
        )


# -- stored form ------------------------------------------------------------------------


def encode_volume(arr: np.ndarray) -> bytes:
    """A (Z, Y, X) array of a stored type as a multi-page TIFF, one deflated page per slice."""
    import tifffile

    if arr.ndim != 3 or arr.dtype not in _STORED_DTYPES:
        raise ImageError(f"a stored volume is 3-D uint8/uint16/int16/float32, not {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        np.ascontiguousarray(arr),
        photometric="minisblack",
        compression="zlib",
        compressionargs={"level": 1},
        metadata=None,
        software=False,
    )
    return buf.getvalue()


def _pages(data: bytes, label: str, max_pixels: int | None):
    """Open stored volume bytes and check every page's header: ``(tiff, shape, dtype)``."""
    import tifffile

    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ImageError(f"{label} is not a stored volume (not a TIFF); the project is damaged")
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except (ValueError, OSError, IndexError, KeyError, struct.error, zlib.error) as e:
        raise ImageError(f"{label} is not a readable stored volume ({type(e).__name__}: {e})") from None
    try:
        n = len(tif.pages)
        page = tif.pages.first
        if not isinstance(page, tifffile.TiffPage) or page.dtype is None or len(page.shape) != 2:
            raise ImageError(f"{label} does not hold gray slices; the project is damaged")
        dtype = np.dtype(page.dtype)
        if dtype.newbyteorder("=") not in _STORED_DTYPES:
            raise ImageError(f"{label} holds {dtype} slices, which the project never stores")
        shape = (n, *page.shape)
        check_volume_size(shape, dtype.itemsize, label, max_pixels)
        return tif, shape, dtype
    except ImageError:
        tif.close()
        raise
    except (ValueError, OSError, IndexError, KeyError, struct.error, zlib.error) as e:
        tif.close()
        raise ImageError(f"{label} is not a readable stored volume ({type(e).__name__}: {e})") from None


def decode_volume(data: bytes, *, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Inverse of :func:`encode_volume`, sizes checked from the headers before any slice is decoded."""
    label = name or "the stored volume"
    tif, shape, dtype = _pages(data, label, max_pixels)
    with tif:
        out = np.empty(shape, dtype.newbyteorder("="))
        try:
            for k, page in enumerate(tif.pages):
                _check_page(page, k, shape, dtype, label)  # from its header: a page claiming more is never decoded
                plane = page.asarray()
                if plane.shape != shape[1:] or plane.dtype != dtype:
                    raise ImageError(
                        f"{label}: slice {k} differs in size or type from the first; the project is damaged"
                    )
                out[k] = plane
        except ImageError:
            raise
        except (ValueError, OSError, IndexError, KeyError, AttributeError, struct.error, zlib.error) as e:
            raise ImageError(f"{label} is not a readable stored volume ({type(e).__name__}: {e})") from None
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise ImageError(f"{label} holds NaN or infinite values")
    return out


def read_volume_slice(data: bytes, k: int, *, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Slice ``k`` of a stored volume, decoding only that page."""
    label = name or "the stored volume"
    tif, shape, dtype = _pages(data, label, max_pixels)
    with tif:
        return _read_page(tif, k, shape, dtype, label)


def _read_page(tif: Any, k: int, shape: tuple[int, ...], dtype: np.dtype, label: str) -> np.ndarray:
    if not 0 <= k < shape[0]:
        raise ImageError(f"{label} has slices 0 to {shape[0] - 1}, not {k}")
    try:
        page = tif.pages[k]
        _check_page(page, k, shape, dtype, label)
        plane = page.asarray()
    except ImageError:
        raise
    except (ValueError, OSError, IndexError, KeyError, AttributeError, struct.error, zlib.error) as e:
        raise ImageError(f"{label}: slice {k} is not readable ({type(e).__name__}: {e})") from None
    if plane.shape != shape[1:] or plane.dtype != dtype:
        raise ImageError(f"{label}: slice {k} differs in size or type from the first; the project is damaged")
    return plane.astype(plane.dtype.newbyteorder("="), copy=False)


def _check_page(page: Any, k: int, shape: tuple[int, ...], dtype: np.dtype, label: str) -> None:
    if getattr(page, "shape", None) != tuple(shape[1:]) or getattr(page, "dtype", None) != dtype:
        raise ImageError(f"{label}: slice {k} differs in size or type from the first; the project is damaged")


class StoredVolume:
    """A stored volume read as it is needed: its size at once, a slice on request, the whole array once.

    Opening a volume for labeling shows one slice long before the whole volume is decoded.
    """

    def __init__(self, data: bytes, affine, *, max_pixels: int | None = None, name: str | None = None) -> None:
        self.label = name or "the stored volume"
        self._tif, shape, self._stored_dtype = _pages(data, self.label, max_pixels)  # kept open: pages parsed once
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.dtype = self._stored_dtype.newbyteorder("=")
        self.affine = check_affine(affine, f"the affine of {self.label}")
        self._data = data
        self._array: np.ndarray | None = None
        self._max_pixels = max_pixels

    @property
    def loaded(self) -> bool:
        return self._array is not None

    def slice(self, k: int) -> np.ndarray:
        """Slice ``k`` (along the first axis), decoding only it unless the whole volume is loaded."""
        if self._array is not None:
            return self._array[k]
        return _read_page(self._tif, k, self.shape, self._stored_dtype, self.label)

    def load(self) -> np.ndarray:
        """The whole (Z, Y, X) array (decoded once; the compressed bytes are let go then)."""
        if self._array is None:
            self._array = decode_volume(self._data, max_pixels=self._max_pixels, name=self.label)
            self._tif.close()
            self._data = b""
        return self._array


# -- NIfTI ------------------------------------------------------------------------------


def read_nifti(path: str | os.PathLike, *, max_pixels: int | None = None, name: str | None = None) -> Volume:
    """A NIfTI-1/2 file (.nii or .nii.gz) as a volume: the data as stored, the header's affine.

    The shape and type are checked from the header before the data is read. Integer scaling
    (``scl_slope`` / ``scl_inter`` whole numbers) stays integer; other scaling gives float32. The
    best affine nibabel finds (sform, else qform) is kept as is: no reorientation, so every voxel
    is where the file put it.
    """
    import nibabel as nib

    path = Path(path)
    label = name or path.name
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise ImageError(f"no file {label}") from None
    except (
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,  # a header nibabel will not repair (vox_offset, data type code)
        OSError,
        ValueError,
        EOFError,
        zlib.error,
    ) as e:
        raise ImageError(f"{label} is not a readable NIfTI file ({type(e).__name__}: {e})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageError(f"{label} is a {type(img).__name__}, not NIfTI")
    shape = tuple(int(v) for v in img.header.get_data_shape())
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        extra = (
            " (a 4-D file holds several volumes, e.g. time points; save each as its own file)" if len(shape) > 3 else ""
        )
        raise ImageError(f"{label} has shape {shape}; a volume is 3-D{extra}")
    dtype = np.dtype(img.header.get_data_dtype())
    if dtype.kind not in "iufb":
        raise ImageError(f"{label} holds {dtype} values (RGB or complex); only gray volumes are read")
    check_volume_size(shape[::-1], max(dtype.itemsize, 4 if dtype.kind == "f" else dtype.itemsize), label, max_pixels)
    proxy: Any = img.dataobj
    slope, inter = proxy.slope, proxy.inter
    try:
        raw = np.asanyarray(proxy.get_unscaled()).reshape(shape)
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ImageError(f"{label} is truncated or damaged ({type(e).__name__}: {e})") from None
    scaled = _scaled(raw, slope, inter)
    affine = img.affine
    if affine is None:
        raise ImageError(f"{label} has no affine (neither sform nor qform)")
    values = stored_values(scaled.transpose(2, 1, 0), label)  # (i, j, k) -> (k, j, i)
    return Volume(np.ascontiguousarray(values), check_affine(affine, f"the affine of {label}"))


def _scaled(raw: np.ndarray, slope, inter) -> np.ndarray:
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if (slope, inter) == (1.0, 0.0):
        return raw
    if slope.is_integer() and inter.is_integer() and raw.dtype.kind in "iu":
        s, i = int(slope), int(inter)
        ends = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
        if all(-(2**63) <= v < 2**63 for e in ends for v in (s, i, e * s, e * s + i)):  # int64 never wraps
            return raw.astype(np.int64) * s + i  # narrowed losslessly by stored_values
    return (raw.astype(np.float64) * slope + inter).astype(np.float32)


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Write (Z, Y, X) ``array`` with ``affine`` as NIfTI-1 (gzipped for .nii.gz), sform and qform set."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)), np.asarray(affine, float))
    img.set_sform(np.asarray(affine, float), code=1)  # scanner coordinates
    img.set_qform(np.asarray(affine, float), code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, os.fspath(path))


# -- DICOM series -----------------------------------------------------------------------


def stack_series(headers: Sequence[DicomHeader], label: str) -> tuple[list[int], np.ndarray]:
    """The slice order (indices into ``headers``) and the affine of one DICOM series stacked as a volume.

    The slices must share their size, orientation and pixel spacing, lie at distinct positions
    along the slice normal with even steps (within STEP_TOLERANCE; a gantry tilt, where the
    positions also move in-plane, is kept as a sheared affine) and be at most MAX_SLICES.
    ImageError says which rule a series breaks, with the positions or files concerned.
    """
    if len(headers) < 2:
        raise ImageError(f"{label} has {len(headers)} image; a volume has at least 2 slices")
    if len(headers) > MAX_SLICES:
        raise ImageError(
            f"{label} has {len(headers):,} slices, more than the limit of {MAX_SLICES:,} for one volume; a series "
            "this long is usually several acquisitions (phases, echoes, time points) in one: split it"
        )
    first = headers[0]
    if first.orientation is None or first.pixel_spacing is None:
        raise ImageError(f"{label}: a slice lacks {_missing(first)}, so the series cannot be stacked")
    for h in headers:
        if h.frames != 1:
            raise ImageError(
                f"{label} holds a multi-frame file ({h.frames} frames); a volume is stacked from single slices"
            )
        if h.orientation is None or h.image_position is None or h.pixel_spacing is None:
            raise ImageError(f"{label}: a slice lacks {_missing(h)}, so the series cannot be stacked")
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise ImageError(f"{label} mixes slice sizes ({first.columns} x {first.rows} and {h.columns} x {h.rows})")
        if not np.allclose(h.orientation, first.orientation, atol=1e-3):
            raise ImageError(f"{label} mixes orientations ({_cosines(first)} and {_cosines(h)})")
        if not np.allclose(h.pixel_spacing, first.pixel_spacing, rtol=1e-3):
            raise ImageError(f"{label} mixes pixel spacings ({first.pixel_spacing} and {h.pixel_spacing} mm)")
    if min(first.pixel_spacing) <= 0:  # a negative spacing would mirror the voxels against the orientation
        raise ImageError(f"{label} has a PixelSpacing of {list(first.pixel_spacing)}; spacings are positive (mm)")
    row = np.array(first.orientation[:3], float)
    col = np.array(first.orientation[3:], float)
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise ImageError(f"{label} has an ImageOrientationPatient that is not two unit, orthogonal cosines")
    normal = np.cross(row, col)
    points = np.array([h.image_position for h in headers], float)
    along = points @ normal
    order = sorted(range(len(headers)), key=lambda i: (along[i], headers[i].instance_number or 0))
    positions = along[order]
    steps = np.diff(positions)
    median = float(np.median(steps))
    same = np.flatnonzero(steps < max(1e-3, 0.01 * median))
    if len(same):
        i = int(same[0])
        raise ImageError(
            f"{label} has {len(same) + 1} or more slices at the same position ({positions[i]:.2f} mm along the "
            "normal): the series holds several acquisitions (echoes, phases or time points); import it with "
            "volumes=False, or split it"
        )
    uneven = np.flatnonzero(np.abs(steps - median) > STEP_TOLERANCE * median)
    if len(uneven):
        i = int(uneven[0])
        gap = float(steps[i])
        if gap > median:
            lost = round(gap / median) - 1
            raise ImageError(
                f"{label} has slices missing: {gap:.2f} mm between the slices at {positions[i]:.2f} and "
                f"{positions[i + 1]:.2f} mm where the others are {median:.2f} mm apart (about {max(lost, 1)} "
                "missing); a volume with a gap would put voxels in the wrong place"
            )
        raise ImageError(
            f"{label} has uneven slice steps ({gap:.2f} mm after {positions[i]:.2f} mm, the others about "
            f"{median:.2f} mm); a volume needs evenly spaced slices"
        )
    ordered = points[order]
    step = (ordered[-1] - ordered[0]) / (len(ordered) - 1)
    off_line = np.linalg.norm(ordered - (ordered[0] + np.outer(np.arange(len(ordered)), step)), axis=1)
    if off_line.max() > STEP_TOLERANCE * np.linalg.norm(step) + 1e-3:
        raise ImageError(f"{label} has slices that do not lie on one line of positions (moved in-plane unevenly)")
    dy, dx = first.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dx, col * dy, step, ordered[0]
    return order, check_affine(LPS_TO_RAS @ lps, f"the geometry of {label}")


def _missing(h: DicomHeader) -> str:
    keys = (("ImageOrientationPatient", h.orientation), ("ImagePositionPatient", h.image_position),
            ("PixelSpacing", h.pixel_spacing))  # fmt: skip
    return ", ".join(k for k, v in keys if v is None)


def _cosines(h: DicomHeader) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in (h.orientation or ())) + "]"
