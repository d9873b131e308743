"""Label masks: validation, the on-disk PNG codec and the browser wire codec.

A mask is a ``(H, W)`` uint8 array of class indices. On disk it is a PNG (mode L),
which any tool reads. To and from the browser it travels in the *wire* format, chosen
by measurement (``benchmarks/codecs_bench.py``, a 1024^2 mask of lesion outlines):
zlib level 1 of the raw bytes is as small as PNG (31 KB vs 30 KB; raw bytes as base64
JSON are 1.4 MB), encodes 3x faster (1.6 ms vs 5.2 ms) and decodes 2x faster, and the
browser's ``CompressionStream("deflate")`` / ``DecompressionStream("deflate")`` speak it
natively. zlib level 6 halves the size but triples the encode time.

Wire format: ``b"PMLM"``, height and width as little-endian uint32, then the zlib
stream of the ``H * W`` bytes in row-major order.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ValidationError
from .read import DEFAULT_MAX_PIXELS, sniff_format

__all__ = [
    "present_classes",
    "decode_mask_png",
    "decode_mask_wire",
    "encode_mask_png",
    "encode_mask_wire",
    "read_mask_file",
    "validate_mask",
]

_MAGIC = b"PMLM"
_HEADER = struct.Struct("<4sII")


def validate_mask(mask, shape: tuple[int, ...], classes: Collection[int]) -> np.ndarray:
    """Return ``mask`` as a uint8 array, or raise ValidationError saying what is wrong.

    ``shape`` is the image's (height, width), or a volume's (slices, height, width).
    """
    if not isinstance(mask, np.ndarray):
        raise ValidationError(f"a mask must be a numpy array, not {type(mask).__name__}")
    if mask.shape != tuple(shape):
        what, axes = ("image", "(height, width)") if len(shape) == 2 else ("volume", "(slices, height, width)")
        raise ValidationError(f"the mask has shape {mask.shape}; the {what} needs {tuple(shape)} {axes}")
    if mask.dtype.kind not in "biu":
        raise ValidationError(f"the mask has dtype {mask.dtype}; expected integer class indices (e.g. uint8)")
    unknown = sorted(set(present_classes(mask)) - set(classes))
    if unknown:
        raise ValidationError(
            f"the mask holds class indices {unknown} that the model does not have (its classes: {sorted(classes)})"
        )
    return np.ascontiguousarray(mask, dtype=np.uint8)


def present_classes(mask: np.ndarray) -> list[int]:
    """The values a mask holds, sorted (a histogram, not a sort: ~1 ms for 1024^2 uint8).

    A large mask (a volume's) is counted in chunks of slices that hold a class other than the
    background, so an 80 M-voxel label map costs tens of milliseconds, not seconds.
    """
    if mask.dtype == np.uint8 or (mask.dtype.kind in "bu" and mask.size and int(mask.max()) < 256):
        flat = mask.reshape(len(mask), -1) if mask.ndim == 3 else mask.reshape(1, -1)
        if flat.size <= _CHUNK:
            return np.flatnonzero(np.bincount(flat.ravel().astype(np.uint8, copy=False), minlength=256)).tolist()
        counts = np.zeros(256, np.int64)
        rows = np.flatnonzero(flat.any(axis=1))
        counts[0] = flat.size - sum(np.count_nonzero(flat[r]) for r in rows)
        step = max(1, _CHUNK // flat.shape[1])
        for start in range(0, len(rows), step):
            part = flat[rows[start : start + step]].astype(np.uint8, copy=False)
            nonzero = part[part != 0]
            counts += np.bincount(nonzero, minlength=256)
        return np.flatnonzero(counts).tolist()
    return np.unique(mask).astype(np.int64).tolist()


#: voxels a histogram counts at once
_CHUNK = 1 << 22


def encode_mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_mask_png(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """A stored mask PNG (8-bit gray), read by Pillow's PNG plugin alone after its header is checked."""
    if sniff_format(bytes(data[:132])) != "PNG":
        raise ValidationError("not a readable mask PNG (its first bytes are not a PNG signature)")
    try:
        with _pillow_guard(), Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            _check_mask_header(im, "the stored mask", max_pixels)
            if im.mode != "L":
                raise ValidationError(f"a mask PNG must be 8-bit grayscale (mode L), not {im.mode}")
            return np.asarray(im).copy()
    except ValidationError:
        raise
    except _MASK_ERRORS as e:
        raise ValidationError(f"not a readable mask PNG ({e})") from None


def read_mask_file(path, *, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """A mask made by another tool: a PNG/TIFF of class indices (gray, palette or 16-bit).

    Palette PNGs (as many tools write them) give their palette indices. Colour masks are
    refused: which colour means which class is not written in the file. The file is read by
    the Pillow plugin its suffix names alone, once its first bytes agree, and its size is
    checked from the header (at most ``max_pixels`` pixels) before it is decoded.
    """
    label = name or str(path)
    fmt = _MASK_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValidationError(f"the mask {label} must be a PNG or TIFF file (.png, .tif, .tiff)")
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise ValidationError(f"the mask {label} cannot be read ({e.strerror or e})") from None
    found = sniff_format(head)
    if found != fmt:
        what = f"a {found} file" if found else "not a readable image"
        raise ValidationError(f"the mask {label} is {what}, not {fmt}; save it as a PNG or TIFF under its own suffix")
    try:
        with _pillow_guard(), Image.open(path, formats=[fmt]) as im:
            _check_mask_header(im, f"the mask {label}", max_pixels)
            if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                raise ValidationError(f"the mask {label} is a colour image ({im.mode}); a mask holds class indices")
            arr = np.asarray(im.convert("L") if im.mode in ("1", "LA") else im)
    except ValidationError:
        raise
    except _MASK_ERRORS as e:
        raise ValidationError(f"the mask {label} is not a readable image ({e})") from None
    if arr.dtype.kind not in "biu":
        raise ValidationError(f"the mask {label} holds {arr.dtype} values, not class indices")
    return arr


_MASK_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
_MASK_ERRORS = (
    UnidentifiedImageError,
    OSError,
    EOFError,
    SyntaxError,
    ValueError,
    struct.error,
    zlib.error,
    KeyError,
    IndexError,
    TypeError,
    MemoryError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


@contextlib.contextmanager
def _pillow_guard() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _check_mask_header(im: Image.Image, label: str, max_pixels: int | None) -> None:
    """One frame of at most ``max_pixels`` pixels, read from the header before decoding."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    width, height = im.size
    if width < 1 or height < 1 or width * height > limit:
        raise ValidationError(f"{label} is {width} x {height} pixels; a mask here holds 1 to {limit:,} pixels")
    frames = getattr(im, "n_frames", 1)
    if frames != 1:
        raise ValidationError(f"{label} has {frames} frames; a mask is one image")


def encode_mask_wire(mask: np.ndarray) -> bytes:
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    h, w = mask.shape
    return _HEADER.pack(_MAGIC, h, w) + zlib.compress(mask.tobytes(), 1)


def decode_mask_wire(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a wire mask; with ``shape``, also check that it is the expected one."""
    data = bytes(data)
    if len(data) < _HEADER.size or data[:4] != _MAGIC:
        raise ValidationError("not a mask in the wire format (bad header)")
    _, h, w = _HEADER.unpack_from(data)
    if shape is not None and (h, w) != tuple(shape):
        raise ValidationError(f"the mask is {h} x {w}; expected {shape[0]} x {shape[1]}")
    decoder = zlib.decompressobj()
    try:
        raw = decoder.decompress(data[_HEADER.size :], h * w + 1)  # never inflate past the size
    except zlib.error as e:
        raise ValidationError(f"the mask payload is damaged ({e})") from None
    if len(raw) != h * w or not decoder.eof:
        raise ValidationError(f"the mask payload does not hold exactly {h} x {w} bytes")
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w).copy()
