"""Fuzzing the readers: damaged, truncated, mislabelled files and random DICOM headers.

Every call either gives a valid array or raises a PatientMLError subclass that says why;
nothing else escapes, and nothing is written outside the temporary folder of the example.
"""

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
import tifffile
from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from patientml_widgets import imaging
from patientml_widgets.dicom_demo import write_dicom
from patientml_widgets.errors import PatientMLError

FUZZ = settings(max_examples=fuzz_examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 256 * 256
STORED = {
    (2, np.dtype(np.uint8)),
    (2, np.dtype(np.uint16)),
    (2, np.dtype(np.int16)),
    (2, np.dtype(np.float32)),
    (3, np.dtype(np.uint8)),
    (3, np.dtype(np.uint16)),
}


def _png(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tiff(arr, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


_rng = np.random.default_rng(0)
_gray = _rng.integers(0, 255, (12, 10)).astype(np.uint8)
_rgb = _rng.integers(0, 255, (9, 11, 3)).astype(np.uint8)
SEEDS = {
    ".png": [_png(_gray), _png(_rgb), _png(_gray.astype(np.uint16) * 200), _png(_gray, optimize=True)],
    ".jpg": [_jpeg(_gray), _jpeg(_rgb)],
    ".tif": [
        _tiff(_gray),
        _tiff(_rgb, photometric="rgb"),
        _tiff(_gray.astype(np.float32)),
        _tiff(_gray, compression="zlib"),
        _tiff(np.stack([_gray] * 3), photometric="rgb", planarconfig="separate"),
        _tiff(np.zeros((2, 8, 8), np.uint8)),
    ],
    ".npy": [_npy(_gray), _npy(_gray.astype(np.float64)), _npy(_rgb.astype(np.uint16)), _npy(np.asfortranarray(_gray))],
}
SUFFIXES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"]
ALL_SEEDS = [data for seeds in SEEDS.values() for data in seeds]


@st.composite
def mutated(draw, seeds):
    """A seed file with bytes flipped, cut, inserted, or its header replaced."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "header", "int"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "header":
            head = draw(st.binary(min_size=1, max_size=64))
            data[: len(head)] = head
        else:  # a large number where a size or an offset may be
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))
    return bytes(data)


def _check_array(arr) -> None:
    assert isinstance(arr, np.ndarray)
    assert (arr.ndim, arr.dtype) in STORED and (arr.ndim == 2 or arr.shape[2] == 3)
    assert arr.shape[0] * arr.shape[1] <= LIMIT
    if arr.dtype.kind == "f":
        assert np.isfinite(arr).all()


def _in_sandbox(call):
    """Run ``call(folder)`` in a fresh folder (also the working directory); nothing may appear elsewhere."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cwd:
        os.chdir(cwd)
        try:
            return call(Path(folder))
        finally:
            os.chdir(before)
            assert os.listdir(cwd) == []


def _expect_array_or_refusal(read) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # an overflowing cast is a bug too
            arr = read()
    except PatientMLError as e:
        assert str(e)
        return
    _check_array(arr)


@FUZZ
@given(data=mutated(ALL_SEEDS), suffix=st.sampled_from(SUFFIXES))
def test_mutated_files_under_any_suffix_read_or_are_refused(data, suffix):
    def run(folder):
        path = folder / f"x{suffix}"
        path.write_bytes(data)
        _expect_array_or_refusal(lambda: imaging.read_image(path, max_pixels=LIMIT))
        assert sorted(os.listdir(folder)) == [path.name]

    _in_sandbox(run)


@FUZZ
@given(head=st.binary(max_size=200), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_are_refused(head, suffix):
    def run(folder):
        path = folder / f"x{suffix}"
        path.write_bytes(head)
        _expect_array_or_refusal(lambda: imaging.read_image(path, max_pixels=LIMIT))

    _in_sandbox(run)


@FUZZ
@given(data=mutated(SEEDS[".png"] + SEEDS[".npy"]), ext=st.sampled_from(["png", "npy", "jpg", ""]))
def test_mutated_stored_blobs_decode_or_are_refused(data, ext):
    _expect_array_or_refusal(lambda: imaging.decode_image(data, ext, max_pixels=LIMIT))


@FUZZ
@given(data=mutated([_png(_gray % 4), _png(_rgb), _tiff(_gray % 3)]), suffix=st.sampled_from([".png", ".tif"]))
def test_mutated_masks_read_or_are_refused(data, suffix):
    def run(folder):
        path = folder / f"m{suffix}"
        path.write_bytes(data)
        for read in (lambda: imaging.read_mask_file(path, max_pixels=LIMIT), lambda: imaging.decode_mask_png(data)):
            try:
                mask = read()
            except PatientMLError:
                continue
            assert isinstance(mask, np.ndarray) and mask.ndim == 2 and mask.dtype.kind in "biu"

    _in_sandbox(run)


# -- DICOM -------------------------------------------------------------------------------

SYNTAXES = [
    pydicom.uid.ExplicitVRLittleEndian,
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.ExplicitVRBigEndian,
    pydicom.uid.RLELossless,
    pydicom.uid.JPEGBaseline8Bit,
    pydicom.uid.JPEG2000Lossless,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
]
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Rows": st.integers(0, 65535),
        "Columns": st.integers(0, 65535),
        "BitsAllocated": st.sampled_from([0, 1, 7, 8, 12, 16, 32, 64, 65535]),
        "BitsStored": st.integers(0, 70),
        "HighBit": st.integers(0, 70),
        "SamplesPerPixel": st.integers(0, 5),
        "PixelRepresentation": st.integers(0, 2),
        "PlanarConfiguration": st.integers(0, 2),
        "NumberOfFrames": st.one_of(st.integers(-2, 100000), st.sampled_from(["", "x", "1.5"])),
        "PhotometricInterpretation": st.sampled_from(
            ["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "XYZ", ""]
        ),
        "RescaleSlope": st.sampled_from(["1", "0", "-1e308", "1e308", "nan", "x", "2.5"]),
        "RescaleIntercept": st.sampled_from(["0", "-1024", "1e308", "inf", "x"]),
        "WindowCenter": st.sampled_from(["40", "x", "", "1e400"]),
        "WindowWidth": st.sampled_from(["400", "0", "-5", "x"]),
        "Modality": st.sampled_from(["CT", "MR", "SEG", "US", ""]),
        "ImageOrientationPatient": st.sampled_from([[1, 0, 0, 0, 1, 0], [1, 0], []]),
        "ImagePositionPatient": st.sampled_from([[0, 0, 1], [1], []]),
        "InstanceNumber": st.sampled_from(["1", "x", ""]),
    },
)


@st.composite
def dicom_files(draw):
    """A small DICOM file with random header values, random pixel bytes, maybe its bytes damaged."""
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pixels = np.zeros((rows, cols), np.uint16)
    header = draw(HEADERS)
    syntax = draw(st.sampled_from(SYNTAXES))
    payload = draw(st.one_of(st.none(), st.binary(max_size=300)))
    cut = draw(st.one_of(st.none(), st.integers(0, 2000)))
    flips = draw(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=3))
    return pixels, header, syntax, payload, cut, flips


def _write_fuzzed_dicom(path, pixels, header, syntax, payload, cut, flips) -> None:
    path = write_dicom(path, pixels, PatientID="FUZZ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        for keyword, value in header.items():
            if isinstance(value, str):  # written raw, as a hostile file holds it: converted on first access
                tag = pydicom.datadict.tag_for_keyword(keyword)
                raw = value.encode() + (b" " if len(value) % 2 else b"")
                vr = pydicom.datadict.dictionary_VR(tag)
                ds[tag] = pydicom.dataelem.RawDataElement(pydicom.tag.Tag(tag), vr, len(raw), raw, 0, False, True)
            else:
                setattr(ds, keyword, value)
        if payload is not None:
            ds.PixelData = payload + (b"\x00" if len(payload) % 2 else b"")
        ds.file_meta.TransferSyntaxUID = syntax
        try:
            ds.save_as(path, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian)
        except (
            ValueError,
            TypeError,
            OverflowError,
            KeyError,
        ):  # pydicom refuses to write some values; keep the good file
            return
    data = bytearray(path.read_bytes())
    for at, byte in flips:
        if at < len(data):
            data[at] = byte
    path.write_bytes(bytes(data[:cut] if cut is not None else data))


@settings(max_examples=fuzz_examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dicom_files())
def test_random_dicom_headers_read_or_are_refused(spec):
    def run(folder):
        path = folder / "x.dcm"
        _write_fuzzed_dicom(path, *spec)
        try:
            header = imaging.read_dicom_header(path)
        except PatientMLError:
            pass
        else:
            assert isinstance(header, imaging.DicomHeader)
        try:
            frames = list(imaging.read_dicom_frames(path, max_pixels=LIMIT))
        except PatientMLError:
            return
        for array, source in frames:
            assert isinstance(source, dict)
            _expect_array_or_refusal(lambda a=array: imaging.read_image(a, max_pixels=LIMIT))
        assert sorted(os.listdir(folder)) == ["x.dcm"]

    _in_sandbox(run)
