"""LabelCanvas in volume mode, driven as the browser would; and the planes it cuts."""

import zlib

import numpy as np
import pytest
from helpers import Browser

from patientml_widgets import imaging
from patientml_widgets.dicom_demo import write_series
from patientml_widgets.errors import ValidationError
from patientml_widgets.imaging import planes
from patientml_widgets.imaging.volumes import LPS_TO_RAS
from patientml_widgets.widgets import ExampleBrowser
from patientml_widgets.widgets.label_canvas import LabelCanvas


def lps_affine(row, col, spacing):
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = np.array(row) * spacing[2], np.array(col) * spacing[1]
    lps[:3, 2] = np.cross(row, col) * spacing[0]
    return LPS_TO_RAS @ lps


@pytest.mark.parametrize(
    "row,col",
    [((1, 0, 0), (0, 1, 0)), ((0, 1, 0), (0, 0, -1)), ((1, 0, 0), (0, 0, -1)), ((-1, 0, 0), (0, -1, 0))],
    ids=["axial", "sagittal", "coronal", "rotated"],
)
def test_every_plane_writes_back_where_it_was_read(row, col):
    affine = lps_affine(row, col, (2.0, 0.7, 0.9))
    layout = planes.layout((6, 8, 10), affine)
    assert sorted(p.axis for p in layout.values()) == [0, 1, 2]
    volume = np.random.default_rng(0).integers(0, 100, (6, 8, 10))
    for plane in layout.values():
        for index in (0, plane.depth - 1):
            image = planes.take(volume, plane, index)
            assert image.shape == (plane.height, plane.width)
            for y, x in ((0, 0), (plane.height - 1, plane.width - 1), (1, 2)):
                at = planes.voxel(plane, index, x, y)
                assert image[y, x] == volume[at] and planes.pixel(plane, at) == (index, x, y)
        mask = np.zeros(volume.shape, np.uint8)
        planes.put(mask, plane, 1, 2, 1, np.full((2, 3), 5, np.uint8))
        assert mask.sum() == 30 and (planes.take(mask, plane, 1)[1:3, 2:5] == 5).all()


def test_planes_are_named_by_anatomy_and_read_as_a_radiologist_does():
    axial = planes.layout((30, 40, 50), lps_affine((1, 0, 0), (0, 1, 0), (2.5, 0.7, 0.7)))
    assert axial["axial"].axis == 0 and not axial["axial"].flip_rows and not axial["axial"].flip_cols
    assert axial["coronal"].flip_rows and axial["coronal"].row_mm == 2.5  # superior at the top, slices 2.5 mm
    sagittal_series = planes.layout((30, 40, 50), lps_affine((0, 1, 0), (0, 0, -1), (1.0, 0.7, 0.7)))
    assert sagittal_series["sagittal"].axis == 0  # a sagittal acquisition's own slices are sagittal
    assert sagittal_series["axial"].axis == 1


def volume_canvas(shape=(10, 20, 30), **kw):
    vol = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    return vol, LabelCanvas(vol, ["background", "lesion", "margin"], spacing=(2.0, 0.5, 0.5), **kw)


def test_a_volume_opens_on_its_middle_axial_slice_and_serves_any_plane():
    vol, canvas = volume_canvas()
    assert canvas.is_volume and canvas.mask.shape == vol.shape
    assert canvas.plane == "axial" and canvas.crosshair == [5, 10, 15]
    layout = canvas._volume.planes
    first = np.frombuffer(zlib.decompress(canvas._image), "<i2").reshape(20, 30)
    assert np.array_equal(first, planes.take(vol, layout["axial"], canvas.slice_index))
    browser = Browser(canvas)
    browser.send({"kind": "plane", "plane": "coronal", "index": 4, "seq": 3})
    head, buffers = browser.received[-1]
    assert head["kind"] == "plane" and (head["width"], head["height"], head["dtype"]) == (30, 10, "int16")
    image = np.frombuffer(zlib.decompress(bytes(buffers[0])), "<i2").reshape(10, 30)
    assert np.array_equal(image, planes.take(vol, layout["coronal"], 4))
    assert imaging.decode_mask_wire(bytes(buffers[1])).shape == (10, 30)
    assert canvas.planes["coronal"]["row_mm"] == 2.0 and canvas.planes["coronal"]["col_mm"] == 0.5


