"""Shape-based slice interpolation: shapes in between, untouched slices, several classes, spacing, refusals."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from patientml_widgets.errors import ValidationError
from patientml_widgets.imaging.interpolate import interpolate_slices

N = 80


def disc(cy: float, cx: float, r: float, size: int = N) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def box(top: int, bottom: int, left: int, right: int, size: int = N) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top:bottom, left:right] = True
    return m


def volume(depth: int, slices: dict[int, dict[int, np.ndarray]]) -> np.ndarray:
    """A (depth, N, N) uint8 volume; ``slices[z][c]`` is where slice z holds class c."""
    mask = np.zeros((depth, N, N), np.uint8)
    for z, by_class in slices.items():
        for c, where in by_class.items():
            mask[z][where] = c
    return mask


def radius(region: np.ndarray) -> float:
    return float(np.sqrt(region.sum() / np.pi))


def centroid(region: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(region)
    return float(ys.mean()), float(xs.mean())


def test_a_growing_disc_grows_linearly_in_radius():
    mask = volume(21, {0: {1: disc(40, 40, 10)}, 20: {1: disc(40, 40, 30)}})
    out = interpolate_slices(mask, [0, 20])
    for z in range(1, 20):
        region = out[z] == 1
        assert radius(region) == pytest.approx(10 + z, abs=1.0), z
        assert centroid(region) == pytest.approx((40, 40), abs=0.5)
        # a disc, not just the right area: every pixel within r - 1 is in, none beyond r + 1
        assert disc(40, 40, 10 + z - 1)[~region].sum() == 0 and region[~disc(40, 40, 10 + z + 1)].sum() == 0
    assert set(np.unique(out[1:20]).tolist()) == {0, 1}


def test_a_moving_disc_is_centred_in_between():
    mask = volume(11, {0: {1: disc(40, 30, 12)}, 10: {1: disc(40, 50, 12)}})
    out = interpolate_slices(mask, [0, 10])
    assert centroid(out[5] == 1) == pytest.approx((40, 40), abs=0.25)
    # not a translation (shape-based interpolation has no motion), but steady and symmetric about the midpoint
    xs = [centroid(out[z] == 1)[1] for z in range(11)]
    assert all(a < b for a, b in itertools.pairwise(xs)), xs
    assert all(xs[z] + xs[10 - z] == pytest.approx(80, abs=0.25) for z in range(11)), xs
    assert all(centroid(out[z] == 1)[0] == pytest.approx(40, abs=0.25) for z in range(11))
    middle = out[5] == 1
    assert middle[40, 40] and not middle[40, 30 - 12] and not middle[40, 50 + 12]


def test_labeled_slices_and_slices_outside_the_range_are_unchanged_and_the_input_is_untouched():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, size=(12, N, N), dtype=np.uint8)  # noise everywhere, interpolated or not
    mask[2] = volume(1, {0: {1: disc(40, 40, 8), 2: disc(10, 10, 4)}})[0]
    mask[6] = volume(1, {0: {1: disc(40, 40, 14)}})[0]
    mask[9] = volume(1, {0: {2: disc(60, 60, 6)}})[0]
    before = mask.copy()
    out = interpolate_slices(mask, [9, 2, 6, 6])  # any order, repeats
    assert np.array_equal(mask, before), "the input was modified"
    assert out is not mask and out.dtype == mask.dtype and out.shape == mask.shape
    for z in (0, 1, 2, 6, 9, 10, 11):
        assert np.array_equal(out[z], mask[z]), z
    for z in (3, 4, 5, 7, 8):  # replaced by the interpolation: the noise is gone
        assert not np.array_equal(out[z], mask[z]), z
        assert (out[z] == 1).sum() > 0 or z == 8  # class 1 is on slice 6, not 9: gone past the midpoint
    # class 2's small disc on slice 2 only: on slice 3, gone on slice 4 (the midpoint) and after
    assert (out[3] == 2).sum() > 0 and (out[4:6] == 2).sum() == 0 and (out[8] == 2).sum() > 0
    assert radius(out[4] == 1) == pytest.approx(11, abs=1.0)


def test_adjacent_labeled_slices_leave_nothing_to_fill():
    mask = volume(4, {1: {1: disc(40, 40, 5)}, 2: {2: disc(40, 40, 9)}, 0: {2: disc(5, 5, 3)}, 3: {1: disc(5, 5, 3)}})
    assert np.array_equal(interpolate_slices(mask, [1, 2]), mask)


def test_two_classes_are_interpolated_independently():
    lo = {1: disc(25, 25, 8), 2: disc(55, 55, 16)}
    hi = {1: disc(25, 25, 16), 2: disc(55, 55, 8)}
    out = interpolate_slices(volume(9, {0: lo, 8: hi}), [0, 8])
    one = interpolate_slices(volume(9, {0: {1: lo[1]}, 8: {1: hi[1]}}), [0, 8])
    two = interpolate_slices(volume(9, {0: {1: lo[2]}, 8: {1: hi[2]}}), [0, 8])
    for z in range(1, 8):
        assert np.array_equal(out[z] == 1, one[z] == 1), z
        assert np.array_equal(out[z] == 2, two[z] == 1), z
        assert radius(out[z] == 1) == pytest.approx(8 + z, abs=1.0)
        assert radius(out[z] == 2) == pytest.approx(16 - z, abs=1.0)


def test_touching_classes_share_the_moving_border_without_a_gap():
    # class 1 on columns 10-29 and class 2 on 30-49; then 1 on 10-39 and 2 on 40-49
    lo = {1: box(20, 60, 10, 30), 2: box(20, 60, 30, 50)}
    hi = {1: box(20, 60, 10, 40), 2: box(20, 60, 40, 50)}
    out = interpolate_slices(volume(3, {0: lo, 2: hi}), [0, 2])
    middle = out[1]
    for row in range(30, 50):  # away from the corners, each row is 1s then 2s, meeting at column 35
        assert middle[row, :10].max() == 0 and middle[row, 50:].max() == 0
        assert (middle[row, 10:35] == 1).all() and (middle[row, 35:50] == 2).all(), row
    assert not ((middle == 1) & (middle == 2)).any()


def test_a_class_inside_another_keeps_its_place():
    # a lesion (2) inside an organ (1) that grows: the lesion is not swallowed, the organ surrounds it
    lo = {1: disc(40, 40, 20) & ~disc(40, 40, 6), 2: disc(40, 40, 6)}
    hi = {1: disc(40, 40, 30) & ~disc(40, 40, 10), 2: disc(40, 40, 10)}
    out = interpolate_slices(volume(5, {0: lo, 4: hi}), [0, 4])
    middle = out[2]
    assert radius(middle == 2) == pytest.approx(8, abs=1.0)
    assert radius((middle == 1) | (middle == 2)) == pytest.approx(25, abs=1.0)
    assert middle[40, 40] == 2 and middle[40, 40 + 15] == 1


def test_a_class_on_one_side_only_shrinks_and_vanishes_at_the_midpoint():
    mask = volume(11, {0: {1: disc(40, 40, 12), 2: disc(10, 10, 5)}, 10: {2: disc(10, 10, 5), 3: disc(60, 60, 10)}})
    out = interpolate_slices(mask, [0, 10])
    areas = [int((out[z] == 1).sum()) for z in range(11)]
    assert all(a > b for a, b in itertools.pairwise(areas[:5])), areas  # strictly shrinking...
    assert areas[4] > 0 and areas[5:] == [0] * 6, areas  # ...gone from the midpoint on
    assert radius(out[2] == 1) == pytest.approx(12 * (1 - 2 * 0.2), abs=1.0)  # radius r (1 - 2t)
    appearing = [int((out[z] == 3).sum()) for z in range(11)]
    assert appearing[:6] == [0] * 6 and all(a < b for a, b in itertools.pairwise(appearing[6:])), appearing
    assert all(np.array_equal(out[z] == 2, disc(10, 10, 5)) for z in range(11))  # the unchanged class stays


def test_empty_neighbouring_slices_give_background_in_between():
    mask = volume(7, {1: {1: disc(40, 40, 5)}, 3: {2: disc(40, 40, 5)}, 5: {1: disc(40, 40, 5)}})
    out = interpolate_slices(mask, [0, 6])
    assert not out[1:6].any() and np.array_equal(out[[0, 6]], mask[[0, 6]])


def test_anisotropic_spacing_erodes_in_millimetres():
    # rows 2 mm apart, columns 1 mm: the disc of 12 pixels is a 24 x 12 mm ellipse; a quarter of the way
    # to nothing it has lost half its depth (6 mm): 12 - 6 = 6 columns each side and, in a continuous
    # ellipse, (24 - 6) / 2 = 9 rows (8 on this pixelated rim); with square pixels 6 and 6
    mask = volume(5, {0: {1: disc(40, 40, 12)}})
    square = interpolate_slices(mask, [0, 4])[1] == 1
    tall = interpolate_slices(mask, [0, 4], spacing=(2.0, 1.0))[1] == 1
    wide = interpolate_slices(mask, [0, 4], spacing=(1.0, 2.0))[1] == 1

    def extent(region, axis):
        return int(region.any(axis=1 - axis).sum())

    assert extent(square, 0) == extent(square, 1) == pytest.approx(13, abs=1)
    assert extent(tall, 0) in (17, 19) and extent(tall, 1) == pytest.approx(13, abs=1)
    assert extent(wide, 1) in (17, 19) and extent(wide, 0) == pytest.approx(13, abs=1)
    # the same spacing on both axes is only a change of unit
    assert np.array_equal(interpolate_slices(mask, [0, 4], spacing=(0.7, 0.7)), interpolate_slices(mask, [0, 4]))


def test_shapes_cut_by_the_image_edge_and_a_class_filling_the_slice():
    # a half-disc at the left edge grows; the edge is not a boundary, so it stays on the edge
    mask = volume(3, {0: {1: disc(40, 0, 10)}, 2: {1: disc(40, 0, 20)}})
    middle = interpolate_slices(mask, [0, 2])[1] == 1
    assert middle[40, 0] and middle[40, :15].all() and not middle[40, 16:].any()
    # a class covering everything, then nothing: it shrinks from the image's edges
    full = np.zeros((5, N, N), np.uint8)
    full[0] = 1
    out = interpolate_slices(full, [0, 4])
    assert out[1, 40, 40] == 1 and out[1, 0, 0] == 0 and not out[2:4].any()
    assert np.array_equal(out[1], out[1][::-1]) and np.array_equal(out[1], out[1][:, ::-1])  # from every edge
    assert np.array_equal(out[1], out[1].T) and 10 < (out[1, 40] == 1).sum() < 70


def reference(mask: np.ndarray, z0: int, z1: int, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """The slices strictly between z0 and z1, computed on whole slices by the documented rules, and
    where a class's blend is within rounding of 0 (a tie either way)."""
    lo, hi = mask[z0], mask[z1]

    def sd(inside):
        return ndimage.distance_transform_edt(~inside, sampling=spacing) - ndimage.distance_transform_edt(
            inside, sampling=spacing
        )

    maps = {}
    for c in sorted((set(np.unique(lo)) | set(np.unique(hi))) - {0}):
        a = sd(lo == c) if (lo == c).any() else None
        b = sd(hi == c) if (hi == c).any() else None
        maps[c] = (b + 2 * -b.min() if a is None else a, a + 2 * -a.min() if b is None else b)
    out = np.zeros((z1 - z0 - 1, *lo.shape), mask.dtype)
    ties = np.zeros(out.shape, bool)
    for i, z in enumerate(range(z0 + 1, z1)):
        t = (z - z0) / (z1 - z0)
        best = np.zeros(lo.shape)
        for c, (a, b) in maps.items():
            d = (1 - t) * a + t * b
            out[i][d < best] = c
            ties[i] |= np.abs(d - best) < 1e-9
            best = np.minimum(best, d)
    return out, ties


