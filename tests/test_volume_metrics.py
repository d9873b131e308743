"""3-D segmentation metrics: Dice over whole volumes and HD95 in mm, against hand-computed cases and a
brute-force reference (every pair of surface voxels)."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from patientml_widgets.training.metrics import hausdorff, segmentation_metrics, volume_metrics


def reference_hd(truth, pred, spacing, percentile=95.0):
    """The definition, by brute force: surface voxels (6-neighbourhood, the border outside), all pairs."""

    def surface(m):
        return np.argwhere(m & ~ndimage.binary_erosion(m, ndimage.generate_binary_structure(3, 1)))

    a, b = surface(truth) * np.asarray(spacing), surface(pred) * np.asarray(spacing)
    d = cdist(a, b)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), percentile))


def cube(shape, corner, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(c, c + s) for c, s in zip(corner, size))] = True
    return m


def test_parallel_planes_are_their_offset_apart_in_mm_along_the_slices():
    truth, pred = np.zeros((12, 9, 7), bool), np.zeros((12, 9, 7), bool)
    truth[5], pred[8] = True, True  # one-voxel-thick planes 3 slices apart: every surface distance is 3 dz
    assert hausdorff(truth, pred, (1, 1, 1)) == pytest.approx(3.0)
    assert hausdorff(truth, pred, (2.5, 0.7, 0.7)) == pytest.approx(7.5)  # thick slices: 3 x 2.5 mm
    assert hausdorff(truth, pred, (2.5, 3.0, 9.0)) == pytest.approx(7.5)  # in-plane spacing changes nothing here
    assert hausdorff(truth, truth, (2.5, 0.7, 0.7)) == 0.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.8, 0.8), (0.5, 2.0, 1.25)])
def test_offset_cubes_match_the_brute_force_reference(spacing):
    truth = cube((20, 24, 22), (4, 5, 6), (8, 9, 7))
    pred = cube((20, 24, 22), (4, 5, 9), (8, 9, 7))  # moved 3 voxels along x
    assert hausdorff(truth, pred, spacing) == pytest.approx(reference_hd(truth, pred, spacing))
    # the Hausdorff distance (100th percentile) of a cube moved along x is the move, in mm
    assert hausdorff(truth, pred, spacing, percentile=100) == pytest.approx(3 * spacing[2])
    # the same move along z costs dz per voxel instead
    along_z = cube((20, 24, 22), (7, 5, 6), (8, 9, 7))
    assert hausdorff(truth, along_z, spacing, percentile=100) == pytest.approx(3 * spacing[0])


def test_irregular_shapes_match_the_reference_and_touching_the_border_counts_as_surface():
    rng = np.random.default_rng(0)
    truth = ndimage.binary_opening(rng.random((14, 16, 15)) > 0.55)
    pred = ndimage.binary_dilation(truth) & (rng.random(truth.shape) > 0.1)
    for spacing in [(1, 1, 1), (2.0, 0.6, 0.9)]:
        assert hausdorff(truth, pred, spacing) == pytest.approx(reference_hd(truth, pred, spacing))
    whole = np.ones((4, 5, 6), bool)  # the border is outside: the whole array's surface is its faces
    inner = np.zeros_like(whole)
    inner[1:3, 1:4, 1:5] = True
    assert hausdorff(whole, inner, (1, 1, 1)) == pytest.approx(reference_hd(whole, inner, (1, 1, 1)))


def test_absent_classes():
    empty = np.zeros((10, 8, 6), bool)
    some = cube(empty.shape, (2, 2, 2), (2, 2, 2))
    assert hausdorff(empty, empty, (2, 1, 1)) == 0.0  # absent from both: they agree
    diagonal = np.sqrt((9 * 2.0) ** 2 + 7**2 + 5**2)  # one side empty: the diagonal of the array in mm
    assert hausdorff(some, empty, (2, 1, 1)) == pytest.approx(diagonal)
    assert hausdorff(empty, some, (2, 1, 1)) == pytest.approx(diagonal)
    with pytest.raises(ValueError, match="differ in shape"):
        hausdorff(empty, empty[1:], (1, 1, 1))


def test_volume_metrics_pool_voxels_and_average_hd95_over_volumes():
    shape = (10, 12, 12)
    t1 = np.zeros(shape, np.uint8)
    t1[2:6, 2:8, 2:8] = 1
    t1[7, 5:9, 5:9] = 2
    p1 = t1.copy()
    p1[2] = 0  # one slice of class 1 missed
    t2 = np.zeros(shape, np.uint8)
    t2[3:5, 3:5, 3:5] = 1
    p2 = np.roll(t2, 2, axis=2)  # class 1 moved 2 columns; class 2 absent from both
    m = volume_metrics([t1, t2], [p1, p2], [(2.0, 1.0, 1.0), (1.0, 1.0, 1.0)], 3, loss=0.25)
    # Dice and IoU over every voxel of both volumes, as the 2-D metrics over every pixel
    flat = segmentation_metrics(np.stack([t1, t2]), np.stack([p1, p2]), 3)
    for key in ("dice", "iou", "dice_mean", "iou_mean", "pixel_accuracy"):
        assert m[key] == pytest.approx(flat[key])
    assert m["loss"] == 0.25 and m["n"] == 2 and m["hd95"][0] is None
    hd1 = [hausdorff(t1 == c, p1 == c, (2.0, 1.0, 1.0)) for c in (1, 2)]
    hd2 = [hausdorff(t2 == c, p2 == c, (1.0, 1.0, 1.0)) for c in (1, 2)]
    assert hd1[0] == pytest.approx(2.0) and hd1[1] == 0.0 and hd2[1] == 0.0  # the missed slice: one dz away
    assert m["hd95"][1:] == pytest.approx([(hd1[0] + hd2[0]) / 2, 0.0], abs=1e-4)
    assert m["hd95_mean"] == pytest.approx(np.mean(m["hd95"][1:]), abs=1e-4)
    per = [segmentation_metrics(t, p, 3)["dice_mean"] for t, p in ((t1, p1), (t2, p2))]
    assert m["dice_per_volume"] == pytest.approx(per)
