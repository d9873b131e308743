"""The training plan: precision and threads per machine, fingerprint -> plan, normalisation,
resampling to and from the working resolution, and the step budget. Tiny data, no worker."""

import numpy as np
import pytest

import patientml_widgets as pml
from patientml_widgets.training import hardware
from patientml_widgets.training.plan import fingerprint, make_plan, normalization_for
from patientml_widgets.training.spec import TrainSpec, parse_budget

torch = pytest.importorskip("torch")

from patientml_widgets.training import data, trainer  # noqa: E402

X86_AVX2 = "processor: 0\nmodel name: AMD EPYC\nflags: fpu sse2 avx avx2 fma\n"
X86_BF16 = "processor: 0\nmodel name: Intel Xeon\nflags: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
ARM_BF16 = "processor: 0\nFeatures: fp asimd sve bf16 i8mm\nCPU implementer: 0x41\n"


# -- precision, device and threads -----------------------------------------------------


def test_auto_precision_is_bf16_only_where_the_cpu_runs_it_natively():
    avx2, bf16, arm = (hardware.cpu_flags(text) for text in (X86_AVX2, X86_BF16, ARM_BF16))
    assert "avx2" in avx2 and "avx512_bf16" in bf16 and "bf16" in arm
    assert hardware.choose_precision("auto", "cpu", flags=avx2)[0] == "fp32"
    precision, why = hardware.choose_precision("auto", "cpu", flags=bf16)
    assert precision == "bf16" and "amx_bf16" in why and "avx512_bf16" in why
    assert hardware.choose_precision("auto", "cpu", flags=arm)[0] == "bf16"
    assert hardware.choose_precision("auto", "cpu", flags=frozenset())[0] == "fp32"  # unknown CPU: never slower
    # asked for explicitly: done, but an emulated bf16 is said to be slow
    precision, why = hardware.choose_precision("bf16", "cpu", flags=avx2)
    assert precision == "bf16" and "slower" in why
    assert hardware.choose_precision("fp32", "cpu", flags=bf16)[0] == "fp32"
    with pytest.raises(ValueError, match="CUDA"):
        hardware.choose_precision("fp16", "cpu", flags=bf16)
    with pytest.raises(ValueError, match="precision"):
        hardware.choose_precision("int8", "cpu")


def test_auto_precision_on_gpus():
    assert hardware.choose_precision("auto", "cuda", cuda_bf16=True)[0] == "bf16"
    precision, why = hardware.choose_precision("auto", "cuda", cuda_bf16=False)
    assert precision == "fp16" and "scaler" in why
    assert hardware.choose_precision("auto", "mps")[0] == "fp32"
    assert hardware.choose_device("auto", cuda=True, mps=True) == "cuda"
    assert hardware.choose_device("auto", cuda=False, mps=True) == "mps"
    assert hardware.choose_device("auto", cuda=False, mps=False) == "cpu"
    with pytest.raises(ValueError, match="no CUDA"):
        hardware.choose_device("cuda", cuda=False, mps=False)


def test_detect_uses_the_cpu_flags_and_the_usable_cores(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    avx2, bf16 = hardware.cpu_flags(X86_AVX2), hardware.cpu_flags(X86_BF16)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: avx2)
    monkeypatch.setattr(hardware, "usable_cores", lambda: 6)
    hw = hardware.detect(processes_here=2)
    assert (hw.device, hw.precision, hw.threads) == ("cpu", "fp32", 3)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: bf16)
    assert hardware.detect().precision == "bf16"
    assert hardware.detect("fp32").precision == "fp32"


def test_threads_follow_affinity_and_the_cgroup_quota(tmp_path):
    assert hardware.usable_cores(affinity=8, quota=None) == 8
    assert hardware.usable_cores(affinity=8, quota=2.0) == 2
    assert hardware.usable_cores(affinity=8, quota=1.5) == 2
    assert hardware.usable_cores(affinity=2, quota=16.0) == 2
    assert hardware.usable_cores(affinity=4, quota=0.2) == 1
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert hardware.cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert hardware.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert hardware.cgroup_cpu_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert hardware.cgroup_cpu_quota(tmp_path) is None
    assert hardware.usable_cores() >= 1