def blobs(rng: np.random.Generator, classes: int, size: int = N) -> np.ndarray:
    """A slice of smooth random blobs of classes 1..classes, some cut by the image's edge."""
    slice_ = np.zeros((size, size), np.uint8)
    for c in range(1, classes + 1):
        field = ndimage.gaussian_filter(rng.standard_normal((size, size)), 6)
        slice_[field > np.quantile(field, 0.9)] = c
    return slice_


@pytest.mark.parametrize("spacing", [None, (1.5, 0.6)])
def test_working_inside_the_bounding_boxes_gives_what_whole_slices_give(spacing):
    rng = np.random.default_rng(7)
    for _ in range(4):
        mask = np.zeros((9, N, N), np.uint8)
        mask[0], mask[8] = blobs(rng, 3), blobs(rng, 2)
        mask[8][mask[8] == 2] = 3  # class 2 on one side only, 3 on both, 1 on both
        out = interpolate_slices(mask, [0, 8], spacing=spacing)
        expected, ties = reference(mask, 0, 8, spacing)
        assert np.array_equal(out[1:8][~ties], expected[~ties])
        assert ties.mean() < 0.01


def test_other_dtypes_keep_their_dtype():
    mask = volume(3, {0: {1: disc(40, 40, 10)}, 2: {1: disc(40, 40, 20)}})
    for dtype in (bool, np.int32, np.uint16):
        out = interpolate_slices(mask.astype(dtype), [0, 2])
        assert out.dtype == dtype and np.array_equal(out.astype(np.uint8), interpolate_slices(mask, [0, 2]))
    big = mask.astype(np.uint16) * 300
    assert set(np.unique(interpolate_slices(big, [0, 2])[1]).tolist()) == {0, 300}