def test_strokes_on_any_plane_land_in_the_volume_and_the_planes_follow():
    _, canvas = volume_canvas()
    browser = Browser(canvas)
    layout = canvas._volume.planes
    ack = browser.stroke_on("coronal", 4, 2, 1, np.ones((3, 4), np.uint8))
    assert ack == {"kind": "ack", "seq": 1}
    expected = np.zeros(canvas.mask.shape, np.uint8)
    planes.put(expected, layout["coronal"], 4, 2, 1, np.ones((3, 4), np.uint8))
    assert np.array_equal(canvas.mask, expected)
    # the stroke is seen in the other planes
    z = planes.voxel(layout["coronal"], 4, 2, 1)[0]
    browser.send({"kind": "plane", "plane": "axial", "index": int(z), "seq": 2})
    _, buffers = browser.received[-1]
    assert imaging.decode_mask_wire(bytes(buffers[1])).sum() == 4
    canvas.plane = "coronal"  # as the plane buttons set it: the slice through the crosshair, and its ticks
    assert canvas.slice_index == canvas.crosshair[layout["coronal"].axis] and canvas.labeled_slices == [4]
    canvas.slice_index = 4
    assert canvas.crosshair[1] == 4
    for bad, message in [
        ({"plane": "oblique", "index": 0}, "a plane is one of"),
        ({"plane": "coronal", "index": 99}, "slices 0 to 19"),
        ({"plane": "coronal", "index": 0, "region": [28, 0, 4, 1]}, "lies outside"),
    ]:
        before = canvas.mask.copy()
        browser.send({"kind": "mask", "seq": 9, **bad}, [imaging.encode_mask_wire(np.ones((1, 4), np.uint8))])
        assert message in canvas.error and np.array_equal(canvas.mask, before)


def test_copy_previous_and_interpolate_are_undoable_operations():
    _, canvas = volume_canvas()
    browser = Browser(canvas)
    disc = (np.hypot(*np.mgrid[-10:10, -15:15]) < 6).astype(np.uint8)
    browser.stroke_on("axial", 2, 0, 0, disc)
    browser.stroke_on("axial", 6, 0, 0, disc, seq=2)
    assert canvas.labeled_slices == [2, 6]
    browser.send({"kind": "interpolate", "plane": "axial"})
    assert canvas.error == "" and canvas.labeled_slices == [2, 3, 4, 5, 6]
    assert canvas.last_operation == "interpolation"
    assert np.array_equal(canvas.mask[4], canvas.mask[2])  # the same disc on both ends: the same disc between
    assert any(c["kind"] == "labels_changed" for c, _ in browser.received)
    browser.send({"kind": "undo_operation"})
    assert canvas.labeled_slices == [2, 6] and canvas.last_operation == ""
    browser.send({"kind": "copy_previous", "plane": "axial", "index": 3})
    assert np.array_equal(canvas.mask[3], canvas.mask[2]) and canvas.last_operation == "copy the previous slice"
    browser.send({"kind": "copy_previous", "plane": "axial", "index": 0})
    assert "slice 1 is the first" in canvas.error
    browser.send({"kind": "undo_operation"})
    assert not canvas.mask[3].any()
    canvas.mask = np.zeros(canvas.mask.shape, np.uint8)
    browser.send({"kind": "interpolate", "plane": "axial"})
    assert "at least two labeled axial slices" in canvas.error


def test_standalone_volume_in_mask_out_and_bad_volumes():
    vol, canvas = volume_canvas(mask=np.ones((10, 20, 30), np.uint8))
    assert canvas.mask.sum() == vol.size and canvas.labeled_slices == list(range(10))
    with pytest.raises(ValidationError, match=r"needs \(10, 20, 30\)"):
        LabelCanvas(vol, ["background", "lesion"], spacing=(1, 1, 1), mask=np.ones((20, 30), np.uint8))
    with pytest.raises(ValidationError, match="opens for segmentation"):
        LabelCanvas(vol, ["a", "b"], spacing=(1, 1, 1), mode="classification")
    rgb = LabelCanvas(np.zeros((8, 9, 3), np.uint8), ["background", "lesion"])  # (H, W, 3) stays an RGB image
    assert not rgb.is_volume