# -- fingerprint and plan --------------------------------------------------------------


def _seg_plan(images, masks, **spec):
    fp = fingerprint(images, masks, problem_type="segmentation", num_classes=3, modalities=spec.pop("modalities", None))
    return fp, make_plan(fp, {"problem_type": "segmentation", **spec}, device="cpu")


def test_native_resolution_keeps_the_aspect_ratio_up_to_a_cap():
    rng = np.random.default_rng(0)
    images = [rng.normal(100, 20, (233, 197)).astype(np.float32) for _ in range(6)]
    masks = [rng.integers(0, 3, (233, 197)).astype(np.uint8) for _ in range(6)]
    fp, plan = _seg_plan(images, masks)
    assert fp["shape_median"] == [233, 197] and fp["channels"] == [1]
    assert plan["canvas"] == [240, 208]  # native, rounded up to the network's multiple: not a square
    assert plan["batch_size"] >= 2 and plan["steps"] >= 150 and plan["budget_s"] == 180
    # a big image is scaled down to the cap, aspect ratio kept; the batch trains on patches
    big = [np.zeros((512, 1024), np.int16)] * 10
    _, plan = _seg_plan(big, [np.zeros((512, 1024), np.uint8)] * 10)
    assert plan["canvas"] == [192, 368]  # about 256 x 256 pixels, the aspect ratio kept
    _, plan = _seg_plan(big, [np.zeros((512, 1024), np.uint8)] * 10, image_size=512)
    assert plan["canvas"] == [368, 736] and plan["patch"][0] * plan["patch"][1] < 368 * 736
    # thin images keep their resolution; portrait and landscape images share a square
    _, plan = _seg_plan([np.zeros((2000, 20), np.uint8)] * 4, [np.zeros((2000, 20), np.uint8)] * 4)
    assert plan["canvas"] == [1024, 16]
    mixed = [np.zeros((512, 256), np.uint8)] * 6 + [np.zeros((256, 512), np.uint8)] * 4
    fp, plan = _seg_plan(mixed, mixed)
    assert fp["mixed_orientation"] and plan["canvas"] == [256, 256]
    assert plan["batch_size"] >= 8 and plan["norm"] == "batch"
    # what the user sets wins
    _, plan = _seg_plan(images, masks, steps=7, batch_size=3, lr=0.01, base_channels=4)
    assert (plan["steps"], plan["batch_size"], plan["lr"], plan["base_channels"]) == (7, 3, 0.01, 4)
    assert plan["norm"] == "group"  # batch norm needs bigger batches
    _, plan = _seg_plan(images, masks, epochs=3, batch_size=2)
    assert plan["steps"] == 3 * plan["steps_per_epoch"]


def test_training_length_follows_the_data_not_an_epoch_count():
    small = [np.zeros((64, 64), np.uint8)] * 10
    large = [np.zeros((64, 64), np.uint8)] * 2000
    _, few = _seg_plan(small, small)
    _, many = _seg_plan(large, large)
    assert few["steps"] >= 150  # enough optimisation for 10 images
    assert many["steps"] > few["steps"] and many["steps"] <= 4000


def test_class_weights_for_imbalanced_classification():
    images = [np.zeros((32, 32), np.uint8)] * 100
    targets = [0] * 90 + [1] * 9 + [2] * 1
    fp = fingerprint(images, targets, problem_type="classification", num_classes=4)
    assert fp["class_counts"] == [90, 9, 1, 0]
    plan = make_plan(fp, {"problem_type": "classification"}, device="cpu")
    w = plan["class_weights"]
    assert w[2] > w[1] > w[0] > 0 and w[3] == 0
    assert np.mean([v for v in w if v]) == pytest.approx(1, abs=1e-3)
    multi = fingerprint(
        images, [np.array([1, 0, 1, 0], np.float32)] * 100, problem_type="classification", num_classes=4
    )
    weights = make_plan(multi, {"problem_type": "classification", "multi_label": True}, device="cpu")["class_weights"]
    assert weights[0] == 1.0 and weights[1] == 10.0  # negatives / positives, within [1, 10]


