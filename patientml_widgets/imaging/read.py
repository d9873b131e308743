"""Read images from arrays and files into the few array forms the project stores.

Accepted forms after reading: ``(H, W)`` grayscale as uint8, uint16, int16 or float32,
and ``(H, W, 3)`` RGB as uint8 or uint16. Values are never rescaled: 16-bit data stays
16-bit and is stored losslessly.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "decode_image",
    "encode_image",
    "read_image",
]

#: Images with more pixels than this are refused (a configurable guard against
#: decompression bombs and images no browser canvas can hold).
DEFAULT_MAX_PIXELS = 8192 * 8192

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"})


def read_image(source, *, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Return ``source`` (an array, or the path of a PNG/JPEG/TIFF/.npy file) as a checked array.

    Raises :class:`~patientml_widgets.errors.ImageError` with the reason when the
    image is corrupt, empty, holds NaN or infinity, has an unsupported shape, or has
    more than ``max_pixels`` pixels.
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


def _read_file(path: Path, limit: int, label: str) -> np.ndarray:
    if not path.is_file():
        raise ImageError(f"{label}: no such file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{label}: unsupported file type {suffix or '(none)'}; use PNG, JPEG, TIFF or .npy")
    if path.stat().st_size == 0:
        raise ImageError(f"{label} is an empty file")
    if suffix == ".npy":
        return _read_npy(path, limit, label)
    if suffix in (".tif", ".tiff"):
        return _read_tiff(path, limit, label)
    return _read_pil(path, limit, label)


def _read_npy(path: Path, limit: int, label: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ImageError(f"{label} is not a readable .npy array ({e})") from None
    _check_size(arr.shape, limit, label)
    return np.array(arr)


def _read_tiff(path: Path, limit: int, label: str) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) == 0:
                raise ImageError(f"{label} is not a readable TIFF (it holds no image)")
            if len(tif.pages) != 1:
                raise ImageError(f"{label} has {len(tif.pages)} pages; import one image per file")
            page = tif.pages[0]
            _check_size(page.shape, limit, label)
            arr = page.asarray()
    except ImageError:
        raise
    except Exception as e:  # tifffile raises many kinds for damaged files
        raise ImageError(f"{label} is not a readable TIFF ({type(e).__name__}: {e})") from None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar RGB
    return arr


def _read_pil(path: Path, limit: int, label: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_size((im.size[1], im.size[0]), limit, label)
                frames = getattr(im, "n_frames", 1)
                if frames != 1:
                    raise ImageError(f"{label} has {frames} frames; import one image per file")
                im.load()
                return _pil_to_array(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{label} is refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not a readable image (corrupt, or not an image file)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label} could not be decoded: {e} (is the file truncated?)") from None


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
        raise ImageError(
            f"{label} has shape {arr.shape}; expected (height, width) or (height, width, 3)"
            + (" - channels come last" if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) else "")
        )
    _check_size(arr.shape, limit, label)
    kind = arr.dtype.kind
    if kind == "b":
        arr = arr.astype(np.uint8) * 255
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise ImageError(f"{label} holds NaN or infinite values")
        arr = arr.astype(np.float32)
    elif kind in "iu":
        if arr.dtype not in (np.uint8, np.uint16, np.int16):
            arr = _narrow_integers(arr, label)
    else:
        raise ImageError(f"{label} has dtype {arr.dtype}; expected integers or floats")
    if arr.ndim == 3 and arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{label} is RGB with dtype {arr.dtype}; RGB must be uint8 or uint16")
    return np.ascontiguousarray(arr)


def _narrow_integers(arr: np.ndarray, label: str) -> np.ndarray:
    lo, hi = int(arr.min()), int(arr.max())
    for dtype in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dtype)
    as_float = arr.astype(np.float32)
    if np.array_equal(as_float.astype(arr.dtype), arr):
        return as_float
    raise ImageError(f"{label} has values from {lo} to {hi}, which cannot be stored losslessly")


def encode_image(arr: np.ndarray) -> tuple[bytes, str]:
    """Lossless bytes for a normalized array: PNG for 8-bit and 16-bit gray and 8-bit RGB, else .npy."""
    if arr.dtype == np.uint8 or (arr.dtype == np.uint16 and arr.ndim == 2):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=3)
        return buf.getvalue(), "png"
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue(), "npy"


def decode_image(data: bytes, ext: str) -> np.ndarray:
    """Inverse of :func:`encode_image`."""
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    with Image.open(io.BytesIO(data)) as im:
        return _pil_to_array(im)
