"""Imaging: read images, encode them losslessly, thumbnails, mask codecs."""

from .masks import (
    decode_mask_png,
    decode_mask_wire,
    encode_mask_png,
    encode_mask_wire,
    present_classes,
    validate_mask,
)
from .read import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, encode_image, read_image
from .thumbnails import make_thumbnail, to_display

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "decode_image",
    "decode_mask_png",
    "decode_mask_wire",
    "encode_image",
    "encode_mask_png",
    "encode_mask_wire",
    "make_thumbnail",
    "present_classes",
    "read_image",
    "to_display",
    "validate_mask",
]