def test_budget_texts():
    assert parse_budget("3 min") == 180 and parse_budget("90 s") == 90 and parse_budget(45) == 45
    assert parse_budget("1.5h") == 5400 and parse_budget(None) == 0 and parse_budget("") == 0
    for bad in ("soon", "-3 min", "3 parsecs", float("inf")):
        with pytest.raises(pml.ValidationError, match="budget"):
            parse_budget(bad)
    assert TrainSpec.build("segmentation", {"budget": "2 min"}, num_classes=2).budget_s == 120


# -- normalisation per modality ----------------------------------------------------------


def test_ct_is_clipped_to_the_foreground_and_scaled_the_same_for_every_image():
    rng = np.random.default_rng(1)
    images, masks = [], []
    for _ in range(4):
        img = np.full((40, 40), -1000, np.int16)  # air
        img[10:30, 10:30] = rng.normal(40, 10, (20, 20)).astype(np.int16)  # soft tissue
        img[0, 0] = 3000  # metal
        mask = np.zeros((40, 40), np.uint8)
        mask[10:30, 10:30] = 1
        images.append(img)
        masks.append(mask)
    fp = fingerprint(images, masks, problem_type="segmentation", num_classes=2, modalities=["CT"] * 4)
    norm = normalization_for(fp, "segmentation")
    assert norm["scheme"] == "ct"
    lo, hi = norm["clip"]
    assert 0 < lo < 40 < hi < 100  # the foreground's 0.5-99.5 percentiles of HU, not the air or the metal
    out = data.normalize(images[0], norm)
    assert out.shape == (1, 40, 40) and out.min() == pytest.approx((lo - norm["mean"]) / norm["std"])
    assert out.max() == pytest.approx((hi - norm["mean"]) / norm["std"])
    # the same HU gives the same value in any image (no per-image rescaling)
    other = images[1].copy()
    other[0:5, 0:5] = 40
    assert data.normalize(other, norm)[0, 2, 2] == pytest.approx(data.normalize(np.full((4, 4), 40), norm)[0, 0, 0])


def test_mr_and_microscopy_segmentation_are_z_scored_per_image():
    rng = np.random.default_rng(2)
    img = rng.normal(300, 50, (30, 20)).astype(np.float32)
    fp = fingerprint(
        [img], [np.zeros((30, 20), np.uint8)], problem_type="segmentation", num_classes=2, modalities=["MR"]
    )
    norm = normalization_for(fp, "segmentation")
    assert norm == {"scheme": "zscore"}
    a, b = data.normalize(img, norm), data.normalize(img * 3 + 7, norm)  # another scanner's scaling
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert a.mean() == pytest.approx(0, abs=1e-5) and a.std() == pytest.approx(1, abs=1e-4)


def test_rgb_is_normalised_per_channel():
    rng = np.random.default_rng(3)
    img = np.stack([rng.normal(m, s, (16, 16)) for m, s in ((200, 5), (100, 20), (50, 40))], -1).astype(np.uint8)
    out = data.normalize(img, {"scheme": "zscore"})
    assert out.shape == (3, 16, 16)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-3)


def test_classification_keeps_brightness_with_the_data_sets_statistics():
    dark, bright = np.full((8, 8), 50, np.uint8), np.full((8, 8), 200, np.uint8)
    fp = fingerprint([dark, bright] * 5, [0, 1] * 5, problem_type="classification", num_classes=2)
    norm = normalization_for(fp, "classification")
    assert norm["scheme"] == "dataset" and len(norm["mean"]) == 1
    assert data.normalize(dark, norm).mean() < -0.5 < 0.5 < data.normalize(bright, norm).mean()
    rgb = fingerprint([np.zeros((8, 8, 3), np.uint8)] * 3, [0, 1, 0], problem_type="classification", num_classes=2)
    assert len(normalization_for(rgb, "classification")["mean"]) == 3


