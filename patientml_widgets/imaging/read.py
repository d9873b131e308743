"""Read images from arrays and files into the few array forms the project stores.

Accepted forms after reading: ``(H, W)`` grayscale as uint8, uint16, int16 or float32,
and ``(H, W, 3)`` RGB as uint8 or uint16. Values are never rescaled: 16-bit data stays
16-bit and is stored losslessly, and a value the stored type cannot hold exactly (a float64
beyond float32's range, an integer too large) is refused, never rounded to infinity.

Files from elsewhere are read defensively. A file is decoded only by the decoder its suffix
names (``.png`` by Pillow's PNG plugin alone, ``.jpg``/``.jpeg`` by its JPEG plugin alone,
``.tif``/``.tiff`` by tifffile, ``.npy`` by numpy without pickles), and only once its first
bytes say it is that format; no other Pillow plugin (EPS and its Ghostscript above all) is
ever reached. Sizes are checked from the header, before anything is decoded (see
:data:`MAX_PIXEL_BYTES`), and a decoder's failure is an :class:`ImageError` naming the file.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from ..errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "MAX_PIXEL_BYTES",
    "decode_image",
    "encode_image",
    "read_image",
    "sniff_format",
    "stored_values",
]

#: Images with more pixels than this are refused (a configurable guard against
#: decompression bombs and images no browser canvas can hold).
DEFAULT_MAX_PIXELS = 8192 * 8192

#: Bytes of the largest pixel any reader accepts: a float64 or int64 gray value, or 16-bit RGBA
#: (its alpha is dropped). A file is refused, from its header and before decoding, when it would
#: decode to more than ``max_pixels * MAX_PIXEL_BYTES`` bytes, counting every sample, channel,
#: page and frame at its bytes per sample (or to more than ``max_pixels`` pixels of height x width).
MAX_PIXEL_BYTES = 8

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"})

_FORMAT_OF_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".npy": "NPY"}
_SUFFIX_OF_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "NPY": ".npy", "DICOM": ".dcm"}
_NAME_OF_FORMAT = {"NPY": ".npy", "EPS": "PostScript (EPS)"}

#: Leading bytes of the formats a user may hand in by mistake, first match wins (DICOM: see sniff_format).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x93NUMPY", "NPY"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),  # DOS EPS binary header
    (b"%PDF", "PDF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"qoif", "QOI"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
)

#: What a decoder raises for a damaged or hostile file (programming errors such as
#: AttributeError or NameError are not caught).
_DECODE_ERRORS = (
    OSError,  # includes PIL.UnidentifiedImageError
    EOFError,
    SyntaxError,  # Pillow's plugins
    ValueError,  # includes tifffile.TiffFileError
    struct.error,
    zlib.error,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    ZeroDivisionError,
    MemoryError,
    NotImplementedError,
    Image.DecompressionBombError,
)

#: Bytes per pixel Pillow holds for each mode it may decode to (multi-band modes are held as 4 bytes).
_PIL_MODE_BYTES = {
    "1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4,
    "LA": 4, "La": 4, "PA": 4, "RGB": 4, "RGBA": 4, "RGBX": 4, "RGBa": 4, "CMYK": 4, "YCbCr": 4,
}  # fmt: skip


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes of a file say (``"PNG"``, ``"TIFF"``, ``"EPS"``, ``"DICOM"``...), or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def read_image(source, *, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Return ``source`` (an array, or the path of a PNG/JPEG/TIFF/.npy file) as a checked array.

    Raises :class:`~patientml_widgets.errors.ImageError` with the reason when the file's
    content is not the format its suffix names, the image is corrupt, empty, holds NaN or
    infinity or values its stored type cannot hold, has an unsupported shape, has more than
    ``max_pixels`` pixels, or would decode to more than ``max_pixels * MAX_PIXEL_BYTES`` bytes
    (both checked from the file's header, before decoding).
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        array = _read_file(path, limit, label)
    elif isinstance(source, np.ndarray):
        label = name or "the array"
        _check_size(source.shape[:2] if source.ndim >= 2 else source.shape, limit, label)
        array = source
    else:
        raise ImageError(f"an image must be a numpy array or a file path, not {type(source).__name__}")
    return _normalize(array, limit, label)


def _check_size(shape, limit: int, label: str) -> None:
    if len(shape) < 2 or min(shape) < 1:
        raise ImageError(f"{label} is empty (shape {tuple(shape)})")
    pixels = int(shape[0]) * int(shape[1])
    if pixels > limit:
        raise ImageError(
            f"{label} has {shape[1]} x {shape[0]} = {pixels:,} pixels, more than the limit of "
            f"{limit:,}; downsample or crop it, or raise max_image_pixels"
        )


def _shape_error(label: str, shape: tuple[int, ...]) -> ImageError:
    return ImageError(
        f"{label} has shape {shape}; expected (height, width) or (height, width, 3)"
        + (" - channels come last" if len(shape) == 3 and shape[0] in (1, 3, 4) else "")
    )


def _check_header(shape, dtype, limit: int, label: str, *, planar: bool = False) -> None:
    """Refuse, from a file's header and before decoding, what :func:`_normalize` would refuse and what is too large.

    ``shape`` and ``dtype`` are what the decoder would return (every sample of every channel);
    ``planar``: a leading axis of 3 or 4 is channels (TIFF's planar configuration).
    """
    shape = tuple(int(n) for n in shape)
    dims = shape
    if planar and len(dims) == 3 and dims[0] in (3, 4) and dims[2] not in (1, 3, 4):
        dims = dims[1:] + dims[:1]
    if len(dims) not in (2, 3) or (len(dims) == 3 and dims[2] not in (1, 3, 4)):
        raise _shape_error(label, shape)
    _check_size(dims, limit, label)
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or dtype.itemsize > MAX_PIXEL_BYTES:
        raise ImageError(f"{label} has samples of type {dtype}; expected integers or floats of at most 64 bits")
    if len(dims) == 3 and dims[2] in (3, 4) and dtype.kind == "f":
        raise ImageError(f"{label} is RGB with dtype {dtype}; RGB must be uint8 or uint16")
    size = math.prod(shape) * dtype.itemsize
    bound = limit * MAX_PIXEL_BYTES
    if size > bound:
        raise ImageError(
            f"{label} would decode to {size:,} bytes ({' x '.join(map(str, shape))} samples of {dtype}), more than "
            f"the limit of {bound:,} ({limit:,} pixels x {MAX_PIXEL_BYTES} bytes); downsample or crop it, "
            "or raise max_image_pixels"
        )


def _check_format(head: bytes, expected: str, label: str) -> None:
    """ImageError unless the first bytes of a file say ``expected``, the format its suffix (or ext) names."""
    found = sniff_format(head)
    if found == expected:
        return
    if found in _SUFFIX_OF_FORMAT:
        raise ImageError(
            f"{label} is a {_NAME_OF_FORMAT.get(found, found)} file, not {_NAME_OF_FORMAT.get(expected, expected)}; "
            f"rename it to {_SUFFIX_OF_FORMAT[found]}"
        )
    if found is not None:
        raise ImageError(
            f"{label} is a {_NAME_OF_FORMAT.get(found, found)} file, not {_NAME_OF_FORMAT.get(expected, expected)}, "
            "and that format is not read; convert it to PNG, TIFF or .npy"
        )
    raise ImageError(
        f"{label} is not a readable image: it does not start like a {_NAME_OF_FORMAT.get(expected, expected)} "
        "file (corrupt, or another format under that suffix)"
    )


def _read_file(path: Path, limit: int, label: str) -> np.ndarray:
    if not path.is_file():
        raise ImageError(f"{label}: no such file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{label}: unsupported file type {suffix or '(none)'}; use PNG, JPEG, TIFF or .npy")
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{label} is an empty file")
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise ImageError(f"{label} cannot be read ({e.strerror or e})") from None
    expected = _FORMAT_OF_SUFFIX[suffix]
    _check_format(head, expected, label)
    if expected == "NPY":
        try:
            with open(path, "rb") as f:
                return _read_npy(f, limit, label)
        except OSError as e:
            raise ImageError(f"{label} is not a readable .npy array ({e})") from None
    if expected == "TIFF":
        return _read_tiff(path, limit, label)
    return _read_pil(path, expected, limit, label)


def _read_npy(f: IO[bytes], limit: int, label: str) -> np.ndarray:
    """An array from a .npy stream, its header checked before its data is read (never a pickle)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(f)
        else:  # 3.0 only differs for structured dtypes with non-latin-1 field names, refused anyway
            raise ImageError(f"{label} is not a readable .npy array (format version {version[0]}.{version[1]})")
        if dtype.hasobject:
            raise ImageError(f"{label} holds Python objects, not pixel values")
        _check_header(shape, dtype, limit, label)
        start = f.tell()
        size = math.prod(shape) * dtype.itemsize
        available = f.seek(0, io.SEEK_END) - start
        if available < size:
            raise ImageError(f"{label} is truncated: it holds {available:,} of the {size:,} bytes its header says")
        f.seek(start)
        arr = np.empty(math.prod(shape), dtype=dtype)
        if f.readinto(arr.view(np.uint8)) != size:  # type: ignore[attr-defined]
            raise ImageError(f"{label} is truncated: it holds fewer bytes than its header says")
        if fortran_order:
            return arr.reshape(shape[::-1]).transpose()
        return arr.reshape(shape)
    except ImageError:
        raise
    except _DECODE_ERRORS as e:
        raise ImageError(f"{label} is not a readable .npy array ({e})") from None


def _read_tiff(path: Path, limit: int, label: str) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) == 0:
                raise ImageError(f"{label} is not a readable TIFF (it holds no image)")
            if len(tif.pages) != 1:
                raise ImageError(f"{label} has {len(tif.pages)} pages; import one image per file")
            page = tif.pages[0]
            if not isinstance(page, tifffile.TiffPage) or page.dtype is None:
                raise ImageError(f"{label} has a TIFF sample format that is not read; save it as 8/16-bit or float")
            _check_header(page.shape, page.dtype, limit, label, planar=True)
            arr = page.asarray()
    except ImageError:
        raise
    except ImportError as e:  # a compression whose codec (imagecodecs) is not installed
        raise ImageError(
            f"{label} is compressed in a way tifffile needs imagecodecs for ({e}); pip install imagecodecs"
        ) from None
    except _DECODE_ERRORS as e:
        raise ImageError(f"{label} is not a readable TIFF ({type(e).__name__}: {e})") from None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar RGB
    return arr


