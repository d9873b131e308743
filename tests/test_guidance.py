"""The project's own model guided by clicks: simulated clicks, the two-headed U-Net, old runs, the clicker's scores,
and a tiny guided run end to end (click metrics recorded, a click proposes the clicked object)."""

import numpy as np
import pytest

import patientml_widgets as pml
from patientml_widgets.interactive import ProjectModelEngine, Prompts, Scribble
from patientml_widgets.interactive.clicker import click_scores, dice, objects
from patientml_widgets.training.plan import make_plan
from patientml_widgets.training.spec import TrainSpec

torch = pytest.importorskip("torch")

from patientml_widgets.training import data, guidance, trainer  # noqa: E402
from patientml_widgets.training.data import IGNORE  # noqa: E402
from patientml_widgets.training.models import GuidedUNet, SmallUNet  # noqa: E402
from patientml_widgets.training.predictor import Predictor  # noqa: E402

CLASSES = [{"index": 0, "name": "background"}, {"index": 1, "name": "blob"}]


def labels() -> np.ndarray:
    """Two class-1 objects, one class-2 object, a class-1 speck, and padding down the right side."""
    y = np.zeros((40, 48), np.int64)
    y[4:14, 4:14] = 1
    y[24:36, 6:16] = 1
    y[8:20, 24:34] = 2
    y[30:32, 28:30] = 1  # 4 pixels: a speck, never clicked
    y[:, 40:] = IGNORE
    return y