# -- to and from the working resolution --------------------------------------------------


def _spec(canvas, problem="segmentation", k=3, channels=1):
    return TrainSpec.build(problem, canvas=list(canvas), num_classes=k, in_channels=channels,
                           normalization={"scheme": "zscore"})  # fmt: skip


def _onehot(mask, k):
    return torch.from_numpy(np.eye(k, dtype=np.float32)[mask]).permute(2, 0, 1)


def test_labels_round_trip_exactly_through_the_canvas():
    rng = np.random.default_rng(4)
    mask = rng.integers(0, 3, (50, 70)).astype(np.uint8)
    spec = _spec([64, 80])
    on_canvas = data.mask_to_canvas(mask, spec)
    assert on_canvas.shape == (64, 80)
    np.testing.assert_array_equal(on_canvas[:50, :70].numpy(), mask)  # never interpolated
    assert (on_canvas[50:] == data.IGNORE).all() and (on_canvas[:, 70:] == data.IGNORE).all()  # padding ignored
    proba = torch.zeros((3, 64, 80))
    proba[:, :50, :70] = _onehot(mask, 3)
    back = data.restore_proba(proba, (50, 70), (50, 70)).argmax(0).numpy()
    np.testing.assert_array_equal(back, mask)


def test_downscaled_images_keep_their_aspect_and_probabilities_come_back_at_full_size():
    assert data.fit_size((100, 300), [64, 128]) == (43, 128)  # fitted, not squashed
    assert data.fit_size((40, 50), [64, 128]) == (40, 50)  # never enlarged
    blocks = np.kron(np.random.default_rng(5).integers(0, 3, (32, 48)), np.ones((2, 2), np.int64)).astype(np.uint8)
    spec = _spec([32, 48])
    small = data.mask_to_canvas(blocks, spec)
    assert small.shape == (32, 48) and (small >= 0).all()
    back = data.restore_proba(_onehot(small.numpy(), 3), (32, 48), blocks.shape)
    assert back.shape == (3, 64, 96)
    assert torch.allclose(back.sum(0), torch.ones(64, 96))  # still probabilities
    np.testing.assert_array_equal(back.argmax(0).numpy(), blocks)
    image = np.random.default_rng(6).normal(0, 1, (64, 96)).astype(np.float32)
    x, size = data.to_canvas(image, spec)
    assert x.shape == (1, 32, 48) and size == (32, 48)


def test_a_prediction_has_the_original_image_size():
    spec = TrainSpec.build("segmentation", canvas=[32, 48], depth=3, base_channels=4, num_classes=3, in_channels=3,
                           normalization={"scheme": "zscore"})  # fmt: skip
    net = trainer.build_model(spec)
    image = np.random.default_rng(7).integers(0, 255, (90, 61, 3)).astype(np.uint8)
    proba = trainer.predict_image(net, spec, image, precision="fp32")
    assert proba.shape == (3, 90, 61) and torch.allclose(proba.sum(0), torch.ones(90, 61), atol=1e-4)
    grey = trainer.predict_image(net, spec, image[..., 0], precision="fp32")  # a grey image into an RGB network
    assert grey.shape == (3, 90, 61)


# -- the step budget -----------------------------------------------------------------------


def _tiny_data(n=10, size=16):
    rng = np.random.default_rng(8)
    images = [rng.normal(0, 1, (size, size)).astype(np.float32) for _ in range(n)]
    masks = [(img > 0.5).astype(np.uint8) for img in images]
    return images, masks