def _read_pil(path: Path | IO[bytes], fmt: str, limit: int, label: str) -> np.ndarray:
    """Decode with Pillow's plugin for ``fmt`` alone (no other plugin is tried), after checking the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=[fmt]) as im:
                _check_pil_header(im, limit, label)
                im.load()
                return _pil_to_array(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{label} is refused as a possible decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{label} is not a readable {fmt} image (corrupt, or not an image file)") from None
    except _DECODE_ERRORS as e:
        raise ImageError(f"{label} could not be decoded: {e} (is the file truncated?)") from None


def _check_pil_header(im: Image.Image, limit: int, label: str) -> None:
    """What Pillow's header says, checked before decoding: one frame, a known mode, within the limits."""
    width, height = im.size
    _check_size((height, width), limit, label)
    frames = getattr(im, "n_frames", 1)
    if frames != 1:
        raise ImageError(f"{label} has {frames} frames; import one image per file")
    if im.mode not in _PIL_MODE_BYTES:
        raise ImageError(f"{label} has pixel mode {im.mode}, which is not read; save it as gray or RGB")
    if (
        im.format == "PNG"
        and im.mode in ("RGB", "RGBA", "LA")
        and any(";16" in str(t.args) for t in getattr(im, "tile", ()))
    ):
        raise ImageError(
            f"{label} is 16-bit colour, which Pillow reads only as 8-bit; save it as a 16-bit TIFF (.tif) "
            "to keep every bit, or as 8-bit PNG"
        )
    size = width * height * _PIL_MODE_BYTES[im.mode]
    if size > limit * MAX_PIXEL_BYTES:  # a Pillow pixel is at most 4 bytes today; kept for any new mode
        raise ImageError(f"{label} would decode to {size:,} bytes, more than the limit; raise max_image_pixels")


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if im.mode in ("L", "I", "F", "RGB"):
        return np.asarray(im)
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if im.mode in ("LA", "La"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))  # P, RGBA, CMYK, YCbCr, ...