def test_a_volume_example_opens_bound_and_saves_its_draft_when_the_slice_changes(project, seg, tmp_path):
    write_series(tmp_path / "ct", np.random.default_rng(1).integers(-1000, 1000, (6, 16, 20)).astype(np.int16))
    ex = project.add_volume(seg, tmp_path / "ct")
    canvas = LabelCanvas.for_example(project, ex)
    assert canvas.is_volume and canvas.bound and canvas.mask.shape == (6, 16, 20)
    browser = Browser(canvas)
    browser.send({"kind": "ready"})
    head, buffers = browser.received[-1]
    assert head["kind"] == "plane" and head["reset_history"] and len(buffers) == 2
    browser.stroke_on("sagittal", 5, 1, 1, np.ones((2, 2), np.uint8))
    assert project.label(ex) is None  # a volume's draft is not rewritten at every stroke
    browser.send({"kind": "plane", "plane": "sagittal", "index": 6, "seq": 2, "prefetch": True})
    assert project.label(ex) is None  # nor when the browser prefetches
    browser.send({"kind": "plane", "plane": "sagittal", "index": 6, "seq": 3})
    label = project.label(ex)
    assert label.status == "draft" and np.array_equal(project.mask(ex), canvas.mask)
    browser.send({"kind": "submit", "seq": 4})
    assert project.label(ex).status == "submitted" and project.mask(ex).sum() == 4
    browser.send({"kind": "delete", "seq": 5})
    assert project.label(ex) is None and canvas.mask.sum() == 0


def test_the_browser_shows_volume_size_and_labeled_slices(project, seg):
    ex = project.add_volume(seg, np.zeros((4, 8, 10), np.int16), spacing=(2.5, 0.7, 0.7))
    mask = np.zeros(ex.shape, np.uint8)
    mask[1:3, 2:4, 2:4] = 1
    project.submit_label(ex, mask=mask)
    browser = ExampleBrowser(project, seg)
    rows, _, _ = browser._fetch(0, 10, None, False, None)
    (row,) = rows
    assert row["size"] == "10 x 8 x 4 (0.70 x 0.70 x 2.50 mm)" and row["slices"] == "2 / 4"
    browser.open_example(ex.id)
    assert browser.canvas.is_volume


def test_strokes_never_paint_into_the_callers_array_or_the_prediction():
    mine = np.zeros((10, 20, 30), np.uint8)
    predicted = np.zeros((10, 20, 30), np.uint8)
    predicted[5, :3, :3] = 2
    _, canvas = volume_canvas(mask=mine, prediction=predicted)
    browser = Browser(canvas)
    browser.stroke_on("axial", 5, 10, 10, np.ones((2, 2), np.uint8))
    assert canvas.mask.sum() == 4 and not mine.any()
    canvas.mask = canvas.prediction  # start from the prediction, then correct it
    browser.stroke_on("axial", 5, 10, 10, np.ones((2, 2), np.uint8), seq=2)
    assert (canvas.mask == 1).sum() == 4 and not (canvas.prediction == 1).any()
    assert np.array_equal(canvas.prediction, predicted) and not (predicted == 1).any()


@pytest.mark.parametrize(
    "trait, junk", [("plane", "oblique"), ("slice_index", 30), ("slice_index", -1), ("crosshair", [1])]
)
def test_junk_view_state_from_the_browser_is_refused_and_the_canvas_keeps_working(trait, junk):
    import traitlets

    vol, canvas = volume_canvas()  # 10 x 20 x 30: the deepest plane has 30 slices
    browser = Browser(canvas)
    with pytest.raises(traitlets.TraitError):
        setattr(canvas, trait, junk)  # as a set_state from the browser would
    assert (canvas.plane, canvas.slice_index, canvas.crosshair) == ("axial", 5, [5, 10, 15])
    canvas.mask = np.ones(vol.shape, np.uint8)  # a new map is sent for the plane and slice shown
    head, _ = browser.received[-1]
    assert (head["kind"], head["plane"], head["index"]) == ("plane", "axial", 5)
