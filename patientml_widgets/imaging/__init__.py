"""Imaging: read images, encode them losslessly, thumbnails, mask codecs."""

from .dicom import DicomHeader, is_dicom, read_dicom_frames, read_dicom_header, read_frame_headers
from .interpolate import interpolate_slices
from .masks import (
    decode_mask_png,
    decode_mask_wire,
    encode_mask_png,
    encode_mask_wire,
    present_classes,
    read_mask_file,
    validate_mask,
)
from .read import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, encode_image, read_image, stored_values
from .thumbnails import make_thumbnail
from .volumes import (
    StoredVolume,
    Volume,
    check_volume_size,
    decode_volume,
    encode_volume,
    is_nifti,
    read_nifti,
    read_volume_slice,
    volume_from_array,
    write_nifti,
)
from .window import MODALITY_PRESETS, apply_window, window_presets

__all__ = [
    "DicomHeader",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "MODALITY_PRESETS",
    "apply_window",
    "decode_image",
    "decode_mask_png",
    "decode_mask_wire",
    "encode_image",
    "encode_mask_png",
    "encode_mask_wire",
    "is_dicom",
    "make_thumbnail",
    "present_classes",
    "read_dicom_frames",
    "read_dicom_header",
    "read_frame_headers",
    "read_image",
    "read_mask_file",
    "window_presets",
    "validate_mask",
    "StoredVolume",
    "Volume",
    "check_volume_size",
    "decode_volume",
    "encode_volume",
    "interpolate_slices",
    "is_nifti",
    "read_nifti",
    "read_volume_slice",
    "stored_values",
    "volume_from_array",
    "write_nifti",
]
