import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from helpers import image
from PIL import Image

import patientml_widgets as pml
from patientml_widgets import imaging


def _save(arr, path, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.mark.parametrize(
    "arr, suffix",
    [
        (image(20, 30), ".png"),
        (image(20, 30, dtype=np.uint16), ".png"),
        (np.random.default_rng(1).integers(0, 255, (20, 30, 3)).astype(np.uint8), ".png"),
        (image(20, 30), ".tif"),
        (image(20, 30, dtype=np.uint16), ".tiff"),
        (np.random.default_rng(2).integers(0, 60000, (20, 30, 3)).astype(np.uint16), ".tif"),
        (np.linspace(-1000, 3000, 600, dtype=np.float32).reshape(20, 30), ".tif"),
        (np.arange(600, dtype=np.int16).reshape(20, 30) - 300, ".npy"),
    ],
)
def test_files_are_read_losslessly_and_stored_losslessly(tmp_path, project, seg, arr, suffix):
    path = tmp_path / f"img{suffix}"
    if suffix == ".npy":
        np.save(path, arr)
    elif suffix.startswith(".tif"):
        tifffile.imwrite(path, arr)
    else:
        _save(arr, path)
    read = imaging.read_image(path)
    assert read.dtype == arr.dtype
    np.testing.assert_array_equal(read, arr)
    ex = project.add_example(seg, path)
    assert (ex.height, ex.width) == arr.shape[:2] and ex.dtype == str(arr.dtype)
    assert ex.source["file"] == path.name
    np.testing.assert_array_equal(project.image(ex), arr)


def test_jpeg_is_read_as_rgb(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    read = imaging.read_image(_save(arr, tmp_path / "a.jpg", quality=95))
    assert read.shape == (16, 16, 3) and read.dtype == np.uint8


def test_array_forms_are_normalized():
    assert imaging.read_image(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5)
    assert imaging.read_image(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert imaging.read_image(np.ones((4, 5), bool)).max() == 255
    assert imaging.read_image(np.arange(20, dtype=np.int64).reshape(4, 5)).dtype == np.uint8
    assert imaging.read_image(np.arange(20, dtype=np.int32).reshape(4, 5) * 1000).dtype == np.uint16
    assert imaging.read_image(np.zeros((4, 5), np.float64)).dtype == np.float32
    with pytest.raises(pml.ImageError, match="channels come last"):
        imaging.read_image(np.zeros((3, 40, 50), np.uint8))
    with pytest.raises(pml.ImageError, match="RGB must be"):
        imaging.read_image(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(pml.ImageError, match="losslessly"):
        imaging.read_image(np.array([[0, 2**40 + 1]], np.int64))
    with pytest.raises(pml.ImageError, match="numpy array or a file path"):
        imaging.read_image([[1, 2], [3, 4]])


def test_corrupt_truncated_and_empty_files_are_refused(tmp_path):
    good = _save(image(64, 64), tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    cases = {
        "truncated.png": "truncated",
        "garbage.jpg": "not a readable image",
        "empty.png": "empty file",
        "bad.tif": "not a readable TIFF",
        "bad.npy": "not a readable .npy",
        "doc.pdf": "unsupported file type",
        "missing.png": "no such file",
    }
    for name, message in cases.items():
        with pytest.raises(pml.ImageError, match=message):
            imaging.read_image(tmp_path / name)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bombs_and_oversized_images_are_refused(tmp_path):
    # a 65536 x 65536 PNG in a few hundred bytes: refused from its header, never decoded
    ihdr = struct.pack(">IIBBBBB", 65536, 65536, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * 65536
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(row * 4, 9))
    bomb += _png_chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(pml.ImageError, match=r"decompression bomb|more than the limit"):
        imaging.read_image(tmp_path / "bomb.png")
    # the limit is configurable, for files and arrays alike
    path = _save(image(100, 100), tmp_path / "big.png")
    with pytest.raises(pml.ImageError, match="100 x 100"):
        imaging.read_image(path, max_pixels=5000)
    with pytest.raises(pml.ImageError, match="limit"):
        imaging.read_image(np.zeros((100, 100), np.uint8), max_pixels=5000)
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 100), np.uint8))
    with pytest.raises(pml.ImageError, match="limit"):
        imaging.read_image(tmp_path / "big.tif", max_pixels=5000)


def test_project_limit_applies_to_added_images(tmp_path):
    project = pml.Project.open(tmp_path / "p", max_image_pixels=1000)
    m = project.create_model("m", problem_type="segmentation", classes=["bg", "x"])
    with pytest.raises(pml.ImageError, match="max_image_pixels"):
        project.add_example(m, np.zeros((40, 40), np.uint8))


def test_multi_frame_files_are_refused(tmp_path):
    frames = [Image.fromarray(image(8, 8, seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.raises(pml.ImageError, match="3 frames"):
        imaging.read_image(tmp_path / "anim.png")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(pml.ImageError, match="pages"):
        imaging.read_image(tmp_path / "stack.tif")


def test_thumbnails_are_small_jpegs_cached_as_blobs(project, seg):
    arr = (np.arange(512 * 300).reshape(300, 512) % 4096).astype(np.uint16)
    ex = project.add_example(seg, arr)
    data = project.thumbnail(ex)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and max(im.size) == imaging.thumbnails.THUMBNAIL_SIZE
        assert im.size[0] > im.size[1]
    assert len(data) < 8000
    assert project.session.store.blobs.exists(ex.thumbnail_ref)


def test_display_windows_16_bit_data():
    arr = np.linspace(1000, 3000, 10000).reshape(100, 100).astype(np.uint16)
    disp = imaging.apply_window(arr)
    assert disp.dtype == np.uint8 and disp.min() == 0 and disp.max() == 255
    windowed = imaging.apply_window(arr, {"center": 2000, "width": 1000})
    assert windowed[0, 0] == 0 and windowed[-1, -1] == 255 and abs(int(windowed[50, 0]) - 128) <= 1
    assert np.array_equal(imaging.apply_window(arr, {"center": 2000, "width": 1000}, invert=True), 255 - windowed)


def test_display_windows_values_too_large_for_a_step_of_one():
    # a uniform volume of 3e21 (a steep NIfTI scaling) and a header window centred on 1e20: lo + 1 == lo
    assert np.array_equal(imaging.apply_window(np.full((4, 4), 3e21, np.float32)), np.zeros((4, 4), np.uint8))
    windowed = imaging.apply_window(np.array([[0, 1e20, 2e20]]), {"center": 1e20, "width": 1})
    assert windowed.tolist() == [[0, 0, 255]]


def test_mask_codecs_round_trip():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (123, 77)).astype(np.uint8)
    np.testing.assert_array_equal(imaging.decode_mask_png(imaging.encode_mask_png(mask)), mask)
    wire = imaging.encode_mask_wire(mask)
    np.testing.assert_array_equal(imaging.decode_mask_wire(wire, (123, 77)), mask)
    np.testing.assert_array_equal(imaging.decode_mask_wire(memoryview(wire)), mask)
    # the payload is plain zlib, as the browser's CompressionStream("deflate") writes it
    assert zlib.decompress(wire[12:]) == mask.tobytes()


def test_malformed_wire_masks_are_refused():
    wire = imaging.encode_mask_wire(np.zeros((10, 10), np.uint8))
    with pytest.raises(pml.ValidationError, match="bad header"):
        imaging.decode_mask_wire(b"XXXX" + wire[4:])
    with pytest.raises(pml.ValidationError, match="expected 20 x 10"):
        imaging.decode_mask_wire(wire, (20, 10))
    with pytest.raises(pml.ValidationError, match="damaged"):
        imaging.decode_mask_wire(wire[:12] + b"\x00garbage")
    with pytest.raises(pml.ValidationError, match="exactly 10 x 10"):
        imaging.decode_mask_wire(wire[:-3])
    # a bomb: the header says 10 x 10 but the stream inflates to a gigabyte's worth
    bomb = wire[:12] + zlib.compress(b"\x00" * 10_000_000)
    with pytest.raises(pml.ValidationError, match="exactly 10 x 10"):
        imaging.decode_mask_wire(bomb)
    with pytest.raises(pml.ValidationError, match="mode L"):
        buf = io.BytesIO()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
        imaging.decode_mask_png(buf.getvalue())


# -- files from elsewhere: the format is the suffix's, sizes are checked before decoding ----------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"


def _tiff_bytes(arr, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def _no_eps(monkeypatch):
    """Fail the test if Pillow's EPS plugin (which runs Ghostscript) is ever reached."""
    from PIL import EpsImagePlugin

    def refuse(self):
        raise AssertionError("Pillow's EPS plugin was reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", refuse)


def test_files_are_read_only_as_the_format_their_suffix_names(tmp_path, monkeypatch):
    _no_eps(monkeypatch)
    (tmp_path / "tiff.png").write_bytes(_tiff_bytes(image(8, 8)))
    buf = io.BytesIO()
    Image.fromarray(image(8, 8)).save(buf, format="BMP")
    (tmp_path / "bmp.png").write_bytes(buf.getvalue())
    (tmp_path / "eps.jpg").write_bytes(EPS)
    (tmp_path / "eps.png").write_bytes(EPS)
    (tmp_path / "png.tif").write_bytes(_save(image(8, 8), tmp_path / "real.png").read_bytes())
    (tmp_path / "npy.png").write_bytes(imaging.encode_image(np.zeros((4, 4), np.int16))[0])
    cases = {
        "tiff.png": r"is a TIFF file, not PNG; rename it to \.tif",
        "bmp.png": r"is a BMP file, not PNG, and that format is not read",
        "eps.jpg": r"is a PostScript \(EPS\) file, not JPEG, and that format is not read",
        "eps.png": r"PostScript \(EPS\)",
        "png.tif": r"is a PNG file, not TIFF; rename it to \.png",
        "npy.png": r"is a \.npy file, not PNG; rename it to \.npy",
    }
    for name, message in cases.items():
        with pytest.raises(pml.ImageError, match=message):
            imaging.read_image(tmp_path / name)
    # every other way in: stored blobs, masks
    with pytest.raises(pml.ImageError, match="PostScript"):
        imaging.decode_image(EPS, "png")
    with pytest.raises(pml.ImageError, match=r"\.png or \.npy, not \.eps"):
        imaging.decode_image(EPS, "eps")
    with pytest.raises(pml.ValidationError, match="EPS"):
        imaging.read_mask_file(tmp_path / "eps.png")
    with pytest.raises(pml.ValidationError, match="PNG signature"):
        imaging.decode_mask_png(EPS)
    with pytest.raises(pml.ValidationError, match="PNG or TIFF"):
        imaging.read_mask_file(tmp_path / "eps.jpg")


def test_a_multi_sample_tiff_is_refused_from_its_header_before_decoding(tmp_path):
    import tracemalloc

    path = tmp_path / "samples.tif"
    path.write_bytes(
        _tiff_bytes(
            np.zeros((512, 512, 400), np.uint8), photometric="minisblack", planarconfig="contig", compression="zlib"
        )
    )
    assert path.stat().st_size < 200_000  # 105 MB of samples in ~119 KB
    tracemalloc.start()
    try:
        with pytest.raises(pml.ImageError, match=r"shape \(512, 512, 400\)"):
            imaging.read_image(path, max_pixels=512 * 512)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000
    # the byte bound: an RGBA float32 TIFF (16 bytes a pixel) is refused from its header too
    (tmp_path / "rgba.tif").write_bytes(_tiff_bytes(np.zeros((64, 64, 4), np.float32), photometric="rgb"))
    with pytest.raises(pml.ImageError, match="RGB must be"):
        imaging.read_image(tmp_path / "rgba.tif")
    np.save(tmp_path / "rgba64.npy", np.zeros((64, 64, 4), np.int64))  # 32 bytes a pixel
    with pytest.raises(pml.ImageError, match=r"would decode to 131,072 bytes .* more than the limit of 32,768"):
        imaging.read_image(tmp_path / "rgba64.npy", max_pixels=64 * 64)
    # .npy: the header's shape and dtype, before the data is read
    np.save(tmp_path / "big.npy", np.zeros((100, 100), np.float64))
    with pytest.raises(pml.ImageError, match="more than the limit"):
        imaging.read_image(tmp_path / "big.npy", max_pixels=5000)
    np.save(tmp_path / "stack.npy", np.zeros((50, 50, 7), np.uint8))
    with pytest.raises(pml.ImageError, match=r"shape \(50, 50, 7\)"):
        imaging.read_image(tmp_path / "stack.npy")
    header_only = (tmp_path / "big.npy").read_bytes()[:128]
    (tmp_path / "short.npy").write_bytes(header_only)
    with pytest.raises(pml.ImageError, match="truncated"):
        imaging.read_image(tmp_path / "short.npy")


def test_dicom_samples_and_bits_are_checked_in_bytes_before_decoding(tmp_path):
    import pydicom

    from patientml_widgets.dicom_demo import write_dicom

    path = write_dicom(tmp_path / "a.dcm", np.zeros((64, 64), np.uint16))
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 64, 64, 63
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(path)
    with pytest.raises(pml.ImageError, match=r"would decode to 98,304 bytes per frame"):
        list(imaging.read_dicom_frames(path, max_pixels=64 * 64))
    ds.SamplesPerPixel = 4
    ds.save_as(path)
    with pytest.raises(pml.ImageError, match="4 samples per pixel"):
        list(imaging.read_dicom_frames(path, max_pixels=10**6))


def test_values_the_stored_type_cannot_hold_are_refused_not_rounded():
    with pytest.raises(pml.ImageError, match=r"float32.*rescale"):
        imaging.read_image(np.array([[0.0, 1e300]]))
    with pytest.raises(pml.ImageError, match="float32"):
        imaging.read_image(np.array([[-1e39, 0.0]]))
    assert imaging.read_image(np.array([[0.0, 3e38]])).dtype == np.float32  # within range
    for big in (np.array([[0, 2**63 - 1]], np.int64), np.array([[0, 2**64 - 1]], np.uint64)):
        with pytest.raises(pml.ImageError, match="losslessly"):
            imaging.read_image(big)  # no overflowing cast (a RuntimeWarning is an error here)
    assert imaging.read_image(np.array([[0, 2**40]], np.int64)).dtype == np.float32  # exact in float32


def test_16_bit_colour_png_is_refused_rather_than_truncated(tmp_path):
    rgb = np.full((4, 4, 3), 300, np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)
    ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
    (tmp_path / "rgb16.png").write_bytes(data + _png_chunk(b"IEND", b""))
    with pytest.raises(pml.ImageError, match=r"16-bit colour.*16-bit TIFF"):
        imaging.read_image(tmp_path / "rgb16.png")
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb)
    np.testing.assert_array_equal(imaging.read_image(tmp_path / "rgb16.tif"), rgb)


def test_stored_images_are_checked_like_files(project, seg):
    ex = project.add_example(seg, image(20, 30, dtype=np.uint16))
    np.testing.assert_array_equal(project.image(ex), image(20, 30, dtype=np.uint16))
    ihdr = struct.pack(">IIBBBBB", 65536, 65536, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")
    with pytest.raises(pml.ImageError, match=r"decompression bomb|more than the limit"):
        imaging.decode_image(bomb, "png")
    with pytest.raises(pml.ValidationError, match=r"decompression bomb|65536 x 65536"):
        imaging.decode_mask_png(bomb)
    for arr in (np.zeros((4, 4), np.float64), np.zeros((4, 4, 2), np.uint8), np.array([[np.inf]], np.float32)):
        buf = io.BytesIO()
        np.save(buf, arr)
        with pytest.raises(pml.ImageError, match=r"never stores|NaN or infinite|shape"):
            imaging.decode_image(buf.getvalue(), "npy")
    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(pml.ImageError, match="Python objects"):
        imaging.decode_image(buf.getvalue(), "npy")