def _fit(**hp):
    images, masks = _tiny_data()
    values = {"canvas": [16, 16], "patch": [16, 16], "depth": 2, "base_channels": 2, "batch_size": 4, "lr": 1e-2,
              "steps": 12, "eval_every": 4, "budget_s": 600, "normalization": {"scheme": "zscore"}, **hp}  # fmt: skip
    spec = TrainSpec.build("segmentation", values, num_classes=2, in_channels=1)
    train, val = data.prepare(images[:8], masks[:8], spec), data.prepare(images[8:], masks[8:], spec)
    steps = []
    result = trainer.fit(spec, train, val, on_step=lambda p: steps.append(p))
    return result, steps


def test_the_planned_number_of_steps_is_trained():
    result, progress = _fit()
    assert result.steps == 12 and result.stopped == "planned steps"
    assert [h["step"] for h in result.history] == [4, 8, 12]
    assert [p["step"] for p in progress] == list(range(1, 13)) and progress[-1]["steps"] == 12
    assert all(p["eta_s"] >= 0 for p in progress) and progress[-1]["eta_s"] == 0
    assert result.best_step in (4, 8, 12) and result.val_metrics


def test_a_time_budget_ends_training_early_with_a_cool_down():
    result, progress = _fit(steps=100_000, budget_s=0.05, early_stopping=False)
    assert result.stopped == "time budget" and result.steps < 1000
    assert progress[-1]["lr"] == pytest.approx(0, abs=1e-9)  # cooled down to zero, then stopped


def test_early_stopping_when_validation_stops_improving():
    result, _ = _fit(steps=100_000, lr=1e-12, eval_every=2)  # learns nothing: no improvement
    assert result.stopped.startswith("early stopping") and result.steps < 100
    assert result.best_step <= result.steps and len(result.history) >= 6


def test_legacy_run_specs_still_load():
    old = {"problem_type": "segmentation", "num_classes": 3, "architecture": "unet", "image_size": 128, "epochs": 8,
           "batch_size": 8, "lr": 0.01, "base_channels": 16, "precision": "bf16", "in_channels": 3}  # fmt: skip
    spec = TrainSpec.from_dict(old)
    assert spec.canvas == [128, 128] and spec.fit == "stretch" and spec.norm == "batch" and spec.depth == 3
    net = trainer.build_model(spec)
    assert any("running_mean" in k for k in net.state_dict())
    x, size = data.to_canvas(np.zeros((50, 70, 3), np.uint8), spec)
    assert x.shape == (3, 128, 128) and size == (128, 128)


def test_the_resolution_is_lowered_when_the_data_would_not_fit_in_memory(tmp_path):
    images = [np.zeros((512, 512), np.int16)] * 1000
    fp = fingerprint(images[:5], images[:5], problem_type="segmentation", num_classes=2)
    fp["n"] = 1000
    roomy = make_plan(fp, {"problem_type": "segmentation"}, device="cpu", memory_bytes=64 * 2**30)
    tight = make_plan(fp, {"problem_type": "segmentation"}, device="cpu", memory_bytes=1 * 2**30)
    assert roomy["canvas"] == [256, 256] and "memory_note" not in roomy
    assert tight["canvas"][0] < 256 and "free memory" in tight["memory_note"]
    assert tight["canvas"][0] == tight["canvas"][1]  # still the aspect ratio
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.current").write_text("73741824\n")
    meminfo = "MemTotal: 32000000 kB\nMemAvailable: 16000000 kB\n"
    assert hardware.available_memory(meminfo, tmp_path) == 1_000_000_000
    (tmp_path / "memory.max").write_text("max\n")
    assert hardware.available_memory(meminfo, tmp_path) == 16_000_000 * 1024


def test_group_norm_fits_any_width_and_rotations_do_not_shear():
    spec = TrainSpec.build("segmentation", canvas=[32, 32], depth=2, base_channels=10, norm="group", num_classes=2)
    net = trainer.build_model(spec)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    # a disk on a wide canvas stays a disk (same extent along both axes) under any rotation
    yy, xx = np.mgrid[0:32, 0:128]
    disk = torch.from_numpy(((yy - 16) ** 2 + (xx - 64) ** 2 < 100).astype(np.float32))[None, None]
    for seed in range(6):
        out, _ = data.augment(
            disk.clone(), torch.zeros(1, 32, 128, dtype=torch.long), True, torch.Generator().manual_seed(seed)
        )
        ys, xs = np.nonzero(out[0, 0].numpy() > 0.5)
        assert 0.7 < np.ptp(ys) / np.ptp(xs) < 1.4, seed


