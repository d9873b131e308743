"""DICOM SEG export and import of volume labels: round trips on axial, oblique and flipped series,
what viewers need in the file, and every refusal of the reader.
"""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from patientml_widgets.dicom_demo import write_dicom, write_series
from patientml_widgets.errors import ImageError, ValidationError
from patientml_widgets.exchange.dicom_seg import (
    dicom_lab_to_rgb,
    read_dicom_seg,
    reference_datasets,
    rgb_to_dicom_lab,
    write_dicom_seg,
)

SHAPE = (6, 16, 20)
CLASSES = [
    {"index": 0, "name": "background", "color": "#000000"},
    {"index": 1, "name": "liver", "color": "#ff0000"},
    {"index": 2, "name": "lesion", "color": "#00ff00"},
    {"index": 3, "name": "never painted", "color": "#0000ff"},
    {"index": 5, "name": "vessel", "color": "#ffaa00"},
]
GEOMETRIES = {
    "axial": {"spacing": (2.5, 0.8, 0.9), "orientation": (1, 0, 0, 0, 1, 0)},
    "oblique": {"spacing": (2.0, 0.7, 0.9), "orientation": (1, 0, 0, 0, 0.8, 0.6)},
    "flipped": {"spacing": (-3.0, 0.8, 0.8), "orientation": (0, 1, 0, 0, 0, -1)},
}