def _normalize(arr: np.ndarray, limit: int, label: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]  # alpha carries no image content here
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise _shape_error(label, arr.shape)
    _check_size(arr.shape, limit, label)
    arr = stored_values(arr, label)
    if arr.ndim == 3 and arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{label} is RGB with dtype {arr.dtype}; RGB must be uint8 or uint16")
    return np.ascontiguousarray(arr)


def stored_values(arr: np.ndarray, label: str) -> np.ndarray:
    """The values of ``arr`` in the type the project stores them as, losslessly (ImageError if impossible).

    Booleans become uint8 0/255; floats float32 (refused when non-finite or beyond float32's range);
    integers the narrowest of uint8, uint16 and int16 that holds every value, else float32 where it
    holds them exactly.
    """
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if kind == "f":
        return _to_float32(arr, label)
    if kind in "iu":
        return arr if arr.dtype in (np.uint8, np.uint16, np.int16) else _narrow_integers(arr, label)
    raise ImageError(f"{label} has dtype {arr.dtype}; expected integers or floats")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _to_float32(arr: np.ndarray, label: str) -> np.ndarray:
    """Floats as float32, refused (never rounded to infinity) when a value is beyond float32's range."""
    if not np.isfinite(arr).all():
        raise ImageError(f"{label} holds NaN or infinite values")
    if arr.dtype.itemsize > 4:
        lo, hi = float(arr.min()), float(arr.max())
        if max(-lo, hi) > _FLOAT32_MAX:
            raise ImageError(
                f"{label} has values from {lo:g} to {hi:g}; images are stored as float32, which holds at most "
                f"{_FLOAT32_MAX:.3g} in magnitude; rescale the image (or change its unit) before adding it"
            )
    return arr.astype(np.float32)


