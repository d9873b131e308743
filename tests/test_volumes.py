"""CT and MR volumes: import (DICOM series, NIfTI, arrays), geometry, 3-D labels, NIfTI export and back."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from patientml_widgets import imaging
from patientml_widgets.dicom_demo import write_series
from patientml_widgets.errors import ImageError, StoreError, ValidationError
from patientml_widgets.imaging.dicom import DicomHeader
from patientml_widgets.imaging.volumes import LPS_TO_RAS, MAX_SLICES, stack_series

GEOMETRIES = {
    "axial": dict(orientation=(1, 0, 0, 0, 1, 0), spacing=(2.5, 0.7, 0.9)),
    "oblique": dict(orientation=(1, 0, 0, 0, 0.8, 0.6), spacing=(2.0, 0.7, 0.9)),
    "flipped": dict(orientation=(1, 0, 0, 0, 1, 0), spacing=(-3.0, 0.8, 0.8)),
    "sagittal": dict(orientation=(0, 1, 0, 0, 0, -1), spacing=(1.5, 1.0, 0.6)),
}


def ct(shape=(6, 16, 20), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2000, shape).astype(np.int16)


def expected_affine(lps: np.ndarray, n: int, flipped: bool) -> np.ndarray:
    """The RAS affine of the stored order (ascending along the normal) of a series written with ``lps``."""
    ras = LPS_TO_RAS @ lps
    if flipped:  # written against the normal: stored from the last written slice
        ras = ras.copy()
        ras[:3, 3] += ras[:3, 2] * (n - 1)
        ras[:3, 2] *= -1
    return ras


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_a_series_round_trips_through_label_and_nifti_export(project, seg, tmp_path, name):
    geometry = GEOMETRIES[name]
    volume = ct()
    lps = write_series(tmp_path / "series", volume, **geometry)
    flipped = geometry["spacing"][0] < 0
    ex = project.add_volume(seg, tmp_path / "series")

    stored_order = volume[::-1] if flipped else volume
    assert ex.is_volume and ex.shape == volume.shape and ex.dtype == "int16"
    assert np.array_equal(project.image(ex), stored_order)  # Hounsfield units, lossless
    assert np.allclose(ex.affine, expected_affine(lps, len(volume), flipped), atol=1e-4)
    assert np.allclose(ex.spacing, [abs(v) for v in geometry["spacing"]], atol=1e-4)
    assert ex.subject_id == "PHANTOM-001" and ex.source["modality"] == "CT"
    assert ex.image_ref.endswith(".tif")
    # every slice can be read alone, and it is the same as the whole volume's
    assert np.array_equal(project.session.image_slice(ex, 3), stored_order[3])

    mask = np.zeros(volume.shape, np.uint8)
    mask[1, 2:6, 3:9] = 1
    mask[4, 8:12, 10:15] = 2
    label = project.submit_label(ex, mask=mask)
    assert label.slices == (1, 4) and label.mask_ref.endswith(".tif")
    assert np.array_equal(project.mask(ex), mask)

    out = project.export_labels(seg, tmp_path / "out", layout="nifti")
    image_file = next((out / "images").iterdir())
    img = nib.load(image_file)
    assert np.allclose(img.affine, ex.affine, atol=1e-4) and img.header.get_sform(coded=True)[1] == 1
    assert np.array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), stored_order)

    report = project.import_dataset(out, name="again")
    (back,) = project.examples(report.model)
    assert report.labels == 1 and not report.skipped
    assert np.array_equal(project.image(back), project.image(ex))
    assert np.array_equal(project.mask(back), mask)
    assert np.allclose(back.affine, ex.affine, atol=1e-4) and np.allclose(back.spacing, ex.spacing)
    assert project.label(back).status == "submitted"


def test_the_affine_places_each_voxel_where_the_headers_say(project, seg, tmp_path):
    write_series(tmp_path / "s", ct((5, 8, 6)), **GEOMETRIES["oblique"])
    ex = project.add_volume(seg, tmp_path / "s")
    affine = np.asarray(ex.affine)
    for path in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(path)
        k = round(float(np.linalg.solve(affine[:3, :3], LPS_TO_RAS[:3, :3] @ np.array(ds.ImagePositionPatient, float)
                                         - affine[:3, 3])[2]))  # fmt: skip
        corner = affine @ [0, 0, k, 1]
        assert np.allclose(LPS_TO_RAS[:3, :3] @ np.array(ds.ImagePositionPatient, float), corner[:3], atol=1e-4)
        stored = project.session.image_slice(ex, k)
        assert np.array_equal(stored, ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept))


def test_an_array_volume_takes_its_spacing_or_affine(project, seg):
    ex = project.add_volume(seg, np.zeros((3, 4, 5), np.float64), spacing=(3, 0.5, 0.25))
    assert ex.spacing == (3.0, 0.5, 0.25) and ex.dtype == "float32"
    assert np.allclose(ex.affine, np.diag([0.25, 0.5, 3, 1]))
    affine = np.array([[0, 0, 2, 10], [0, -1, 0, 20], [-1, 0, 0, 30], [0, 0, 0, 1]], float)
    ex2 = project.add_volume(seg, np.arange(60, dtype=np.int32).reshape(3, 4, 5), affine=affine, subject="p1")
    assert np.allclose(ex2.affine, affine) and ex2.spacing == (2.0, 1.0, 1.0) and ex2.dtype == "uint8"
    assert ex2.subject_id == "p1"
    with pytest.raises(ImageError, match="at least 2"):
        project.add_volume(seg, np.zeros((1, 4, 5)))
    with pytest.raises(ImageError, match="slices, rows, columns"):
        project.add_volume(seg, np.zeros((4, 5)))
    with pytest.raises(ImageError, match="three positive numbers"):
        project.add_volume(seg, np.zeros((3, 4, 5)), spacing=(1, 0, 1))
    with pytest.raises(ImageError, match="singular"):
        project.add_volume(seg, np.zeros((3, 4, 5)), affine=np.diag([1, 1, 0, 1]))
    with pytest.raises(ImageError, match="not both"):
        project.add_volume(seg, np.zeros((3, 4, 5)), spacing=(1, 1, 1), affine=np.eye(4))
    with pytest.raises(ImageError, match="NaN"):
        project.add_volume(seg, np.full((3, 4, 5), np.nan))
    assert len(project.examples(seg)) == 2


def test_nifti_files_keep_their_values_and_affine(project, seg, tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 50  # (i, j, k)
    affine = np.array([[-0.9, 0, 0, 90], [0, 0.9, 0, -120], [0, 0, 3, -40], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ct.nii.gz")
    ex = project.add_volume(seg, tmp_path / "ct.nii.gz", subject="p7")
    assert ex.shape == (6, 5, 4) and np.array_equal(project.image(ex), data.transpose(2, 1, 0))
    assert np.allclose(ex.affine, affine) and ex.source["file"] == "ct.nii.gz" and ex.subject_id == "p7"

    scaled = nib.Nifti1Image(data, affine)
    scaled.header.set_slope_inter(2, -1024)  # whole numbers: stays integer
    nib.save(scaled, tmp_path / "scaled.nii")
    ex = project.add_volume(seg, tmp_path / "scaled.nii")
    assert ex.dtype == "int16" and np.array_equal(project.image(ex), (data.astype(int) * 2 - 1024).transpose(2, 1, 0))
    scaled.header.set_slope_inter(0.5, 0)
    nib.save(scaled, tmp_path / "half.nii")
    ex = project.add_volume(seg, tmp_path / "half.nii")
    assert ex.dtype == "float32" and np.allclose(project.image(ex), (data * 0.5).transpose(2, 1, 0))


def test_bad_nifti_files_are_refused_before_their_data_is_read(project, seg, tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.int16), np.eye(4)), tmp_path / "fmri.nii.gz")
    with pytest.raises(ImageError, match="4-D file holds several volumes"):
        project.add_volume(seg, tmp_path / "fmri.nii.gz")
    huge = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    huge.header.set_data_shape((20000, 20000, 10))  # the header claims 8 GB; the file holds 16 bytes
    raw = huge.header.binaryblock + b"\0" * 4 + b"\0" * 16
    (tmp_path / "huge.nii").write_bytes(raw)
    with pytest.raises(ImageError, match=r"pixels per slice|GB"):
        project.add_volume(seg, tmp_path / "huge.nii")
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 40), np.int16), np.eye(4)), tmp_path / "cut.nii.gz")
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "cut.nii.gz").read_bytes()[:200])
    with pytest.raises(ImageError, match=r"cut\.nii\.gz"):
        project.add_volume(seg, tmp_path / "cut.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(ImageError, match="not a readable NIfTI"):
        project.add_volume(seg, tmp_path / "junk.nii")
    assert project.examples(seg) == []


def test_volume_labels_are_checked_like_images(project, seg):
    ex = project.add_volume(seg, ct((4, 8, 10)), spacing=(2, 1, 1))
    with pytest.raises(ValidationError, match=r"needs \(4, 8, 10\) \(slices, height, width\)"):
        project.submit_label(ex, mask=np.zeros((8, 10), np.uint8))
    bad = np.zeros((4, 8, 10), np.uint8)
    bad[0, 0, 0] = 9
    with pytest.raises(ValidationError, match=r"class indices \[9\]"):
        project.submit_label(ex, mask=bad)
    assert project.label(ex) is None
    draft = project.save_label(ex, mask=np.zeros((4, 8, 10), np.uint8))
    assert draft.slices == () and draft.status == "draft"
    submitted = project.submit_label(ex)  # submits the draft's mask as it is
    assert submitted.status == "submitted" and submitted.mask_ref == draft.mask_ref


def test_add_folder_makes_one_volume_per_series_and_keeps_the_rest_2d(project, seg, tmp_path):
    write_series(tmp_path / "scans/p1/ct", ct((5, 8, 10)), patient_id="P1")
    write_series(tmp_path / "scans/p2/mr", ct((4, 8, 8), seed=1), patient_id="P2", modality="MR")
    imaging_file = tmp_path / "scans/p2/photo.npy"
    np.save(imaging_file, np.zeros((6, 7), np.uint8))
    nib.save(nib.Nifti1Image(np.zeros((6, 7, 3), np.int16), np.eye(4)), tmp_path / "scans/p3.nii.gz")
    report = project.add_folder(seg, tmp_path / "scans", volumes=True)
    assert not report.skipped, report
    volumes = sorted((e for e in report.added if e.is_volume), key=lambda e: e.source["file"])
    assert [e.source["file"] for e in volumes] == ["p1/ct", "p2/mr", "p3.nii.gz"]
    assert [e.shape for e in volumes] == [(5, 8, 10), (4, 8, 8), (3, 7, 6)]
    assert [e.subject_id for e in volumes[:2]] == ["P1", "P2"] and volumes[1].source["modality"] == "MR"
    assert [e.shape for e in report.added if not e.is_volume] == [(6, 7)]
    again = project.add_folder(seg, tmp_path / "scans", volumes=True)
    assert again.added == [] and again.already == 4
    flat = project.add_folder(seg, tmp_path / "scans")  # without volumes: a slice is an image, NIfTI is skipped
    assert [why for name, why in flat.skipped] == [
        "a NIfTI volume: import it with add_folder(..., volumes=True) or add_volume"
    ]


def _headers(positions, *, rows=8, columns=8, orientation=(1, 0, 0, 0, 1, 0)):
    return [
        DicomHeader(
            patient_id="P", patient_name="", study_uid="1.2", series_uid="1.2.3", sop_uid=f"1.2.3.{i}", modality="CT",
            series_description="", instance_number=i + 1, position=float(p), frames=1, rows=rows, columns=columns,
            orientation=orientation, image_position=(0.0, 0.0, float(p)), pixel_spacing=(1.0, 1.0),
        )
        for i, p in enumerate(positions)
    ]  # fmt: skip


def test_series_that_are_not_one_volume_say_why():
    with pytest.raises(ImageError, match=r"slices missing: 7.50 mm .* 2.50 mm apart \(about 2 missing\)"):
        stack_series(_headers([0, 2.5, 5, 12.5, 15]), "s")
    with pytest.raises(ImageError, match="at the same position"):
        stack_series(_headers([0, 2.5, 2.5, 5]), "s")
    with pytest.raises(ImageError, match="uneven slice steps"):
        stack_series(_headers([0, 2.5, 4, 6.5, 9]), "s")
    with pytest.raises(ImageError, match=f"more than the limit of {MAX_SLICES:,}"):
        stack_series(_headers(np.arange(5000) * 0.5), "s")
    mixed = _headers([0, 1, 2]) + _headers([3], rows=4)
    with pytest.raises(ImageError, match="mixes slice sizes"):
        stack_series(mixed, "s")
    order, affine = stack_series(_headers([5, 0, 2.5, 7.5]), "s")  # shuffled: ordered along the normal
    assert order == [1, 2, 0, 3] and np.allclose(affine[:3, 2], [0, 0, 2.5])


def test_a_folder_import_refuses_a_broken_series_whole_and_splits_a_mixed_one(project, seg, tmp_path):
    write_series(tmp_path / "gap", ct((6, 8, 8)))
    victim = sorted((tmp_path / "gap").iterdir(), key=lambda p: pydicom.dcmread(p).InstanceNumber)[3]
    victim.unlink()  # a slice in the middle is missing
    report = project.add_folder(seg, tmp_path / "gap", volumes=True)
    assert report.added == []
    ((name, why),) = report.skipped
    assert name == "gap" and "slices missing" in why and "none of its 5 files was imported" in why

    write_series(tmp_path / "mixed/axial", ct((4, 8, 8)), patient_id="M")
    first = pydicom.dcmread(next((tmp_path / "mixed/axial").iterdir()))
    same = {"SeriesInstanceUID": first.SeriesInstanceUID, "StudyInstanceUID": first.StudyInstanceUID}
    write_series(tmp_path / "mixed/tilted", ct((3, 8, 8)), orientation=(1, 0, 0, 0, 0.6, 0.8), patient_id="M", **same)
    write_series(tmp_path / "mixed/scout", ct((1, 12, 8)), patient_id="M", **same)
    report = project.add_folder(seg, tmp_path / "mixed", volumes=True)
    assert not report.skipped
    assert sorted(e.shape for e in report.added) == [(3, 8, 8), (4, 8, 8), (12, 8)]
    assert any("mixes slice sizes or orientations" in w for w in report.warnings)
    assert any("imported as a 2-D image" in w for w in report.warnings)


def test_add_volume_needs_exactly_one_volume(project, seg, tmp_path):
    write_series(tmp_path / "two/a", ct((3, 8, 8)))
    write_series(tmp_path / "two/b", ct((3, 8, 8)))
    with pytest.raises(ValidationError, match=r"holds 2 volumes \(add_folder"):
        project.add_volume(seg, tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="holds no volume"):
        project.add_volume(seg, tmp_path / "empty")
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 5)))
    with pytest.raises(ValidationError, match="a volume is a NIfTI file"):
        project.add_volume(seg, tmp_path / "x.npy")
    assert project.examples(seg) == []


def test_layouts_refuse_the_other_kind_and_2d_paths_refuse_volumes(project, seg, tmp_path):
    ex = project.add_volume(seg, ct((3, 8, 8)), spacing=(1, 1, 1))
    project.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
    for layout in ("folder", "coco"):
        with pytest.raises(ValidationError, match="export them with layout='nifti'"):
            project.export_labels(seg, tmp_path / layout, layout=layout)
    flat = project.add_example(seg, np.zeros((8, 8), np.uint8))
    project.submit_label(flat, mask=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValidationError, match="1 of these labels are of 2-D images"):
        project.export_labels(seg, tmp_path / "n", layout="nifti")
    assert not (tmp_path / "folder").exists() and not (tmp_path / "n").exists()


def test_a_damaged_stored_volume_is_a_clear_error(project, seg):
    ex = project.add_volume(seg, ct((3, 8, 8)), spacing=(1, 1, 1))
    path = project.session.store.blobs.path(ex.image_ref)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises((ImageError, StoreError), match=ex.image_ref):
        project.image(ex)


def test_stored_volumes_are_deterministic_and_read_slice_by_slice():
    arr = ct((7, 16, 12))
    data = imaging.encode_volume(arr)
    assert data == imaging.encode_volume(arr.copy())  # same volume, same blob
    assert np.array_equal(imaging.decode_volume(data), arr)
    assert np.array_equal(imaging.read_volume_slice(data, 6), arr[6])
    with pytest.raises(ImageError, match="slices 0 to 6, not 7"):
        imaging.read_volume_slice(data, 7)
    with pytest.raises(ImageError, match="not a stored volume"):
        imaging.decode_volume(b"\x89PNG" + bytes(100))


def test_volume_fields_in_the_store_are_type_checked(project, seg):
    ex = project.add_volume(seg, ct((3, 8, 8)), spacing=(1, 1, 1))
    record = project.session.example_record(ex.id)
    assert record["depth"] == 3 and record["spacing"] == [1.0, 1.0, 1.0] and len(record["affine"]) == 4
    from patientml_widgets.store.storage import OPTIONAL

    checks = OPTIONAL["examples"]
    assert checks["affine"](record["affine"]) and not checks["affine"]([[1, 2], [3, 4]])
    assert not checks["spacing"]([1, -1, 1]) and not checks["affine"]([[float("nan")] * 4] * 4)


def test_path_names_in_a_report_are_relative(tmp_path, project, seg):
    write_series(tmp_path / "root/deep/ct", ct((3, 8, 8)))
    report = project.add_folder(seg, tmp_path / "root", volumes=True)
    assert [e.source["file"] for e in report.added] == [str(Path("deep/ct"))]


@pytest.mark.parametrize("name", ["oblique", "flipped"])
def test_labels_round_trip_through_dicom_seg_with_their_series(project, seg, tmp_path, name):
    volume = ct()
    write_series(tmp_path / "scan/ct", volume, **GEOMETRIES[name])
    ex = project.add_volume(seg, tmp_path / "scan/ct")
    mask = np.zeros(volume.shape, np.uint8)
    mask[1:4, 2:6, 3:9] = 1
    mask[4, 8:12, 10:15] = 2
    project.submit_label(ex, mask=mask)
    out = project.export_labels(seg, tmp_path / "seg-out", layout="dicom-seg")
    (seg_file,) = (out / "segmentations").iterdir()
    ds = pydicom.dcmread(seg_file)
    assert ds.Modality == "SEG" and ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ex.source["series_uid"]
    assert ds.PatientID == "PHANTOM-001" and ds.FrameOfReferenceUID == ex.source["dicom"]["frame_of_reference_uid"]
    with pytest.raises(ValidationError, match="holds the labels, not the images"):
        project.import_dataset(out)

    # the series and its SEG, imported together into another model: the same voxels as the label
    (tmp_path / "scan/seg").mkdir()
    seg_file.rename(tmp_path / "scan/seg/labels.dcm")
    other = project.create_model("other", problem_type="segmentation", classes=["background", "lesion", "margin"])
    report = project.add_folder(other, tmp_path / "scan", volumes=True)
    assert report.labels == 1 and not report.skipped, report
    (back,) = project.examples(other)
    assert np.array_equal(project.mask(back), mask) and project.label(back).source == "import"
    assert project.add_folder(other, tmp_path / "scan", volumes=True).already == 2  # the volume and its label


def test_a_seg_that_does_not_fit_is_skipped_with_the_reason(project, seg, tmp_path):
    write_series(tmp_path / "scan/ct", ct())
    ex = project.add_volume(seg, tmp_path / "scan/ct")
    mask = np.zeros(ex.shape, np.uint8)
    mask[2, 2:5, 2:5] = 2
    project.submit_label(ex, mask=mask)
    out = project.export_labels(seg, tmp_path / "seg-out", layout="dicom-seg")
    (seg_file,) = (out / "segmentations").iterdir()
    alone = tmp_path / "alone"
    alone.mkdir()
    seg_file.rename(alone / "labels.dcm")
    report = project.add_folder(seg, alone, volumes=True)  # its volume has this very label already
    assert report.labels == 0 and report.already == 1 and not report.skipped
    project.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
    report = project.add_folder(seg, alone, volumes=True)  # a different label is never overwritten
    assert report.labels == 0 and "already has a label (version 2)" in report.skipped[0][1]
    narrow = project.create_model("narrow", problem_type="segmentation", classes=["background", "lesion"])
    report = project.add_folder(narrow, alone, volumes=True)
    assert "not among this model's volumes" in report.skipped[0][1]
    nifti = project.add_volume(seg, ct((3, 8, 8)), spacing=(1, 1, 1))
    project.submit_label(nifti, mask=np.ones(nifti.shape, np.uint8))
    with pytest.raises(ValidationError, match="did not come from a series of single-frame DICOM slices"):
        project.export_labels(seg, tmp_path / "x", layout="dicom-seg")


def test_a_stored_volume_reads_one_slice_before_the_whole(project, seg):
    arr = ct((5, 8, 9))
    ex = project.add_volume(seg, arr, spacing=(2, 1, 1))
    stored = project.volume(ex)
    assert stored.shape == (5, 8, 9) and not stored.loaded
    assert np.array_equal(stored.slice(3), arr[3]) and not stored.loaded
    assert np.array_equal(project.image_slice(ex, 4), arr[4])
    assert np.array_equal(stored.load(), arr) and stored.loaded and np.array_equal(stored.slice(1), arr[1])
    flat = project.add_example(seg, np.zeros((8, 9), np.uint8))
    with pytest.raises(ValidationError, match="2-D image, not a volume"):
        project.volume(flat)
    with pytest.raises(ImageError, match="slices 0 to 4, not 5"):
        project.image_slice(ex, 5)


def test_a_stored_volume_page_claiming_a_huge_size_is_refused_from_its_header(monkeypatch):
    import io

    import tifffile

    data = io.BytesIO(imaging.encode_volume(ct((3, 4, 5))))
    with tifffile.TiffFile(data, mode="r+b") as tif:  # the last page's header claims 40000 x 40000 (1.6 GB)
        tif.pages[2].tags["ImageWidth"].overwrite(40000)
        tif.pages[2].tags["ImageLength"].overwrite(40000)
    damaged = data.getvalue()
    decode = tifffile.TiffPage.asarray

    def checked_first(page, *args, **kwargs):
        assert page.shape == (4, 5), "a page decoded before its size was checked"
        return decode(page, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", checked_first)
    with pytest.raises(ImageError, match="slice 2 differs in size"):
        imaging.decode_volume(damaged)
    with pytest.raises(ImageError, match="slice 2 differs in size"):
        imaging.read_volume_slice(damaged, 2)
    assert np.array_equal(imaging.read_volume_slice(damaged, 1), ct((3, 4, 5))[1])


@pytest.mark.parametrize("field, value", [("vox_offset", -100), ("datatype", 1)])
def test_a_nifti_header_nibabel_will_not_repair_is_an_image_error(project, seg, tmp_path, field, value):
    header = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)).header
    header[field] = value  # a negative data offset; data type code 1 (1-bit), which nibabel does not read
    (tmp_path / "bad.nii").write_bytes(header.binaryblock + bytes(4 + 240))
    with pytest.raises(ImageError, match=r"bad\.nii is not a readable NIfTI file \(HeaderDataError"):
        project.add_volume(seg, tmp_path / "bad.nii")
    assert project.examples(seg) == []


@pytest.mark.parametrize("slope", [3e18, 1e30])
def test_nifti_scaling_beyond_int64_is_done_in_floats(project, seg, tmp_path, slope):
    data = np.arange(1000, 1120, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(slope, 0)  # a whole number, but 1000 x slope does not fit an int64
    nib.save(img, tmp_path / "steep.nii")
    ex = project.add_volume(seg, tmp_path / "steep.nii")
    expected = data.transpose(2, 1, 0) * float(np.float32(slope))
    assert ex.dtype == "float32" and np.allclose(project.image(ex), expected, rtol=1e-6)


@pytest.mark.parametrize("spacing", [(-0.5, -0.5), (0.5, 0.0), (-1.0, 1.0)])
def test_a_series_with_a_pixel_spacing_that_is_not_positive_is_refused(spacing):
    import dataclasses

    headers = [dataclasses.replace(h, pixel_spacing=spacing) for h in _headers([0, 1, 2])]
    with pytest.raises(ImageError, match="spacings are positive"):  # never a mirrored (or flat) affine
        stack_series(headers, "s")


def write_enhanced(path, volume, *, spacing=(2.0, 0.7, 0.9), order=None, positions=True):
    """An enhanced multi-frame CT: frames (in ``order``) with per-frame plane positions, shared orientation."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

    order = list(range(len(volume))) if order is None else order
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", "ENH-1", generate_uid(), generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = volume.shape[1], volume.shape[2], len(order)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0

    def item(**values):
        out = Dataset()
        for k, v in values.items():
            setattr(out, k, v)
        return out

    shared = item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[spacing[1], spacing[2]], SliceThickness=spacing[0])]),
        PixelValueTransformationSequence=Sequence([item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        groups = item()
        if positions:
            groups.PlanePositionSequence = Sequence([item(ImagePositionPatient=[-50.0, -40.0, 10.0 + spacing[0] * k])])
        frames.append(groups)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = (volume[order].astype(np.int32) + 1024).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_an_enhanced_multiframe_ct_is_one_volume_in_slice_order(project, seg, tmp_path):
    volume = ct((5, 8, 10))
    (tmp_path / "scan").mkdir()
    write_enhanced(tmp_path / "scan/enhanced.dcm", volume, order=[3, 0, 4, 1, 2])  # frames out of order
    report = project.add_folder(seg, tmp_path / "scan", volumes=True)
    assert not report.skipped, report
    (ex,) = report.added
    assert ex.is_volume and ex.shape == (5, 8, 10) and np.array_equal(project.image(ex), volume)  # HU, in order
    assert np.allclose(ex.spacing, (2.0, 0.7, 0.9)) and np.allclose(np.asarray(ex.affine)[:3, 3], [50, 40, 10])
    assert "dicom" not in ex.source  # no DICOM SEG for it: the NIfTI export carries its label
    project.submit_label(ex, mask=np.ones(ex.shape, np.uint8))
    with pytest.raises(ValidationError, match="multi-frame files"):
        project.export_labels(seg, tmp_path / "seg", layout="dicom-seg")
    project.export_labels(seg, tmp_path / "nifti", layout="nifti")
    # without volumes=True, or without plane positions (a clip in time), frames stay 2-D images
    assert len(project.add_folder(seg, tmp_path / "scan").added) == 5
    (tmp_path / "clip").mkdir()
    write_enhanced(tmp_path / "clip/clip.dcm", volume, positions=False)
    assert [e.shape for e in project.add_folder(seg, tmp_path / "clip", volumes=True).added] == [(8, 10)] * 5


def test_an_enhanced_multiframe_ct_with_a_missing_frame_is_refused_whole(project, seg, tmp_path):
    (tmp_path / "scan").mkdir()
    write_enhanced(tmp_path / "scan/gap.dcm", ct((6, 8, 10)), order=[0, 1, 2, 4, 5])
    report = project.add_folder(seg, tmp_path / "scan", volumes=True)
    assert report.added == [] and "slices missing" in report.skipped[0][1]
    assert "none of its frames was imported" in report.skipped[0][1]