def test_without_a_validation_objective_the_latest_checkpoint_is_kept():
    images, masks = _tiny_data()
    spec = TrainSpec.build(
        "segmentation",
        {
            "canvas": [16, 16],
            "patch": [16, 16],
            "depth": 2,
            "base_channels": 2,
            "batch_size": 4,
            "lr": 1e-2,
            "steps": 10,
            "eval_every": 2,
            "normalization": {"scheme": "zscore"},
        },
        num_classes=2,
        in_channels=1,
    )
    empty = data.prepare([], [], spec)
    result = trainer.fit(spec, data.prepare(images, masks, spec), empty)
    assert result.best_step == 10 and result.stopped == "planned steps"


def test_a_fixed_length_is_not_cut_by_the_default_budget():
    images = [np.zeros((64, 64), np.uint8)] * 10
    fp = fingerprint(images, images, problem_type="segmentation", num_classes=2)
    assert make_plan(fp, {"problem_type": "segmentation", "steps": 5000}, device="cpu")["budget_s"] == 0
    assert make_plan(fp, {"problem_type": "segmentation", "steps": 50, "budget_s": 30}, device="cpu")["budget_s"] == 30
    assert make_plan(fp, {"problem_type": "segmentation"}, device="cpu")["budget_s"] == 180


def test_grey_images_in_a_colour_classification_set_keep_their_brightness():
    dark, bright = np.full((8, 8, 3), 40, np.uint8), np.full((8, 8, 3), 210, np.uint8)
    fp = fingerprint([dark, bright] * 4, [0, 1] * 4, problem_type="classification", num_classes=2)
    spec = TrainSpec.build(
        "classification",
        canvas=[16, 16],
        num_classes=2,
        in_channels=3,
        normalization=normalization_for(fp, "classification"),
    )
    grey_dark, grey_bright = (data.to_canvas(img[..., 0], spec)[0] for img in (dark, bright))
    assert grey_dark.shape == (3, 16, 16)
    assert grey_dark[:, :8, :8].mean() < -0.5 < 0.5 < grey_bright[:, :8, :8].mean()
    rgba = np.dstack([bright, np.full((8, 8), 255, np.uint8)])
    np.testing.assert_allclose(data.to_canvas(rgba, spec)[0], data.to_canvas(bright, spec)[0])  # alpha dropped


def test_settings_are_checked_before_a_run(project):
    with pytest.raises(pml.ValidationError, match="budget"):
        TrainSpec.build("segmentation", {"budget_s": "soon"}, num_classes=2)
    assert TrainSpec.build("segmentation", {"budget_s": "3 min"}, num_classes=2).budget_s == 180
    for bad in (64, [0, 0], [64], ["a", "b"]):
        with pytest.raises(pml.ValidationError, match="patch"):
            TrainSpec.build("segmentation", {"patch": bad}, num_classes=2)
    multi = project.create_model("tags", problem_type="classification", classes=["a", "b"], multi_label=True)
    single = project.create_model("kind", problem_type="classification", classes=["a", "b"])
    with pytest.raises(pml.ValidationError, match="multi-label classification metric"):
        project.configure_training(multi, objective="accuracy")
    with pytest.raises(pml.ValidationError, match="not a classification metric"):
        project.configure_training(single, objective="subset_accuracy")
    assert project.configure_training(single, objective="loss").training["direction"] == "min"
    assert project.configure_training(single, objective="auroc").training["direction"] == "max"
    with pytest.raises(ValueError, match="Apple GPU"):
        hardware.choose_precision("fp16", "mps")
