"""Volumes train and predict 2.5-D: tiny volumes, few steps (the figures are benchmarks/volume_training.py's)."""

import numpy as np
import pytest

import patientml_widgets as pml
from patientml_widgets.errors import ValidationError
from patientml_widgets.predictions import Predictions
from patientml_widgets.training.plan import fingerprint, make_plan, volume_samples
from patientml_widgets.widgets.label_canvas import LabelCanvas

TINY = {"steps": 4, "base_channels": 4, "batch_size": 4}
SPACING = (2.5, 0.8, 0.8)


def phantom(seed, shape=(6, 24, 20)):
    """A CT-like volume with an organ (1) and a lesion (2) in some of its slices, and its label."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = rng.integers(8, 14, 2)
    mask = np.zeros(shape, np.uint8)
    organ = ((z - 2.5) * 2.5) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < 36
    mask[organ] = 1
    mask[organ & (y < cy - 1)] = 2
    volume = rng.normal(0, 20, shape) + 150 * (mask == 1) + 300 * (mask == 2)
    return volume.astype(np.int16), mask


def add_volumes(project, model, splits, label=True):
    out = []
    for i, split in enumerate(splits):
        volume, mask = phantom(i)
        ex = project.add_volume(model, volume, spacing=SPACING, subject=f"p{i}", split=split, source={"modality": "CT"})
        if label:
            project.submit_label(ex, mask=mask)
        out.append(ex)
    return out


def test_a_volume_model_trains_tests_in_3d_deploys_and_predicts_whole_volumes(project, seg):
    add_volumes(project, seg, ["train", "train", "val", "test"])
    (unlabeled,) = add_volumes(project, seg, ["train"], label=False)
    run = project.train(seg, hyperparameters=TINY).wait(timeout=180)
    assert run.status == "succeeded", run.traceback
    # the plan says how volumes train, and why
    assert run.plan["volume_mode"] == "2.5d" == run.spec["volume_mode"] and "2.5-D" in run.plan["volume_mode_reason"]
    assert run.plan["context"] == 1 and run.spec["in_channels"] == 3 and run.plan["tta"] is False
    assert run.plan["spacing"] == [0.8, 0.8]  # the volumes' own pixel size: they fit the canvas
    assert run.fingerprint["volume"] and run.fingerprint["volumes"] == 2
    assert run.fingerprint["n"] == sum(len(volume_samples(phantom(i)[1])) for i in range(2))
    assert run.fingerprint["spacing_median"] == list(SPACING)
    # the test volume is scored whole: Dice over every voxel and HD95 in mm per class
    test = run.metrics["test"]
    assert test["n"] == 1 and len(test["dice"]) == 3 and len(test["hd95"]) == 3 and test["hd95"][0] is None
    assert all(v >= 0 for v in test["hd95"][1:]) and test["hd95_mean"] >= 0
    assert test["dice_per_volume"] == [pytest.approx(test["dice_mean"])]
    assert [e["example_id"] for e in run.test_examples] == [project.examples(seg, split="test")[0].id]
    assert project.model(seg).champion_run_id == run.id
    # after deploying, the worker stored every volume's prediction as a 3-D .tif mask
    stored = project.session.prediction_records(run.id)
    assert set(stored) == {e.id for e in project.examples(seg)}
    record = stored[unlabeled.id]
    assert record["mask_ref"].endswith(".tif") and isinstance(record["slices"], list)
    prediction = project.predict(seg, unlabeled)
    assert prediction.mask.shape == unlabeled.shape == (6, 24, 20) and prediction.mask.dtype == np.uint8
    assert set(np.unique(prediction.mask)) <= {0, 1, 2} and 0 <= prediction.uncertainty <= 1
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-3)
    assert record["slices"] == np.flatnonzero(prediction.mask.reshape(6, -1).any(axis=1)).tolist()
    # the labeler shows the volume's prediction on every plane
    canvas = LabelCanvas.for_example(project, unlabeled)
    assert np.array_equal(canvas.prediction, prediction.mask)
    sent = []
    canvas.send = lambda content, buffers=None: sent.append((content, buffers))
    canvas._handle_message(canvas, {"kind": "plane", "plane": "sagittal", "index": 3}, [])
    assert sent[-1][0]["kind"] == "plane" and len(sent[-1][1]) == 3  # image, label, prediction
    # the queries take volumes too (3-D Dice against the label)
    labeled = {e.id for e in project.examples(seg, status="labeled")}
    assert {e.id for e in project.examples(seg, status="labeled", sort="uncertainty")} == labeled
    assert {e.id for e in project.disagreements(seg)} <= labeled
    # a run trained on volumes predicts volumes, not arrays without their spacing
    with pytest.raises(ValidationError, match="trained on volumes"):
        project.predict(seg, np.zeros((24, 20), np.uint8))
    predictor = project.predictor(run)
    out = predictor.predict_volume(phantom(7)[0], SPACING, batch_size=4)  # batches of slices, same answer
    assert np.array_equal(out.positions, predictor.predict_volume(phantom(7)[0], SPACING, batch_size=16).positions)
    with pytest.raises(ValidationError, match="predict_volume"):
        predictor.predict(np.zeros((24, 20), np.uint8))
    # the next run meets the champion on the same test volume, scored the same way
    second = project.train(seg, hyperparameters={**TINY, "steps": 2}).wait(timeout=180)
    assert second.status == "succeeded", second.traceback
    assert second.champion["run_id"] == run.id and "error" not in second.champion
    assert second.champion["metrics"]["test"]["dice"] == pytest.approx(test["dice"])
    assert second.champion["metrics"]["test"]["hd95"][1:] == pytest.approx(test["hd95"][1:], abs=1e-3)


def test_a_model_mixing_volumes_and_images_is_refused_and_each_kind_of_run_predicts_its_own(project, seg):
    flat = []
    for i, split in enumerate(["train", "val", "test"]):
        ex = project.add_example(seg, np.full((16, 16), 40 * i, np.uint8), subject=f"f{i}", split=split)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:9, 4:9] = 1
        project.submit_label(ex, mask=mask)
        flat.append(ex)
    (volume,) = add_volumes(project, seg, ["train"])
    with pytest.raises(ValidationError, match="1 of the labeled examples are volumes and 3 are 2-D images"):
        project.train(seg, hyperparameters=TINY)
    assert not project.runs(seg)
    project.delete_label(volume)
    run = project.train(seg, hyperparameters={**TINY, "image_size": 16}).wait(timeout=180)
    assert run.status == "succeeded", run.traceback
    assert run.spec["volume_mode"] == "" and "volume_mode" not in run.plan  # 2-D as before
    with pytest.raises(ValidationError, match="is a volume; the deployed run was trained on 2-D images"):
        project.predict(seg, volume)
    assert volume.id not in project.session.prediction_records(run.id)  # predict_all left it out
    assert project.predict(seg, flat[0]).mask.shape == (16, 16)


def test_a_volume_is_classified_by_the_mean_of_its_central_slices(project, cls):
    from patientml_widgets.training.plan import central_slices

    names = [c.name for c in cls.classes]
    for i, split in enumerate(["train", "train", "train", "val", "val", "test", "test"]):
        volume = phantom(i, shape=(8, 24, 20))[0]
        if i % 2:
            volume = volume + 400  # "melanoma": brighter
        ex = project.add_volume(cls, volume, spacing=SPACING, subject=f"p{i}", split=split, source={"modality": "CT"})
        project.submit_label(ex, classes=[names[i % 2]])
    unlabeled = project.add_volume(cls, phantom(9, shape=(8, 24, 20))[0], spacing=SPACING, subject="u")
    run = project.train(cls, hyperparameters=TINY).wait(timeout=180)
    assert run.status == "succeeded", run.traceback
    assert run.plan["volume_mode"] == "2.5d" and run.spec["in_channels"] == 3 and run.spec["architecture"] == "cnn"
    assert run.fingerprint["n"] == 3 * len(central_slices(8)) and central_slices(8) == [2, 3, 4, 5]
    test = run.metrics["test"]
    assert test["n"] == 2 and np.array(test["confusion_matrix"]).sum() == 2  # one case per volume, not per slice
    assert len(run.test_examples) == 2
    prediction = project.predict(cls, unlabeled)
    assert prediction.mask is None and len(prediction.classes) == 1 and 0 <= prediction.uncertainty <= 1
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-4)
    out = project.predictor(run).predict_volume(project.image(unlabeled), SPACING)
    assert out.positions is None and list(out.mean_proba) == pytest.approx(list(prediction.probabilities.values()))
    assert project.session.prediction_record(run.id, unlabeled.id).get("mask_ref") is None


def test_volume_queries_use_stored_3d_predictions_without_loading_the_network(project, seg, monkeypatch):
    examples = add_volumes(project, seg, ["train", "train", "val"])
    run = project.create_run(seg)
    from helpers import update_run_with_weights

    classes = [{"index": c.index, "name": c.name, "color": c.color, "description": ""} for c in seg.classes]
    spec = {"objective": "dice_mean", "volume_mode": "2.5d"}
    update_run_with_weights(project, run.id, b"w", status="succeeded", classes=classes, spec=spec)
    project.deploy(run.id)
    truth = [project.mask(e) for e in examples]
    guesses = [truth[0], np.roll(truth[1], 5, axis=2), np.zeros_like(truth[2])]  # agrees, moved, missed
    entries = [
        {"run_id": run.id, "example_id": e.id, "model_id": seg.id, "uncertainty": u, "probabilities": [0.8, 0.1, 0.1],
         "mask": g}
        for e, g, u in zip(examples, guesses, (0.1, 0.5, 0.3))
    ]  # fmt: skip
    assert project.session.store_predictions(entries) == 3
    stored = project.session.prediction_records(run.id)
    assert all(stored[e.id]["mask_ref"].endswith(".tif") for e in examples)
    assert np.array_equal(project.session.mask_blob(stored[examples[1].id]["mask_ref"]), guesses[1])

    def refuse(self, run_id):
        raise AssertionError("the query loaded the run's network although its predictions are stored")

    monkeypatch.setattr(Predictions, "predictor", refuse)
    ids = [e.id for e in examples]
    queries = Predictions(project.session)
    order = queries.uncertainty_order(seg, ids)
    assert order[0] == ids[1] and sorted(order) == sorted(ids)  # the least sure first
    assert queries.disagreeing(seg, ids) == [ids[1], ids[2]]  # 3-D Dice below 0.8
    flat = project.add_example(seg, np.zeros((8, 8), np.uint8))  # a 2-D image: not this run's kind, sorted last
    assert queries.uncertainty_order(seg, [flat.id, *ids]).index(flat.id) >= 2  # (then one random surer pick)


def test_the_plan_of_volumes_follows_their_spacing():
    masks = [phantom(i, shape=(12, 40, 40))[1] for i in range(3)]
    images = [phantom(i, shape=(12, 40, 40))[0] for i in range(3)]
    spec = {"problem_type": "segmentation", "num_classes": 3}

    def plan(spacing, **extra):
        fp = fingerprint(images, masks, problem_type="segmentation", num_classes=3, spacings=[spacing] * 3)
        return fp, make_plan(fp, {**spec, **extra}, device="cpu")

    fp, thick = plan((5.0, 0.8, 0.8))
    assert fp["shape_median"] == [40, 40] and fp["channels"] == [1] and fp["depth_median"] == 12
    assert thick["context_stride"] == 1 and thick["in_channels"] == 3 and thick["spacing"] == [0.8, 0.8]
    _, thin = plan((0.25, 0.8, 0.8))  # thin slices: neighbours about one working pixel apart
    assert thin["context_stride"] == 3
    _, wide = plan((1.0, 0.8, 0.8), context=2, image_size=20)  # a lower cap: coarser working pixels
    assert wide["context"] == 2 and wide["in_channels"] == 5 and wide["spacing"] == [1.6, 1.6]
    assert wide["context_stride"] == 1 and wide["canvas"] == [24, 24]
    with pytest.raises(ValidationError, match="context"):
        pml.training.spec.TrainSpec.build("segmentation", {"context": 9}, num_classes=3)


def test_samples_are_foreground_slices_and_a_share_of_background():
    mask = np.zeros((30, 4, 4), np.uint8)
    mask[10:16, 1, 1] = 1
    samples = volume_samples(mask)
    assert set(range(10, 16)) <= set(samples) and len(samples) == 6 + 4  # 6 with foreground, 4 background
    assert volume_samples(np.zeros((3, 4, 4), np.uint8)) == [0, 1, 2]


def test_slices_carry_their_neighbours_clamped_and_keep_the_physical_aspect():
    import torch

    from patientml_widgets.training.data import VolumeSlicer, prepare_volumes
    from patientml_widgets.training.spec import TrainSpec

    volume = np.arange(5)[:, None, None] * np.ones((5, 8, 16)) * 10  # slice k holds 10 k everywhere
    spec = TrainSpec("segmentation", 2, canvas=[16, 16], context=1, context_stride=1, spacing=[1.0, 1.0],
                     normalization={"scheme": "ct", "clip": [0, 100], "mean": 0.0, "std": 10.0})  # fmt: skip
    mask = np.zeros((5, 8, 16), np.uint8)
    mask[4, 2:4, 2:6] = 1
    data = prepare_volumes([volume], [mask], [(2.0, 2.0, 1.0)], [[0, 4]], spec)
    x = data.inputs(torch.arange(2))
    assert x.shape == (2, 3, 16, 16)
    h, w = data.sizes[0]
    assert (h, w) == (16, 16)  # 8 rows of 2 mm and 16 columns of 1 mm: a 16 x 16 mm square at 1 mm
    assert x[0, :, :h, :w].mean((1, 2)).tolist() == pytest.approx([0, 0, 1])  # slice 0: neighbours clamped
    assert x[1, :, :h, :w].mean((1, 2)).tolist() == pytest.approx([3, 4, 4])
    assert int((data.y[1] == 1).sum()) == 2 * 2 * 4  # the label rows doubled too
    assert len(data.x) == 4  # slices 0, 1, 3, 4 held once each
    slicer = VolumeSlicer(volume, (2.0, 2.0, 1.0), spec)
    assert slicer.rows([0, 4]).tolist() == [[0, 0, 1], [3, 4, 4]]


def test_two_volumes_of_one_patient_share_a_split(project, seg):
    a = project.add_volume(seg, phantom(0)[0], spacing=SPACING, subject="patient-7")
    b = project.add_volume(seg, phantom(1)[0], spacing=SPACING, subject="patient-7")
    assert a.split == b.split
    project.submit_label(a, mask=phantom(0)[1])
    snapshot = project.snapshot(seg)
    assert [split for split, items in snapshot.items() for i, _ in items if i == a.id] == [a.split]  # one split, whole
