"""The classical interactive engine (random walker seeded by the prompts) and propagating a mask to the next
slice: outcomes on synthetic images (Dice, what a negative click removes), every image kind the canvas
stores, and the edge cases (tiny, flat, a prompt on the border) giving a valid map.
"""

import warnings

import numpy as np
import pytest

from patientml_widgets.errors import ValidationError
from patientml_widgets.interactive import ClassicalEngine, Prompts, Scribble
from patientml_widgets.interactive.clicker import dice, simulate
from patientml_widgets.interactive.propagate import prompts_from_mask

ENGINE = ClassicalEngine()


def disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def noisy(mask, inside=180.0, outside=60.0, noise=12.0, seed=0):
    rng = np.random.default_rng(seed)
    return (np.where(mask, inside, outside) + rng.normal(0, noise, mask.shape)).astype(np.float32)


def assert_valid(prob, shape):
    assert prob.dtype == np.float32
    assert prob.shape == tuple(shape)
    assert np.isfinite(prob).all()
    assert prob.min() >= 0.0 and prob.max() <= 1.0


def click(x, y, positive=True):
    return Prompts().with_click(x, y, positive)


def test_one_centre_click_segments_a_bright_disk_on_noise():
    target = disk((160, 160), 80, 70, 22)
    prob = ENGINE.propose(noisy(target), click(70, 80))
    assert_valid(prob, target.shape)
    assert dice(target, prob >= 0.5) > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_a_negative_click_removes_a_wrongly_included_neighbour(seed):
    a = disk((160, 160), 80, 70, 14)
    b = disk((160, 160), 80, 94, 12) & ~a
    image = noisy(a, 180.0, 60.0, seed=seed) + np.where(b, 100.0, 0.0).astype(np.float32)  # b touches a: 160 vs 180
    first = ENGINE.propose(image, click(70, 80)) >= 0.5
    assert first[b].mean() > 0.5  # the scenario: one click on a takes its neighbour too
    second = ENGINE.propose(image, click(70, 80).with_click(96, 80, False)) >= 0.5
    assert second[b].mean() < 0.05
    assert dice(a, second) > 0.9


def test_a_positive_click_adds_a_missed_part():
    a, b = disk((160, 160), 80, 60, 22), disk((160, 160), 80, 100, 20) & ~disk((160, 160), 80, 60, 22)
    image = noisy(a | b, 180.0, 60.0) - np.where(b, 50.0, 0.0).astype(np.float32)
    both = ENGINE.propose(image, click(60, 80).with_click(104, 80, True)) >= 0.5
    assert dice(a | b, both) > 0.9


def test_a_box_alone_segments_the_object_inside():
    target = disk((160, 160), 70, 90, 25)
    prob = ENGINE.propose(noisy(target), Prompts(box=(58, 38, 122, 102)))
    assert_valid(prob, target.shape)
    assert dice(target, prob >= 0.5) > 0.9
    assert not (prob[:, :55] >= 0.5).any()  # nothing outside the box


def test_scribbles_work_like_clicks():
    target = disk((160, 160), 80, 80, 25)
    image = noisy(target | disk((160, 160), 80, 125, 15))  # a second bright disk beside it
    painted = Prompts(
        scribbles=(
            Scribble(True, ((70.0, 80.0), (90.0, 80.0)), 3.0),
            Scribble(False, ((125.0, 72.0), (125.0, 88.0)), 3.0),
        )
    )
    prob = ENGINE.propose(image, painted)
    assert dice(target, prob >= 0.5) > 0.9
    assert ENGINE.propose(image, Prompts(scribbles=painted.scribbles[1:])).max() == 0.0  # negative alone: nothing


def test_16_bit_images():
    target = disk((200, 180), 90, 100, 30)
    image = (noisy(target, 40000.0, 12000.0, 3000.0)).clip(0, 65535).astype(np.uint16)
    assert dice(target, ENGINE.propose(image, click(100, 90)) >= 0.5) > 0.9


def test_negative_hounsfield_units_through_a_window():
    # air at -1000 around a body of fat (-100 HU) holding an organ (60 HU); a soft-tissue window
    body, organ = disk((200, 200), 100, 100, 90), disk((200, 200), 100, 110, 28)
    rng = np.random.default_rng(1)
    hu = np.where(organ, 60, np.where(body, -100, -1000)) + rng.normal(0, 15, body.shape)
    image = hu.round().clip(-1000, 1000).astype(np.int16)
    prob = ENGINE.propose(image, click(110, 100), window={"center": 40, "width": 400})
    assert_valid(prob, image.shape)
    assert dice(organ, prob >= 0.5) > 0.9
    assert dice(organ, ENGINE.propose(image, click(110, 100), window={}) >= 0.5) > 0.85  # automatic window


def test_colour_images_use_every_channel():
    target = disk((150, 150), 75, 75, 25)
    rng = np.random.default_rng(2)
    # red disk on green, both of grey value 100: only the channels tell them apart
    rgb = np.where(target[..., None], [180, 60, 60], [60, 180, 60]) + rng.normal(0, 8, (150, 150, 3))
    image = rgb.clip(0, 255).astype(np.uint8)
    prob = ENGINE.propose(image, click(75, 75))
    assert_valid(prob, target.shape)
    assert dice(target, prob >= 0.5) > 0.9


def test_nothing_to_add_gives_zeros():
    image = noisy(disk((64, 64), 32, 32, 10))
    for prompts in (Prompts(), click(32, 32, False), click(5, 5, False).with_click(32, 32, False)):
        prob = ENGINE.propose(image, prompts)
        assert_valid(prob, image.shape)
        assert not prob.any()


