"""DICOM import: pydicom's bundled test files (real images, nothing downloaded) and synthetic series."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import pixels
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from patientml_widgets import imaging
from patientml_widgets.dicom_demo import phantom_slice, write_dicom, write_dicom_sample
from patientml_widgets.errors import ImageError, ValidationError
from patientml_widgets.widgets import LabelCanvas, SubjectViewer

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # bundled in the wheel


def bundled(name: str) -> Path:
    path = TEST_FILES / name
    assert path.is_file(), f"pydicom no longer bundles {name}"
    return path


def reference(name: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(bundled(name)).pixel_array


def frames(name: str, **kw):
    return list(imaging.read_dicom_frames(bundled(name), max_pixels=imaging.DEFAULT_MAX_PIXELS, **kw))


def test_ct_rescale_gives_hounsfield_units_in_int16():
    ((arr, source),) = frames("CT_small.dcm")
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    expected = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    stored = imaging.read_image(arr)
    assert stored.dtype == np.int16 and np.array_equal(stored, expected)
    assert source["modality"] == "CT" and source["rescale"] == {"slope": 1.0, "intercept": -1024.0}
    names = [p["name"] for p in imaging.window_presets(source)]
    assert {"CT lung", "CT bone", "CT soft tissue", "CT brain"} <= set(names)


def test_mr_16_bit_is_kept_lossless_through_the_project(project, seg):
    example = project.add_example(seg, bundled("MR_small.dcm"))
    assert example.dtype == "int16"
    assert np.array_equal(project.image(example), reference("MR_small.dcm"))
    assert example.subject_id == "4MR1" and example.source["modality"] == "MR"
    assert example.source["file"] == "MR_small.dcm"
    assert example.source["window"] == {"center": 600.0, "width": 1600.0}
    assert [p["name"] for p in imaging.window_presets(example.source)] == ["From the image"]  # MR: no fixed presets
    subject = project.subject("4MR1")
    assert subject.external_ids == {"PatientID": "4MR1"}
    assert subject.metadata == {"PatientName": "CompressedSamples^MR1", "PatientSex": "F"}
    # the scanner and the patient's sex are subgroups a run's evaluation compares
    assert example.source["Manufacturer"] == "TOSHIBA_MEC" and example.source["InstitutionName"] == "TOSHIBA"
    from patientml_widgets.evaluation import group_of

    record = project.session.example_record(example.id)
    subject_record = project.session.subject_record("4MR1")
    assert group_of("Manufacturer", record, subject_record) == ["TOSHIBA_MEC"]
    assert group_of("PatientSex", record, subject_record) == ["F"]
    assert group_of("Modality", record, subject_record) == ["MR"]


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]
)
def test_lossless_transfer_syntaxes_decode_to_the_same_pixels(name):
    ((arr, _),) = frames(name)
    assert np.array_equal(imaging.read_image(arr), reference("MR_small.dcm"))


def test_jpeg_ls_decodes_when_pyjpegls_is_installed():
    pytest.importorskip("jpeg_ls")
    ((arr, _),) = frames("MR_small_jpeg_ls_lossless.dcm")
    assert np.array_equal(imaging.read_image(arr), reference("MR_small.dcm"))


def test_missing_decoder_names_a_permissive_package_to_install():
    with pytest.raises(ImageError, match=r"JPEG Lossless.*no installed decoder.*pip install python-gdcm"):
        frames("SC_rgb_jpeg_gdcm.dcm")
    with pytest.raises(ImageError, match=r"12-bit JPEG Extended.*no permissively licensed decoder"):
        frames("JPEG-lossy.dcm")


def test_ultrasound_rgb_ybr_and_palette_become_rgb():
    ((rgb, source),) = frames("examples_rgb_color.dcm")
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8 and source["modality"] == "US"
    ((pal, _),) = frames("examples_palette.dcm")
    ds = pydicom.dcmread(bundled("examples_palette.dcm"))
    lut = pixels.apply_color_lut(ds.pixel_array, ds)
    assert pal.dtype == np.uint8 and np.array_equal(pal.astype(np.uint16) * 256, lut)  # 8-bit entries, lossless
    ybr = frames("examples_ybr_color.dcm")
    assert len(ybr) == 30 and ybr[0][0].shape == (240, 320, 3)
    assert [s["frame"] for _, s in ybr] == list(range(30))


def test_multi_frame_file_becomes_one_example_per_frame_in_order(project, seg, tmp_path):
    report = project.add_folder(seg, bundled("examples_ybr_color.dcm"))
    assert len(report.added) == 30 and not report.skipped
    ordered = project.examples(seg, sort="source")
    assert [e.source["series_index"] for e in ordered] == list(range(30))
    assert all(e.source["series_size"] == 30 for e in ordered)
    assert ordered[4].origin.startswith("US") and ordered[4].origin.endswith("5/30")
    reference_frames = reference("examples_ybr_color.dcm")
    assert np.array_equal(project.image(ordered[7]), reference_frames[7])
    with pytest.raises(ValidationError, match="30 frames"):
        project.add_example(seg, bundled("examples_ybr_color.dcm"))


def test_series_is_grouped_and_ordered_by_position_not_file_name(project, seg, tmp_path):
    write_dicom_sample(tmp_path / "dicom", patients=2, slices=6, size=32)
    calls = []
    report = project.add_folder(seg, tmp_path / "dicom", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 14) for i in range(1, 15)]
    assert len(report.added) == 2 * 6 + 2 and not report.skipped and not report.warnings
    for patient in ("PHANTOM-001", "PHANTOM-002"):
        ct = [e for e in project.examples(seg, subject=patient, sort="source") if e.source["modality"] == "CT"]
        assert [e.source["series_index"] for e in ct] == list(range(6))
        by_default = [e for e in project.examples(seg, subject=patient) if e.source["modality"] == "CT"]
        assert [e.id for e in by_default] == [e.id for e in ct]  # one import's ties in `created` follow the source
        names = [e.source["file"] for e in ct]
        assert names != sorted(names)  # the file names are shuffled; the order came from the headers
        p = int(patient[-1]) - 1
        for z, example in enumerate(ct):
            hu, _ = phantom_slice(p, z, 32)
            assert example.dtype == "int16" and np.array_equal(project.image(example), hu)
        assert len({e.split for e in project.examples(seg, subject=patient)}) == 1  # one patient, one split
        assert project.subject(patient).metadata["PatientName"].startswith("Phantom^")


def test_cr_monochrome1_is_inverted_with_the_header_windows(project, seg, tmp_path):
    write_dicom_sample(tmp_path / "dicom", patients=1, slices=1, size=32)
    (cr,) = [e for e in project.add_folder(seg, tmp_path / "dicom").added if e.source["modality"] == "CR"]
    assert cr.source["invert"] is True and cr.source["photometric"] == "MONOCHROME1"
    assert cr.source["window"] == {"center": 2048.0, "width": 4096.0}
    presets = imaging.window_presets(cr.source)
    assert [p["name"] for p in presets] == ["From the image: Normal", "From the image: Harder"]
    canvas = LabelCanvas.for_example(project, cr)
    assert canvas.invert is True and canvas.window == {"center": 2048.0, "width": 4096.0}
    assert [p["name"] for p in canvas.window_presets] == ["From the image: Normal", "From the image: Harder"]
    # the thumbnail shows it the right way round: the dense (low-value) middle is bright
    thumb = np.asarray(__import__("PIL.Image").Image.open(__import__("io").BytesIO(project.thumbnail(cr))))
    assert thumb[16, 16] > thumb[16, 1]


def test_enhanced_multi_frame_uses_per_frame_rescale(tmp_path):
    data = np.arange(3 * 4 * 4, dtype=np.uint16).reshape(3, 4, 4)
    path = write_dicom(tmp_path / "enh.dcm", data[0], Modality="CT", PatientID="E1")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 3
    ds.PixelData = data.tobytes()
    groups = []
    for i in range(3):
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = 1, -100 * i
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 10 * i, 50
        group = Dataset()
        group.PixelValueTransformationSequence = Sequence([transform])
        group.FrameVOILUTSequence = Sequence([voi])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    ds.save_as(path)
    out = list(imaging.read_dicom_frames(path, max_pixels=10**6))
    for i, (arr, source) in enumerate(out):
        assert np.array_equal(arr, data[i].astype(np.int64) - 100 * i)
        assert source["window"] == {"center": 10.0 * i, "width": 50.0} and source["frame"] == i


def test_huge_or_hostile_headers_are_refused_before_decoding(tmp_path):
    path = write_dicom(tmp_path / "big.dcm", np.zeros((2, 2), np.uint16), PatientID="X")
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 60000
    ds.save_as(path)
    with pytest.raises(ImageError, match="more than the limit"):
        list(imaging.read_dicom_frames(path, max_pixels=imaging.DEFAULT_MAX_PIXELS))
    ds.Rows = ds.Columns = 1
    ds.NumberOfFrames = 100000
    ds.save_as(path)
    with pytest.raises(ImageError, match="frames"):
        list(imaging.read_dicom_frames(path, max_pixels=imaging.DEFAULT_MAX_PIXELS))


def test_broken_files_are_skipped_with_reasons_and_the_rest_imports(project, seg, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm", "rtplan.dcm", "SC_rgb_jpeg_gdcm.dcm",
                 "meta_missing_tsyntax.dcm", "liver_1frame.dcm"):  # fmt: skip
        shutil.copy(bundled(name), folder / name)
    (folder / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x07" * 50)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "DICOMDIR").write_bytes(b"ignored")
    data = bundled("CT_small.dcm").read_bytes()
    (folder / "no_suffix").write_bytes(data)  # found by its DICM marker
    no_syntax = pydicom.dcmread(write_dicom(folder / "no_syntax.dcm", np.zeros((4, 4), np.uint16), PatientID="x"))
    del no_syntax.file_meta.TransferSyntaxUID
    no_syntax.save_as(folder / "no_syntax.dcm", implicit_vr=False, little_endian=True)
    report = project.add_folder(seg, folder)
    assert sorted(e.source["file"] for e in report.added) == ["CT_small.dcm", "MR_small.dcm", "no_suffix"]
    reasons = dict(report.skipped)
    assert "truncated" in reasons["MR_truncated.dcm"]
    assert "holds no image" in reasons["rtplan.dcm"]
    assert "DICOM SEG" in reasons["liver_1frame.dcm"]
    assert "no transfer syntax" in reasons["no_syntax.dcm"]
    assert "python-gdcm" in reasons["SC_rgb_jpeg_gdcm.dcm"]
    assert "no image" in reasons["garbage.dcm"] and "not a DICOM file" in reasons["empty.dcm"]
    assert set(reasons) == {"MR_truncated.dcm", "rtplan.dcm", "SC_rgb_jpeg_gdcm.dcm", "meta_missing_tsyntax.dcm",
                            "garbage.dcm", "empty.dcm", "liver_1frame.dcm", "no_syntax.dcm"}  # fmt: skip
    assert "skipped MR_truncated.dcm" in str(report)
    again = project.add_folder(seg, folder)  # a rerun (after an interruption, say) adds only what is new
    assert again.added == [] and again.already == 3 and "3 already imported" in str(again)
    shutil.copy(bundled("MR_small_RLE.dcm"), folder / "MR_small_RLE.dcm")
    assert [e.source["file"] for e in project.add_folder(seg, folder).added] == ["MR_small_RLE.dcm"]


def test_missing_patient_id_keeps_a_study_together(project, seg, tmp_path):
    for i in range(3):
        write_dicom(tmp_path / "in" / f"{i}.dcm", np.full((4, 4), i, np.uint8), StudyInstanceUID="1.2.3.4",
                    SeriesInstanceUID="1.2.3.4.5", InstanceNumber=3 - i)  # fmt: skip
    report = project.add_folder(seg, tmp_path / "in")
    assert {e.subject_id for e in report.added} == {"study-1.2.3.4"}
    assert any("no PatientID" in w for w in report.warnings)
    ordered = project.examples(seg, sort="source")
    assert [int(project.image(e)[0, 0]) for e in ordered] == [2, 1, 0]  # by instance number without positions


def test_import_writes_nothing_outside_the_project(project, seg, tmp_path):
    write_dicom_sample(tmp_path / "dicom", patients=1, slices=2, size=16)
    before = {p for p in tmp_path.rglob("*")}
    project.add_folder(seg, tmp_path / "dicom")
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p.is_relative_to(project.path) for p in new)


def test_every_pydicom_data_file_imports_or_is_skipped_with_a_reason(project, seg):
    """pydicom-data (when installed) holds hundreds of real files; none may crash an import."""
    from pydicom.data.data_manager import DataTypes, get_external_sources

    folders = set()
    for source in get_external_sources().values():  # local files only: the interface lists what it holds
        folders |= {Path(p).parent for p in source.get_paths("*", DataTypes.DATASET)}
    if not folders:
        pytest.skip("pydicom-data is not installed")
    for folder in sorted(folders):
        report = project.add_folder(seg, folder, recursive=False)
        assert report.added or report.skipped
        assert all(isinstance(why, str) and why for _, why in report.skipped)


def test_index_rows_label_frames_of_a_multi_frame_file_one_by_one(project, seg, tmp_path):
    from PIL import Image

    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(bundled("examples_ybr_color.dcm"), folder / "clip.dcm")
    mask = np.zeros((240, 320), np.uint8)
    mask[100:140, 150:200] = 1
    Image.fromarray(mask).save(folder / "m.png")
    rows = ["image,frame,mask", "clip.dcm,5,m.png", "clip.dcm,0,m.png", "clip.dcm,99,m.png", "clip.dcm,,m.png"]
    (folder / "index.csv").write_text("\n".join(rows) + "\n")
    report = project.add_folder(seg, folder, index="index.csv")
    assert [e.source["frame"] for e in report.added] == [0, 5]  # in frame order
    assert [e.source["series_index"] for e in report.added] == [0, 5]
    assert all(e.source["series_size"] == 30 for e in report.added)
    assert all(np.array_equal(project.mask(e), mask) for e in report.added)
    assert np.array_equal(project.image(report.added[1]), reference("examples_ybr_color.dcm")[5])
    reasons = [why for _, why in report.skipped]
    assert any("no frame 99" in why for why in reasons) and any("a frame column" in why for why in reasons)


def test_subject_viewer_lists_a_patients_series_in_slice_order(project, seg, tmp_path):
    write_dicom_sample(tmp_path / "dicom", patients=1, slices=4, size=16)
    project.add_folder(seg, tmp_path / "dicom")
    viewer = SubjectViewer(project, "PHANTOM-001")
    sources = [r["source"] for r in viewer.table.rows]
    assert [s for s in sources if s.startswith("CT")] == [f"CT Phantom chest {i}/4" for i in range(1, 5)]
    assert sorted(sources)[0] == "CR" and len(sources) == 5