def _narrow_integers(arr: np.ndarray, label: str) -> np.ndarray:
    """Integers in the narrowest stored type that holds every value, else float32 if exact, else refused."""
    lo, hi = int(arr.min()), int(arr.max())
    for dtype in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dtype)
    as_float = arr.astype(np.float32)
    # float32 rounds the largest values of the type up past its maximum (2**63 - 1 becomes 2**63),
    # where casting back is undefined: such a value is not held exactly, whatever the cast gives
    if float(as_float.max()) < float(np.iinfo(arr.dtype).max) and np.array_equal(as_float.astype(arr.dtype), arr):
        return as_float
    raise ImageError(
        f"{label} has values from {lo} to {hi}, which cannot be stored losslessly (as 8/16-bit integers or "
        "float32); rescale or offset the values first"
    )


def encode_image(arr: np.ndarray) -> tuple[bytes, str]:
    """Lossless bytes for a normalized array: PNG for 8-bit and 16-bit gray and 8-bit RGB, else .npy."""
    if arr.dtype == np.uint8 or (arr.dtype == np.uint16 and arr.ndim == 2):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=3)
        return buf.getvalue(), "png"
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue(), "npy"


_STORED_FORMS: dict[str, set[tuple[int, np.dtype]]] = {
    "png": {(2, np.dtype(np.uint8)), (2, np.dtype(np.uint16)), (3, np.dtype(np.uint8))},
    "npy": {(2, np.dtype(t)) for t in (np.uint8, np.uint16, np.int16, np.float32)} | {(3, np.dtype(np.uint16))},
}


def decode_image(data: bytes, ext: str, *, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Inverse of :func:`encode_image`, for the bytes of a stored image (which may come from another project).

    Only the forms :func:`encode_image` writes are accepted, checked like a file (the format its
    ``ext`` names, sizes from the header against ``max_pixels``); ImageError otherwise.
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    label = name or f"the stored .{ext} image"
    if ext not in _STORED_FORMS:
        raise ImageError(f"{label}: a stored image is .png or .npy, not .{ext}; the project is damaged")
    expected = "NPY" if ext == "npy" else "PNG"
    _check_format(bytes(data[:132]), expected, label)
    stream = io.BytesIO(data)
    arr = _read_npy(stream, limit, label) if ext == "npy" else _read_pil(stream, "PNG", limit, label)
    form = (arr.ndim, arr.dtype.newbyteorder("=") if arr.dtype.byteorder != "|" else arr.dtype)
    if (arr.ndim == 3 and arr.shape[2] != 3) or form not in _STORED_FORMS[ext]:
        raise ImageError(f"{label} holds {arr.dtype} of shape {arr.shape}, which the project never stores")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageError(f"{label} holds NaN or infinite values")
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)