@pytest.mark.parametrize(
    ("shape", "x", "y"),
    [
        ((3, 3), 1, 1),
        ((3, 3), 0, 0),
        ((1, 1), 0, 0),
        ((1, 50), 20, 0),
        ((50, 1), 0, 49),
        ((40, 60), 59, 39),  # the last pixel
        ((40, 60), 0, 17),  # on the left edge
    ],
)
def test_edge_cases_give_a_valid_map_that_keeps_the_click(shape, x, y):
    rng = np.random.default_rng(3)
    for image in (rng.normal(100, 20, shape).astype(np.float32), np.full(shape, 7, np.uint16)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing leaks to the user
            prob = ENGINE.propose(image, click(x, y))
            boxed = ENGINE.propose(image, Prompts(box=(0, 0, shape[1] - 1, shape[0] - 1)))
        assert_valid(prob, shape)
        assert_valid(boxed, shape)
        assert prob[y, x] >= 0.5


def test_a_flat_image_gives_a_region_around_the_click():
    image = np.zeros((100, 100), np.int16)
    prob = ENGINE.propose(image, click(50, 50))
    assert_valid(prob, image.shape)
    assert prob[50, 50] == 1.0 and prob[0, 0] < 0.5


def test_a_window_that_flattens_the_region_falls_back_to_its_own_values():
    target = disk((120, 120), 60, 60, 20)
    image = noisy(target, 1500.0, 900.0, 40.0)  # all of it above a soft-tissue window
    prob = ENGINE.propose(image, click(60, 60), window={"center": 40, "width": 400})
    assert dice(target, prob >= 0.5) > 0.9


def test_a_huge_image_costs_only_its_region():
    image = np.zeros((6000, 6000), np.uint8)
    image[2980:3020, 2980:3020] = 200
    prob = ENGINE.propose(image, click(3000, 3000))
    assert_valid(prob, image.shape)
    assert dice(image > 0, prob >= 0.5) > 0.9
    boxed = ENGINE.propose(image, Prompts(box=(100, 100, 5900, 5900)))  # a box over most of the image
    assert_valid(boxed, image.shape)


def test_few_simulated_clicks_reach_a_simple_object():
    yy, xx = np.mgrid[:128, :128]
    target = ((yy - 60) / 30.0) ** 2 + ((xx - 70) / 18.0) ** 2 <= 1
    image = noisy(target, 150.0, 80.0, 10.0, seed=4)
    trial = simulate(lambda p: ENGINE.propose(image, p), target, clicks=5)
    assert trial.noc(0.9) <= 3


# -- propagating to the next slice ---------------------------------------------------------------------


def test_prompts_from_a_mask_click_inside_each_part_and_box_it():
    mask = disk((100, 120), 40, 40, 15) | disk((100, 120), 60, 90, 10)
    mask[90, 5] = True  # a speck: no click
    prompts = prompts_from_mask(mask)
    assert len(prompts.points) == 2 and all(p for _, _, p in prompts.points)
    for x, y, _ in prompts.points:
        assert mask[int(y), int(x)]
    x0, y0, x1, y1 = prompts.box
    assert x0 < 25 and y0 < 25 and x1 > 100 and y1 > 70  # around both parts, grown
    assert x0 >= 0 and y0 >= 0 and x1 <= 119 and y1 <= 99  # inside the image


def test_prompts_from_a_mask_take_at_most_the_five_largest_parts():
    mask = np.zeros((40, 200), bool)
    for i in range(8):
        mask[10:20, 5 + 24 * i : 5 + 24 * i + 4 + i] = True  # widths 4 .. 11
    xs = sorted(x for x, _, _ in prompts_from_mask(mask).points)
    assert len(xs) == 5 and xs[0] > 5 + 24 * 3  # the five widest


def test_prompts_from_an_empty_mask_are_refused():
    with pytest.raises(ValidationError, match="empty"):
        prompts_from_mask(np.zeros((10, 10), bool))
    with pytest.raises(ValidationError, match="2-D"):
        prompts_from_mask(np.ones((2, 10, 10), bool))


def test_a_sphere_slice_propagates_to_the_next_slice():
    zz, yy, xx = np.mgrid[:12, :128, :128]
    sphere = (zz - 2) ** 2 * 16 + (yy - 64) ** 2 + (xx - 60) ** 2 <= 36**2  # 4 pixels per slice along z
    rng = np.random.default_rng(5)
    volume = (np.where(sphere, 170.0, 70.0) + rng.normal(0, 12, sphere.shape)).astype(np.float32)
    for z in (3, 5):  # the sphere's slices shrink from one to the next
        prob = ENGINE.propose(volume[z + 1], prompts_from_mask(sphere[z]))
        assert dice(sphere[z + 1], prob >= 0.5) > 0.85


def test_clicks_close_together_each_keep_a_seed():
    image = noisy(disk((512, 512), 256, 256, 60), seed=6)
    prompts = click(256, 256)
    for dx, dy in ((-3, 0), (3, 0), (0, -3), (0, 3)):  # a few pixels away: their disks cover the first's
        prompts = prompts.with_click(256 + dx, 256 + dy, False)  # at the coarse scale
    prob = ENGINE.propose(image, prompts)
    assert_valid(prob, image.shape)
    assert (prob >= 0.5).sum() > 1  # the positive click still seeds the walk: more than its own pixel
    assert all(prob[int(y), int(x)] < 0.5 for x, y in prompts.negatives)


def test_nan_and_infinite_pixels_give_a_valid_map():
    target = disk((100, 100), 50, 50, 18)
    image = noisy(target)
    image[48:52, 72:76], image[30, 30] = np.nan, np.inf  # beside the disk, in the engine's region
    prob = ENGINE.propose(image, click(50, 50))
    assert_valid(prob, image.shape)
    assert dice(target, prob >= 0.5) > 0.9