def test_classes_that_are_allowed_pass():
    mask = volume(3, {0: {1: disc(40, 40, 10)}, 2: {2: disc(40, 40, 20)}})
    interpolate_slices(mask, [0, 2], classes=[1, 2])  # background is always allowed
    interpolate_slices(mask, [0, 2], classes=range(3))


@pytest.mark.parametrize(
    ("mask", "labeled", "kwargs", "message"),
    [
        (np.zeros((N, N), np.uint8), [0, 1], {}, "must be 3-D"),
        (np.zeros((2, 3, 4, 5), np.uint8), [0, 1], {}, "must be 3-D"),
        (np.zeros((3, 8, 8), np.float32), [0, 2], {}, "dtype float32; expected integer"),
        ([[[0, 1]]], [0, 1], {}, "numpy array"),
        (np.full((3, 8, 8), -1, np.int16), [0, 2], {}, "negative"),
        (np.zeros((3, 8, 8), np.uint8), [1], {}, "at least two distinct labeled slices"),
        (np.zeros((3, 8, 8), np.uint8), [1, 1, 1], {}, "at least two distinct labeled slices; got [1]"),
        (np.zeros((3, 8, 8), np.uint8), [], {}, "at least two distinct labeled slices; got none"),
        (np.zeros((3, 8, 8), np.uint8), [0, 3], {}, "labeled slice 3 is out of range: the mask has 3 slices"),
        (np.zeros((3, 8, 8), np.uint8), [-1, 2], {}, "labeled slice -1 is out of range"),
        (np.zeros((3, 8, 8), np.uint8), [0, 1.5], {}, "not a slice index"),
        (np.zeros((3, 8, 8), np.uint8), [True, False, True], {}, "True/False"),
        (np.zeros((3, 8, 8), np.uint8), 2, {}, "sequence of slice indices"),
        (np.zeros((3, 8, 8), np.uint8), [0, 2], {"spacing": (0.0, 1.0)}, "spacing must be two positive"),
        (np.zeros((3, 8, 8), np.uint8), [0, 2], {"spacing": (1.0,)}, "spacing must be two numbers"),
        (np.zeros((3, 8, 8), np.uint8), [0, 2], {"spacing": (np.nan, 1.0)}, "spacing must be two positive"),
        (np.full((3, 8, 8), 3, np.uint8), [0, 2], {"classes": [0, 1, 2]}, "class indices [3] that are not among"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_problem(mask, labeled, kwargs, message):
    with pytest.raises(ValidationError) as info:
        interpolate_slices(mask, labeled, **kwargs)
    assert message in str(info.value)


def test_a_class_outside_classes_on_a_slice_that_is_not_interpolated_is_refused_too():
    mask = np.zeros((5, 8, 8), np.uint8)
    mask[4, 2, 2] = 7
    with pytest.raises(ValidationError, match=r"\[7\]"):
        interpolate_slices(mask, [0, 2], classes=[0, 1])