def series_meta(folder: Path) -> dict:
    """The metadata the importer keeps for a volume: the series' headers sorted along the slice normal."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("*.dcm"))]
    iop = np.array(headers[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    headers.sort(key=lambda ds: float(normal @ np.array(ds.ImagePositionPatient, float)))
    first = headers[0]
    return {
        "sop_class_uid": str(first.SOPClassUID),
        "frame_of_reference_uid": str(first.FrameOfReferenceUID),
        "study_uid": str(first.StudyInstanceUID),
        "series_uid": str(first.SeriesInstanceUID),
        "sop_uids": [str(ds.SOPInstanceUID) for ds in headers],
        "positions": [[float(v) for v in ds.ImagePositionPatient] for ds in headers],
        "orientation": [float(v) for v in first.ImageOrientationPatient],
        "pixel_spacing": [float(v) for v in first.PixelSpacing],
        "slice_thickness": float(first.SliceThickness),
        "modality": str(first.Modality),
        "series_number": int(first.SeriesNumber),
        "patient": {"PatientID": str(first.PatientID), "PatientName": str(first.PatientName), "PatientSex": "O"},
        "study": {"StudyDate": "20240131", "StudyID": "7", "AccessionNumber": "ACC1"},
    }


def labels(shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[1:4, 3:9, 2:10] = 1
    mask[2, 5:7, 4:6] = 2  # a lesion inside the liver: classes never overlap in a label
    mask[4:6, 10:14, 12:18] = 5
    mask[0, 0, 0] = 5  # a corner voxel
    return mask


@pytest.fixture(params=sorted(GEOMETRIES))
def series(request, tmp_path):
    folder = tmp_path / "series"
    write_series(folder, np.zeros(SHAPE, np.int16), **GEOMETRIES[request.param])
    return series_meta(folder)


@pytest.fixture
def axial(tmp_path):
    folder = tmp_path / "axial"
    write_series(folder, np.zeros(SHAPE, np.int16), **GEOMETRIES["axial"])
    return series_meta(folder)


def test_round_trip_voxels_and_segments(series, tmp_path):
    mask = labels()
    path = write_dicom_seg(tmp_path / "out" / "labels.dcm", mask, series, CLASSES, content_creator="Doe^Jane")
    assert path.exists() and not [p for p in path.parent.iterdir() if p != path]  # no temp file left
    back, segments = read_dicom_seg(path, series["sop_uids"], SHAPE)
    assert back.dtype == np.uint8 and np.array_equal(back, mask)
    assert [(s["number"], s["label"], s["index"]) for s in segments] == [
        (1, "liver", 1),
        (2, "lesion", 2),
        (3, "vessel", 5),
    ]  # "never painted" (3) is not written
    assert [s["color"] for s in segments] == ["#ff0000", "#00ff00", "#ffaa00"]


def test_the_file_references_the_series(series, tmp_path):
    mask = labels()
    path = write_dicom_seg(tmp_path / "labels.dcm", mask, series, CLASSES)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series["series_uid"]
    assert ds.FrameOfReferenceUID == series["frame_of_reference_uid"]
    assert ds.StudyInstanceUID == series["study_uid"] and ds.SeriesInstanceUID != series["series_uid"]
    assert ds.PatientID == series["patient"]["PatientID"] and ds.AccessionNumber == "ACC1"
    assert ds.StudyDate == "20240131" and ds.SeriesDescription == "patientml-widgets labels"
    frames = ds.pixel_array.reshape(-1, *SHAPE[1:])
    numbers = {1: 1, 2: 2, 5: 3}
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = series["sop_uids"].index(uid)
        number = group.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        index = next(i for i, n in numbers.items() if n == number)
        assert np.array_equal(frame.astype(bool), mask[k] == index)
        assert np.allclose(group.PlanePositionSequence[0].ImagePositionPatient, series["positions"][k])
    for segment in ds.SegmentSequence:
        assert segment.SegmentAlgorithmType == "MANUAL"
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert segment.SegmentDescription == segment.TrackingID
        assert segment.SegmentDescription.startswith("patientml-widgets class ")


def test_highdicom_reads_it(axial, tmp_path):
    hd = pytest.importorskip("highdicom")
    mask = labels()
    path = write_dicom_seg(tmp_path / "labels.dcm", mask, axial, CLASSES)
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == 3
    assert seg.get_segment_description(3).segment_label == "vessel"
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=axial["sop_uids"], combine_segments=True)
    assert np.array_equal(pixels, np.take([0, 1, 2, 0, 0, 3], mask))  # highdicom gives segment numbers


def test_colours_are_what_highdicom_computes():
    hd = pytest.importorskip("highdicom")
    for color in ("#ff0000", "#00ff00", "#0000ff", "#ffaa00", "#808080", "#ffffff", "#000000", "#123456"):
        if hasattr(hd.color.CIELabColor, "from_rgb"):  # highdicom >= 0.26
            rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
            expected = hd.color.CIELabColor.from_rgb(*rgb).value
            assert max(abs(a - b) for a, b in zip(rgb_to_dicom_lab(color), expected)) <= 1
        assert dicom_lab_to_rgb(rgb_to_dicom_lab(color)) == color


def test_reference_datasets_are_headers_only(axial):
    refs = reference_datasets(axial, 16, 20)
    assert [ds.SOPInstanceUID for ds in refs] == axial["sop_uids"]
    assert all("PixelData" not in ds and ds.Rows == 16 and ds.Columns == 20 for ds in refs)
    assert refs[0].PatientBirthDate == "" and refs[0].StudyID == "7"
    with pytest.raises(ValidationError, match="lacks"):
        reference_datasets({**axial, "frame_of_reference_uid": ""}, 16, 20)
    with pytest.raises(ValidationError, match="positions"):
        reference_datasets({**axial, "positions": axial["positions"][:-1]}, 16, 20)


def test_write_refuses_bad_masks(axial, tmp_path):
    path = tmp_path / "out" / "labels.dcm"
    with pytest.raises(ValidationError, match="empty"):
        write_dicom_seg(path, np.zeros(SHAPE, np.uint8), axial, CLASSES)
    with pytest.raises(ValidationError, match=r"\[7\]"):
        write_dicom_seg(path, np.full(SHAPE, 7, np.uint8), axial, CLASSES)
    with pytest.raises(ValidationError, match="slices"):
        write_dicom_seg(path, labels()[:-1], axial, CLASSES)
    assert not path.parent.exists()  # refused before anything is written


def test_write_replaces_atomically(axial, tmp_path, monkeypatch):
    path = tmp_path / "out" / "labels.dcm"
    write_dicom_seg(path, labels(), axial, CLASSES)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("patientml_widgets.store.files.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_seg(path, np.ones(SHAPE, np.uint8), axial, CLASSES)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["labels.dcm"]


# --- other tools' SEGs and refusals ----------------------------------------------------------------


def edited(path: Path, out: Path, change) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(out)
    return out


def test_foreign_segments_give_segment_numbers(axial, tmp_path):
    mask = labels()
    path = write_dicom_seg(tmp_path / "labels.dcm", mask, axial, CLASSES)

    def foreign(ds):
        for segment in ds.SegmentSequence:
            del segment.SegmentDescription
            del segment.TrackingID
            del segment.TrackingUID
            del segment.RecommendedDisplayCIELabValue

    back, segments = read_dicom_seg(edited(path, tmp_path / "foreign.dcm", foreign), axial["sop_uids"], SHAPE)
    assert [(s["number"], s["label"], s["index"], s["color"]) for s in segments] == [
        (1, "liver", None, None),
        (2, "lesion", None, None),
        (3, "vessel", None, None),
    ]
    assert np.array_equal(back, np.take([0, 1, 2, 0, 0, 3], mask))


def test_fractional_is_thresholded_at_half(axial, tmp_path):
    mask = labels()
    path = write_dicom_seg(tmp_path / "labels.dcm", mask, axial, CLASSES)
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(-1, *SHAPE[1:]).astype(np.uint8) * 200  # "probability" 200/255
    frames[0][frames[0] > 0] = 100  # below a half: not in the segment
    first = ds.PerFrameFunctionalGroupsSequence[0]
    k = axial["sop_uids"].index(first.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
    value = [1, 2, 5][first.SegmentIdentificationSequence[0].ReferencedSegmentNumber - 1]
    ds.SegmentationType, ds.SegmentationFractionalType, ds.MaximumFractionalValue = "FRACTIONAL", "PROBABILITY", 255
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "fractional.dcm")
    back, _ = read_dicom_seg(tmp_path / "fractional.dcm", axial["sop_uids"], SHAPE)
    expected = mask.copy()
    expected[k][expected[k] == value] = 0
    assert np.array_equal(back, expected)


def test_frames_without_references_are_placed_by_position(axial, tmp_path):
    mask = labels()
    path = write_dicom_seg(tmp_path / "labels.dcm", mask, axial, CLASSES)

    def strip(ds):
        for group in ds.PerFrameFunctionalGroupsSequence:
            del group.DerivationImageSequence

    bare = edited(path, tmp_path / "bare.dcm", strip)
    with pytest.raises(ValidationError, match="no per-frame"):
        read_dicom_seg(bare, axial["sop_uids"], SHAPE)
    back, _ = read_dicom_seg(
        bare, axial["sop_uids"], SHAPE, positions=axial["positions"], orientation=axial["orientation"]
    )
    assert np.array_equal(back, mask)
    with pytest.raises(ValidationError, match="oriented"):
        read_dicom_seg(bare, axial["sop_uids"], SHAPE, positions=axial["positions"], orientation=[0, 1, 0, 1, 0, 0])
    moved = [[x, y, z + 1.0] for x, y, z in axial["positions"]]
    with pytest.raises(ValidationError, match="mm from the nearest slice"):
        read_dicom_seg(bare, axial["sop_uids"], SHAPE, positions=moved, orientation=axial["orientation"])


def test_refuses_a_file_that_is_not_dicom(axial, tmp_path):
    (tmp_path / "notes.dcm").write_bytes(b"not a DICOM file at all" * 20)
    with pytest.raises(ImageError, match="not a DICOM file"):
        read_dicom_seg(tmp_path / "notes.dcm", axial["sop_uids"], SHAPE)


def test_refuses_an_image_that_is_not_a_seg(axial, tmp_path):
    image = write_dicom(tmp_path / "ct.dcm", np.zeros((16, 20), np.uint16), Modality="CT")
    with pytest.raises(ImageError, match="not a DICOM Segmentation"):
        read_dicom_seg(image, axial["sop_uids"], SHAPE)


def test_refuses_a_seg_of_another_series(axial, tmp_path):
    path = write_dicom_seg(tmp_path / "labels.dcm", labels(), axial, CLASSES)
    other = tmp_path / "other"
    write_series(other, np.zeros(SHAPE, np.int16))
    with pytest.raises(ValidationError, match=f"another series \\({axial['series_uid']}\\)"):
        read_dicom_seg(path, series_meta(other)["sop_uids"], SHAPE)


def test_refuses_frames_of_another_size(axial, tmp_path):
    path = write_dicom_seg(tmp_path / "labels.dcm", labels(), axial, CLASSES)
    with pytest.raises(ImageError, match="16 x 20 pixels; the series' slices are 16 x 24"):
        read_dicom_seg(path, axial["sop_uids"], (6, 16, 24))
    with pytest.raises(ValidationError, match="one slice for each"):
        read_dicom_seg(path, axial["sop_uids"][:-1], SHAPE)


def test_refuses_overlapping_segments(axial, tmp_path):
    path = write_dicom_seg(tmp_path / "labels.dcm", labels(), axial, CLASSES)
    ds = pydicom.dcmread(path)
    # the liver's frames claim the whole slice: on its slices, it overlaps the lesion (2 x 2 voxels, one slice)
    frames = ds.pixel_array.reshape(-1, *SHAPE[1:]).copy()
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if group.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1:
            frames[i][3:9, 2:10] = 1
            frames[i][5:7, 4:6] = 1
    ds.PixelData = pydicom.pixels.pack_bits(frames.ravel())
    ds.save_as(tmp_path / "overlap.dcm")
    with pytest.raises(ValidationError, match="4 voxels lie in more than one segment"):
        read_dicom_seg(tmp_path / "overlap.dcm", axial["sop_uids"], SHAPE)


def test_refuses_files_over_the_limit_before_reading_pixels(axial, tmp_path, monkeypatch):
    path = write_dicom_seg(tmp_path / "labels.dcm", labels(), axial, CLASSES)
    size = path.stat().st_size
    with pytest.raises(ImageError, match=f"is {size} bytes; DICOM SEGs over {size - 1} bytes are refused"):
        read_dicom_seg(path, axial["sop_uids"], SHAPE, max_bytes=size - 1)
    # a header that claims a huge frame count: refused from the header, the pixel data never decoded
    import patientml_widgets.exchange.dicom_seg as module

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixel data read before the size check")

    monkeypatch.setattr(module, "_pixels", no_pixels)
    huge = edited(path, tmp_path / "huge.dcm", lambda ds: setattr(ds, "NumberOfFrames", 10**7))
    with pytest.raises(ImageError, match="10000000 frames of 16 x 20: over the limit"):
        read_dicom_seg(huge, axial["sop_uids"], SHAPE)


def test_reads_a_labelmap_seg(axial, tmp_path):
    hd = pytest.importorskip("highdicom")
    if not hasattr(hd.seg.SegmentationTypeValues, "LABELMAP"):
        pytest.skip("highdicom writes LABELMAP SEGs from 0.24")
    from pydicom.sr.coding import Code

    mask = labels()
    numbers = np.take([0, 1, 2, 0, 0, 3], mask).astype(np.uint8)
    tissue = Code("85756007", "SCT", "Tissue")
    descriptions = [
        hd.seg.SegmentDescription(n, name, tissue, tissue, "MANUAL") for n, name in enumerate(["a", "b", "c"], 1)
    ]
    seg = hd.seg.Segmentation(
        reference_datasets(axial, *SHAPE[1:]), numbers, "LABELMAP", descriptions, hd.UID(), 1, hd.UID(), 1,
        "other tool", "model", "1", "0",
    )  # fmt: skip
    seg.save_as(tmp_path / "labelmap.dcm")
    back, segments = read_dicom_seg(tmp_path / "labelmap.dcm", axial["sop_uids"], SHAPE)
    assert [s["label"] for s in segments] == ["a", "b", "c"] and np.array_equal(back, numbers)


def test_names_beyond_ascii(axial, tmp_path):
    meta = {**axial, "patient": {**axial["patient"], "PatientName": "Müller^Jörg"}}
    classes = [{"index": 1, "name": "lésion 肝", "color": "#abcdef"}]
    path = write_dicom_seg(
        tmp_path / "labels.dcm", (labels() == 1).astype(np.uint8), meta, classes, content_creator="Døe^Jane"
    )
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Müller^Jörg"
    assert str(ds.ContentCreatorName) == "Døe^Jane"
    _, segments = read_dicom_seg(path, axial["sop_uids"], SHAPE)
    assert segments == [{"number": 1, "label": "lésion 肝", "index": 1, "color": "#abcdef"}]


def test_refuses_frames_placed_by_malformed_positions(axial, tmp_path):
    path = write_dicom_seg(tmp_path / "labels.dcm", labels(), axial, CLASSES)
    geometry = {"positions": axial["positions"], "orientation": axial["orientation"]}

    def two_coordinates(ds):
        for group in ds.PerFrameFunctionalGroupsSequence:
            del group.DerivationImageSequence
            group.PlanePositionSequence[0].ImagePositionPatient = [1.0, 2.0]

    with pytest.raises(ValidationError, match="neither a referenced instance nor a position"):
        read_dicom_seg(edited(path, tmp_path / "ipp.dcm", two_coordinates), axial["sop_uids"], SHAPE, **geometry)

    def five_cosines(ds):
        for group in ds.PerFrameFunctionalGroupsSequence:
            del group.DerivationImageSequence
        ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1]

    with pytest.raises(ValidationError, match="not oriented as the series"):
        read_dicom_seg(edited(path, tmp_path / "iop.dcm", five_cosines), axial["sop_uids"], SHAPE, **geometry)


def test_refuses_a_negative_segment_number(axial, tmp_path):
    path = write_dicom_seg(tmp_path / "labels.dcm", labels(), axial, CLASSES)

    def negative(ds):  # a file that declares SegmentNumber signed (SS), as a crafted file may
        for segment in ds.SegmentSequence:
            del segment.SegmentDescription
            del segment.TrackingID
        ds.SegmentSequence[0]["SegmentNumber"].VR = "SS"
        ds.SegmentSequence[0].SegmentNumber = -1
        for group in ds.PerFrameFunctionalGroupsSequence:
            item = group.SegmentIdentificationSequence[0]
            if item.ReferencedSegmentNumber == 1:
                item["ReferencedSegmentNumber"].VR = "SS"
                item.ReferencedSegmentNumber = -1

    with pytest.raises(ImageError, match="segment number -1; segment numbers are positive"):
        read_dicom_seg(edited(path, tmp_path / "negative.dcm", negative), axial["sop_uids"], SHAPE)