def disks(seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with two bright disks far apart (left and right half) and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for lo, hi in ((6, size // 2 - 6), (size // 2 + 6, size - 6)):
        cy, cx, r = rng.uniform(8, size - 8), rng.uniform(lo, hi), rng.uniform(4, 6)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = 40 + 150 * mask + rng.normal(0, 12, mask.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


# -- clicks simulated from labels -------------------------------------------------------------------------


def test_simulated_clicks_fall_inside_the_object_and_outside_it_never_on_padding():
    y = np.stack([labels()] * 6)
    found = objects(labels())
    assert [int(o.sum()) for o in found] == [120, 120, 100]  # largest first; the speck is no object
    rng = np.random.default_rng(0)
    seen_negative = seen_extra = 0
    for _ in range(20):
        batch = guidance.simulate(y, rng, share=1.0)
        assert batch.guided.all()
        for prompts, obj in zip(batch.prompts, batch.objects):
            assert any(np.array_equal(obj, o) for o in found)
            first, *rest = prompts.points
            assert first[2] and obj[int(first[1]), int(first[0])]
            assert not obj[30, 28]  # the speck
            for x, y_, positive in rest:
                r, c = int(y_), int(x)
                assert labels()[r, c] != IGNORE
                assert obj[r, c] == positive
            seen_negative += sum(not p for *_, p in rest)
            seen_extra += sum(p for *_, p in rest)
    assert seen_negative and seen_extra
    # under a seed the same clicks; half of the samples are clicked by default; nothing to click: not guided
    one = guidance.simulate(y, np.random.default_rng(7))
    two = guidance.simulate(y, np.random.default_rng(7))
    assert one.prompts == two.prompts and np.array_equal(one.objects, two.objects)
    assert 0 < sum(p.empty for p in guidance.simulate(np.stack([labels()] * 40), rng).prompts) < 40
    empty = np.full((2, 16, 16), IGNORE)
    empty[:, :8] = 0
    assert not guidance.simulate(empty, rng, share=1.0).guided.any()


def test_a_correction_click_goes_to_the_largest_error_and_never_on_padding():
    y = labels()[None]
    batch = guidance.simulate(y, np.random.default_rng(1), share=1.0)
    obj = batch.objects[0]
    proposed = np.ones_like(obj)[None]  # everything, padding included: the error is outside the object
    fixed = batch.corrected(np.array([0]), proposed, y != IGNORE)
    x, y_, positive = fixed.prompts[0].points[-1]
    assert len(fixed.prompts[0].points) == len(batch.prompts[0].points) + 1
    assert not positive and labels()[int(y_), int(x)] != IGNORE and not obj[int(y_), int(x)]


def test_click_maps_and_prompts_on_the_canvas():
    maps = guidance.click_maps([Prompts(((5.0, 4.0, True), (12.0, 9.0, False))), Prompts()], (16, 20), 3.0)
    assert maps.shape == (2, 2, 16, 20) and maps.dtype == torch.float32
    assert maps[0, 0, 4, 5] == 1 and maps[0, 1, 4, 5] == 0 and maps[0, 1, 9, 12] == 1
    assert maps[0, 0].sum() == maps[0, 1].sum() == 29  # a disk of radius 3: 29 pixel centres
    assert maps[1].sum() == 0
    assert guidance.click_radius([128, 96]) == 3.0 and guidance.click_radius([256, 512]) == pytest.approx(5.12)
    # an image of 100 x 200 filling 50 x 100 of the canvas: pixel centres to pixel centres
    moved = guidance.canvas_prompts(Prompts(((0.0, 0.0, True), (199.0, 99.0, False))), (100, 200), (50, 100), 3.0)
    assert moved.points == ((-0.25, -0.25, True), (99.25, 49.25, False))
    boxed = guidance.canvas_prompts(Prompts(box=(10.0, 20.0, 30.0, 60.0)), (100, 200), (100, 200), 3.0)
    assert boxed.points == ((20.0, 40.0, True),) and boxed.box == (10.0, 20.0, 30.0, 60.0)  # a click at its centre
    drawn = guidance.canvas_prompts(Prompts(scribbles=(Scribble(True, ((1.0, 1.0), (9.0, 1.0)), 1.0),)), (10, 10),
                                    (10, 10), 3.0)  # fmt: skip
    assert drawn.scribbles[0].width == 6.0  # a chain of clicks


def test_a_proposal_keeps_the_parts_a_positive_click_touches():
    inside = np.zeros((10, 20), bool)
    inside[2:6, 2:6] = inside[2:6, 10:14] = True
    positive = np.zeros_like(inside)
    positive[3, 3] = True
    kept = guidance.keep_clicked(inside, positive)
    assert kept[2:6, 2:6].all() and not kept[:, 8:].any()
    assert np.array_equal(guidance.keep_clicked(inside, np.zeros_like(inside)), inside)  # no click touches: all


def logits_of(obj: np.ndarray, classes: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Guided logits (n_classes + 1, H, W): the class head sure of ``classes``, the object map's probabilities
    ``obj``."""
    out = np.full((n_classes + 1, *classes.shape), -8.0, np.float32)
    for c in range(n_classes):
        out[c][classes == c] = 8.0
    out[-1] = np.log(obj / (1 - obj))
    return out


def test_a_proposal_reaches_as_far_as_the_clicked_class_where_the_object_map_does_not_rule_it_out():
    classes = np.zeros((20, 40), np.int64)
    classes[4:16, 2:38] = 1  # a long object of class 1 ...
    classes[4:16, 30:38] = 2  # ... whose right end is class 2
    obj = np.full(classes.shape, 0.3)  # the object map: unsure far from the click ...
    obj[6:14, 4:10] = 0.9  # ... sure around it
    obj[:, 20:22] = 0.05  # ... and sure that a line across it is outside (a negative click, touching objects)
    positive = np.zeros(classes.shape, bool)
    positive[10, 6] = True
    proba = guidance.proposal(logits_of(obj, classes), positive)
    assert proba.dtype == np.float32 and proba.shape == classes.shape
    inside = proba >= 0.5
    assert inside[4:16, 2:20].all()  # the class reaches the object's left end, beyond the object map's own 0.9
    assert not inside[:, 20:].any()  # cut where the object map rules it out; beyond it nothing is connected
    assert not inside[:4].any() and not inside[16:].any()  # the background extends nothing
    # a click on the background: the object map alone
    on_background = np.zeros(classes.shape, bool)
    on_background[1, 1] = True
    alone = guidance.proposal(logits_of(obj, classes), on_background)
    assert np.array_equal(alone >= 0.5, obj >= 0.5)
    # a click on class 2: its part only (the object map allows it there)
    obj2 = np.full(classes.shape, 0.3)
    on_two = np.zeros(classes.shape, bool)
    on_two[10, 34] = True
    assert np.array_equal(guidance.proposal(logits_of(obj2, classes), on_two) >= 0.5, classes == 2)


def test_large_objects_are_clicked_more_often_and_small_ones_still_are():
    y = np.zeros((1, 60, 60), np.int64)
    y[0, 2:52, 2:52] = 1  # 2,500 pixels
    y[0, 55:59, 55:59] = 2  # 16 pixels
    rng = np.random.default_rng(3)
    small = sum(int(guidance.simulate(y, rng, share=1.0).objects[0].sum()) == 16 for _ in range(400))
    # half drawn uniformly (1/2 each), half by area (16/2516): about 26% small
    assert 0.18 * 400 < small < 0.34 * 400


def test_the_object_loss_leaves_out_padding_and_unguided_samples():
    logits = torch.zeros((2, 4, 4), requires_grad=True)
    objects_ = torch.zeros((2, 4, 4))
    objects_[0, :2] = 1
    valid = torch.ones((2, 4, 4), dtype=torch.bool)
    valid[0, :, 3] = False
    loss = guidance.object_loss(logits, objects_, valid, torch.tensor([True, False]))
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, :, 3].abs().sum() == 0
    assert logits.grad[0, 0, 0] < 0 < logits.grad[0, 3, 0]  # up inside the object, down outside
    assert guidance.object_loss(logits, objects_, valid, torch.tensor([False, False])) == 0


# -- the network, the spec and the plan -------------------------------------------------------------------


def test_the_guided_unet_has_two_heads_and_forward_gives_the_class_logits():
    torch.manual_seed(0)
    net = GuidedUNet(3, 4, base_channels=4, depth=2, norm="group").eval()
    x, g = torch.randn(2, 3, 20, 24), torch.zeros(2, 2, 20, 24)
    g[:, 0, 10, 12] = 1
    with torch.no_grad():
        semantic, both, obj = net(x), net(x, g), net.propose(x, g)
        assert semantic.shape == (2, 4, 20, 24) and both.shape == (2, 5, 20, 24) and obj.shape == (2, 20, 24)
        assert torch.allclose(semantic, net(x, torch.zeros_like(g))[:, :4])
        assert torch.allclose(obj, both[:, 4])
        cl = x.contiguous(memory_format=torch.channels_last)
        assert torch.allclose(net(cl), semantic, atol=1e-5)
    assert next(net.unet.parameters()).shape[1] == 5  # the image's 3 channels and 2 click maps


def test_guidance_is_asked_for_the_built_in_unet_on_images_and_old_runs_stay_unguided():
    fp = {"n": 10, "shape_median": [64, 64], "channels": [1]}
    new = TrainSpec.build("segmentation", None, num_classes=2)
    assert new.guidance is None  # the plan's
    assert make_plan(fp, new.to_dict(), device="cpu")["guidance"] is False  # opt in: it costs training time
    on = TrainSpec.build("segmentation", {"guidance": True}, num_classes=2)
    assert make_plan(fp, on.to_dict(), device="cpu")["guidance"] is True
    off = TrainSpec.build("segmentation", {"guidance": False}, num_classes=2)
    assert make_plan(fp, off.to_dict(), device="cpu")["guidance"] is False
    volume = {**fp, "volume": True, "spacing_median": [1.0, 1.0, 1.0]}
    assert make_plan(volume, new.to_dict(), device="cpu")["guidance"] is False
    with pytest.raises(pml.ValidationError, match="2-D images"):
        make_plan(volume, TrainSpec.build("segmentation", {"guidance": True}, num_classes=2).to_dict(), device="cpu")
    code = TrainSpec.build("segmentation", None, num_classes=2, architecture="code:mine")
    assert make_plan(fp, code.to_dict(), device="cpu")["guidance"] is False
    assert (
        make_plan(fp, TrainSpec.build("classification", None, num_classes=2).to_dict(), device="cpu")["guidance"]
        is False
    )
    with pytest.raises(pml.ValidationError, match="segmentation"):
        TrainSpec.build("classification", {"guidance": True}, num_classes=2)
    with pytest.raises(pml.ValidationError, match="True or False"):
        TrainSpec.build("segmentation", {"guidance": "yes"}, num_classes=2)
    recorded = {k: v for k, v in new.to_dict().items() if k != "guidance"}  # a run from before the field
    assert TrainSpec.from_dict(recorded).guidance is False


def tiny_spec(**kwargs) -> TrainSpec:
    fixed = {
        "canvas": [32, 32], "patch": [32, 32], "num_classes": 2, "in_channels": 1, "depth": 2, "norm": "batch",
        "normalization": {"scheme": "zscore"}, "eval_every": 5, "lr": 5e-3, "budget_s": 600, "precision": "fp32",
    }  # fmt: skip
    return TrainSpec.build("segmentation", {"steps": 10, "base_channels": 4, "batch_size": 8}, {**fixed, **kwargs})


def test_guided_training_is_deterministic_and_an_old_unguided_run_still_loads_and_predicts():
    samples = [disks(i) for i in range(12)]
    spec = tiny_spec(guidance=True)
    train = data.prepare([s[0] for s in samples[:8]], [s[1] for s in samples[:8]], spec)
    val = data.prepare([s[0] for s in samples[8:]], [s[1] for s in samples[8:]], spec)
    one, two = trainer.fit(spec, train, val), trainer.fit(spec, train, val)
    assert one.history == two.history and all(torch.equal(one.state_dict[k], two.state_dict[k]) for k in one.state_dict)
    guided = Predictor(spec, trainer.save_state_dict(_loaded(spec, one.state_dict)), CLASSES)
    assert guided.guided and guided.predict(samples[0][0]).shape == (2, 32, 32)
    proposal = guided.propose(samples[0][0], Prompts(((8.0, 16.0, True),)))
    assert proposal.shape == (32, 32) and proposal.dtype == np.float32 and 0 <= proposal.min() <= proposal.max() <= 1
    # a run recorded before guidance: no field in its spec, a plain U-Net's weights
    old = {k: v for k, v in tiny_spec().to_dict().items() if k != "guidance"}
    weights = trainer.save_state_dict(SmallUNet(1, 2, 4, 2, "batch"))
    predictor = Predictor(TrainSpec.from_dict(old), weights, CLASSES)
    assert not predictor.guided and isinstance(predictor.net, SmallUNet)
    assert predictor.predict(samples[0][0]).shape == (2, 32, 32)
    with pytest.raises(pml.ValidationError, match="guidance off"):
        predictor.propose(samples[0][0], Prompts(((8.0, 16.0, True),)))
    with pytest.raises(pml.ValidationError, match="guidance off"):
        ProjectModelEngine(predictor, run="old-run")


def _loaded(spec, state):
    net = trainer.build_model(spec)
    net.load_state_dict(state)
    return net


# -- the clicker's scores ------------------------------------------------------------------------------------


def test_click_scores_take_each_images_largest_objects_in_turns():
    masks = [labels().clip(0, None), np.zeros((8, 8), np.int64)]

    def oracle(masks):
        def propose(items):  # exactly the object the first click is in
            out = []
            for i, prompts in items:
                x, y, _ = prompts.points[0]
                out.append(next(o for o in objects(masks[i]) if o[int(y), int(x)]).astype(np.float32))
            return out

        return propose

    scores = click_scores(oracle(masks), masks)
    assert scores == {"click_dice_1": 1.0, "click_dice_3": 1.0, "click_dice_5": 1.0, "noc_85": 1.0, "noc_90": 1.0,
                      "click_objects": 3}  # fmt: skip
    assert click_scores(oracle(masks), masks, per_image=1)["click_objects"] == 1
    assert click_scores(oracle(masks * 3), masks * 3, limit=4)["click_objects"] == 4
    nothing = click_scores(lambda items: [np.zeros(masks[i].shape, np.float32) for i, _ in items], masks)
    assert nothing["click_dice_5"] == 0.0 and nothing["noc_90"] == 20.0
    assert click_scores(oracle(masks), [np.zeros((4, 4), np.int64)]) == {}


# -- end to end ----------------------------------------------------------------------------------------------


def test_a_guided_run_records_click_metrics_and_a_click_proposes_that_object(project):
    model = project.create_model("Blobs", problem_type="segmentation", classes=["background", "blob"])
    samples = [disks(i) for i in range(48)]
    splits = ["test" if i % 8 == 0 else "val" if i % 8 == 1 else "train" for i in range(48)]
    examples = project.add_examples(model, [s[0] for s in samples], splits=splits)
    with project.batch():
        for ex, (_, mask) in zip(examples, samples):
            project.submit_label(ex, mask=mask)
    hyperparameters = {
        "steps": 150,
        "base_channels": 8,
        "batch_size": 16,
        "lr": 5e-3,
        "eval_every": 50,
        "guidance": True,
    }
    run = project.train(model, hyperparameters=hyperparameters).wait(timeout=180)
    assert run.status == "succeeded", run.traceback
    assert run.spec["guidance"] is True and run.plan["guidance"] is True and run.hyperparameters["guidance"] is True
    test = run.metrics["test"]
    assert test["click_objects"] == 12  # both disks of the 6 test images
    assert {"click_dice_1", "click_dice_3", "click_dice_5", "noc_85", "noc_90"} <= set(test)
    assert 0 <= test["click_dice_1"] <= 1 and 1 <= test["noc_90"] <= 20
    engine = ProjectModelEngine(project.predictor(run), run=run.slug)
    assert engine.name == "model" and run.slug in engine.label
    image, mask = disks(1000)
    left, right = objects(mask)[0], objects(mask)[1]
    if left[:, 16:].any():
        left, right = right, left

    def centre(obj):
        rows, cols = np.nonzero(obj)
        return float(cols.mean()), float(rows.mean())

    on_left = engine.propose(image, Prompts(((*centre(left), True),)))
    on_right = engine.propose(image, Prompts(((*centre(right), True),)))
    assert on_left.shape == image.shape and on_left.dtype == np.float32
    assert dice(left, on_left >= 0.5) > dice(left, on_right >= 0.5) + 0.3
    assert dice(right, on_right >= 0.5) > dice(right, on_left >= 0.5) + 0.3
    assert not engine.propose(image, Prompts()).any()
    boxed = engine.propose(image, Prompts(box=(0.0, 0.0, 15.0, 31.0)))
    assert not boxed[:, 16:].any()
    # the labeler offers the deployed run's model, chosen, and a click goes to it
    from helpers import Browser

    from patientml_widgets.widgets.label_canvas import LabelCanvas

    canvas = LabelCanvas.for_example(project, examples[2])
    assert [e["name"] for e in canvas.engines] == ["classical", "model"] and canvas.engine == "model"
    x, y = centre(objects(samples[2][1])[0])
    reply = Browser(canvas).send({"kind": "prompt", "seq": 1, "prompts": {"points": [[x, y, True]]}})
    assert reply["kind"] == "proposal" and reply["region"] is not None
    # a project model given to the labeler is offered instead of the deployed run's (one engine per name)
    given = LabelCanvas.for_example(project, examples[2], engines=[engine])
    assert [e["name"] for e in given.engines] == ["classical", "model"] and given.engine == "model"
    assert given._engines["model"] is engine
    # a second run meets the first (guided) as its champion: scored the same way on the same objects
    second = project.train(model, hyperparameters={**hyperparameters, "steps": 4}).wait(timeout=180)
    assert second.status == "succeeded", second.traceback
    champion = second.champion["metrics"]["test"]
    assert second.champion["run_id"] == run.id
    assert {k: champion[k] for k in test if k.startswith(("click", "noc"))} == pytest.approx(
        {k: v for k, v in test.items() if k.startswith(("click", "noc"))}
    )
