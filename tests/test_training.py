"""Training runs end to end on the demo project, with tiny networks so CI stays fast."""

import os
import signal
import sys
import time

import numpy as np
import pytest

import patientml_widgets as pml
from patientml_widgets.runs import promotion_decision

TINY = {"steps": 4, "image_size": 32, "base_channels": 4, "batch_size": 16}
GOOD = {"steps": 60, "image_size": 64, "base_channels": 8, "lr": 5e-3, "batch_size": 16}
LONG = {**TINY, "steps": 100_000, "early_stopping": False, "budget_s": 3600}


def _wait_until_running(handle, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = handle.run
        if run.status == "running" and run.progress.get("step"):
            return run
        assert not run.finished, (run.status, run.error, run.traceback)
        time.sleep(0.05)
    raise TimeoutError


@pytest.fixture
def seg(demo):
    return demo.model("Skin lesion segmentation")


@pytest.fixture
def cls(demo):
    return demo.model("Lesion type")


@pytest.mark.slow
def test_segmentation_run_records_everything_and_predicts(demo, seg):
    handle = demo.train(seg, hyperparameters=TINY)
    assert handle.status in ("queued", "running")  # returned at once
    run = handle.wait(timeout=120)
    assert run.status == "succeeded", run.traceback
    assert run.snapshot == demo.snapshot(seg)
    assert run.hyperparameters["steps"] == 4 and run.hyperparameters["image_size"] == 32
    # what the run derived from the data and the machine is recorded
    assert run.fingerprint["n"] == len(run.snapshot["train"]) and run.fingerprint["shape_median"] == [128, 128]
    assert run.plan["canvas"] == [32, 32] == run.spec["canvas"] and run.plan["steps"] == 4
    assert run.hardware["device"] == "cpu" and run.hardware["precision"] in ("fp32", "bf16")
    assert run.hardware["threads"] >= 1 and run.hardware["reason"]
    assert run.training["steps"] == 4 and run.training["stopped"] == "planned steps"
    assert run.spec["architecture"] == "unet" and run.spec["num_classes"] == 3
    test = run.metrics["test"]
    assert set(test) >= {"loss", "dice", "dice_mean", "iou", "iou_mean", "pixel_accuracy"}
    assert test["n"] == len(run.snapshot["test"])
    assert len(run.history) == 1 and "val" in run.history[0] and "loss" in run.history[0]["train"]
    assert run.progress["phase"] == "done"
    assert len(run.test_examples) == len(run.snapshot["test"])
    assert [e["score"] for e in run.test_examples] == sorted(e["score"] for e in run.test_examples)
    assert demo.session.store.blobs.exists(run.artifact_ref)
    # the first run is approved and (auto_deploy) becomes the champion
    assert [a["decision"] for a in run.approvals] == ["approve", "deploy"]
    assert demo.model(seg).deployed and demo.model(seg).champion_run_id == run.id
    ex = demo.examples(seg, status="unlabeled", limit=1)[0]
    prediction = demo.predict(seg, ex)
    assert prediction.mask.shape == ex.shape and prediction.mask.dtype == np.uint8
    assert set(np.unique(prediction.mask)) <= {0, 1, 2}
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-3)
    again = demo.predict(seg, ex)  # cached per (example, run)
    assert np.array_equal(again.mask, prediction.mask) and again.uncertainty == prediction.uncertainty
    assert demo.session.store.get("predictions", f"{run.id}:{ex.id}") is not None
    array_prediction = demo.predict(seg, np.zeros((50, 70, 3), np.uint8))
    assert array_prediction.mask.shape == (50, 70) and array_prediction.example_id is None
    assert "finished" in demo.run_log(run)
    # the labeling view offers the deployed model's prediction
    from patientml_widgets.widgets import LabelCanvas

    canvas = LabelCanvas.for_example(demo, ex)
    np.testing.assert_array_equal(canvas.prediction, prediction.mask)


@pytest.mark.slow
def test_classification_run_and_prediction(demo, cls, tmp_path):
    run = demo.train(cls, hyperparameters=TINY).wait(timeout=120)
    assert run.status == "succeeded", run.traceback
    test = run.metrics["test"]
    assert set(test) >= {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "precision",
        "recall",
        "auroc",
        "confusion_matrix",
    }
    assert np.array(test["confusion_matrix"]).shape == (3, 3)
    ex = demo.examples(cls, status="unlabeled", limit=1)[0]
    prediction = demo.predict(cls, ex)
    assert list(prediction.probabilities) == ["benign nevus", "atypical lesion", "seborrheic keratosis"]
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-3)
    assert len(prediction.classes) == 1 and 0 <= prediction.uncertainty <= 1
    from patientml_widgets.widgets import LabelCanvas

    scores = LabelCanvas.for_example(demo, ex).prediction_scores
    assert scores == {str(i): pytest.approx(p) for i, p in enumerate(prediction.probabilities.values())}
    # an export loads elsewhere (weights only) and predicts the same
    from patientml_widgets.training.predictor import Predictor

    folder = demo.export_run(run, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model_card.json", "model_card.md", "weights.pt"]
    loaded = Predictor.load(folder)
    assert loaded.predict(demo.image(ex)) == pytest.approx(list(prediction.probabilities.values()), abs=1e-5)


def test_promotion_rule():
    assert promotion_decision("dice_mean", "max", 0.0, 0.8, None)[0] == "approve"
    decision, reason = promotion_decision("dice_mean", "max", 0.01, 0.805, 0.8)
    assert decision == "reject" and "0.8050 vs champion 0.8000" in reason and "margin 0.01" in reason
    assert promotion_decision("dice_mean", "max", 0.01, 0.82, 0.8)[0] == "approve"
    assert promotion_decision("loss", "min", 0.0, 0.3, 0.4)[0] == "approve"
    assert promotion_decision("loss", "min", 0.0, 0.5, 0.4)[0] == "reject"
    assert promotion_decision("dice_mean", "max", 0.0, None, 0.4)[0] == "reject"


@pytest.mark.slow
def test_worse_challenger_rejected_better_one_promoted_and_manual_decisions(demo, cls):
    useless = {**TINY, "lr": 1e-9}  # learns nothing: a weak champion
    first = demo.train(cls, hyperparameters=useless).wait(timeout=120)
    assert first.status == "succeeded" and demo.model(cls).champion_run_id == first.id
    better = demo.train(cls, hyperparameters=GOOD).wait(timeout=120)
    assert better.champion["run_id"] == first.id
    ours, theirs = better.metrics["test"]["balanced_accuracy"], better.champion["metrics"]["test"]["balanced_accuracy"]
    assert ours > theirs
    assert better.approvals[0]["decision"] == "approve" and "better than the champion" in better.approvals[0]["reason"]
    assert demo.model(cls).champion_run_id == better.id
    worse = demo.train(cls, hyperparameters=useless).wait(timeout=120)
    assert worse.approvals[-1]["decision"] == "reject" and "not better" in worse.approvals[-1]["reason"]
    assert demo.model(cls).champion_run_id == better.id  # the champion stays
    # people decide too: reject needs a reason; deploy by hand moves the Status
    with pytest.raises(pml.ValidationError, match="reason"):
        demo.reject(better, "")
    demo.reject(better, "looks overfit on site B", actor="dr-who")
    assert demo.run(better).approvals[-1] == {**demo.run(better).approvals[-1], "decision": "reject", "actor": "dr-who"}
    demo.deploy(first, reason="rollback")
    assert demo.model(cls).champion_run_id == first.id
    # with auto_deploy off, an approved run waits for a person
    demo.configure_training(cls, auto_deploy=False)
    again = demo.train(cls, hyperparameters=GOOD).wait(timeout=120)
    assert again.approvals[-1]["decision"] == "approve" and demo.model(cls).champion_run_id == first.id


@pytest.mark.slow
def test_cancel_stops_a_run_and_the_next_one_succeeds(demo, seg):
    handle = demo.train(seg, hyperparameters=LONG)
    _wait_until_running(handle)
    run = handle.cancel()
    assert run.status == "cancelled" and run.error == "cancelled by the user"
    assert handle.wait(timeout=10).status == "cancelled"
    assert demo.train(seg, hyperparameters=TINY).wait(timeout=120).status == "succeeded"


@pytest.mark.slow
def test_a_failing_model_factory_fails_the_run_with_its_reason(demo, seg):
    def broken(in_channels, num_classes):
        raise RuntimeError("this factory is broken on purpose")

    demo.register_model_code("broken", broken)
    demo.configure_training(seg, model_code="broken")
    run = demo.train(seg, hyperparameters=TINY).wait(timeout=120)
    assert run.status == "failed"
    assert "this factory is broken on purpose" in run.error and "Traceback" in run.traceback
    demo.configure_training(seg, model_code="")  # back to the built-in U-Net
    assert demo.train(seg, hyperparameters=TINY).wait(timeout=120).status == "succeeded"


@pytest.mark.slow
def test_a_killed_worker_fails_the_run_and_the_project_survives(demo, seg):
    handle = demo.train(seg, hyperparameters=LONG)
    _wait_until_running(handle)
    os.kill(demo.session.run_record(handle.id)["worker"]["pid"], signal.SIGKILL)
    run = handle.wait(timeout=30)
    assert run.status == "failed" and "SIGKILL" in run.error and "out of memory" in run.error
    assert demo.status_counts(seg)["labeled"] > 0  # the project is intact
    assert demo.train(seg, hyperparameters=TINY).wait(timeout=120).status == "succeeded"


@pytest.mark.slow
def test_registered_model_code_and_train_step_replace_the_network(demo, seg):
    def tiny_net(in_channels, num_classes):
        from torch import nn

        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))

    def my_step(model, images, targets, optimizer):
        from torch.nn import functional as F

        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        print("custom step", flush=True)
        return float(loss)

    demo.register_model_code("tiny-net", tiny_net, train_step=my_step)
    demo.configure_training(seg, model_code="tiny-net")
    run = demo.train(seg, hyperparameters={"steps": 4, "image_size": 32}).wait(timeout=120)
    assert run.status == "succeeded", run.traceback
    assert run.spec["architecture"] == "code:tiny-net"
    assert "custom step" in demo.run_log(run)
    ex = demo.examples(seg, status="unlabeled", limit=1)[0]
    assert demo.predict(seg, ex).mask.shape == ex.shape  # deploy and predict work the same
    with pytest.raises(pml.NotFoundError):
        demo.configure_training(seg, model_code="nonexistent")
    with pytest.raises(pml.ValidationError, match="compile"):
        demo.register_model_code("bad", "def build(:\n")


@pytest.mark.slow
def test_search_space_trains_trials_and_keeps_the_best(demo, cls):
    demo.configure_training(
        cls,
        hyperparameters=TINY,
        search_space={"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        max_trials=2,
    )
    run = demo.train(cls).wait(timeout=120)
    assert run.status == "succeeded", run.traceback
    assert [t["trial"] for t in run.trials] == [1, 2]
    best = max(run.trials, key=lambda t: t["val"]["balanced_accuracy"])
    assert run.hyperparameters["lr"] == pytest.approx(best["hyperparameters"]["lr"])
    assert {h["trial"] for h in run.history} == {1, 2}


@pytest.mark.slow
def test_retrain_policy_starts_a_run_after_new_labels(demo, cls):
    demo.configure_training(cls, hyperparameters=TINY)
    first = demo.train(cls).wait(timeout=120)
    demo.set_retrain_policy(cls, after_labels=2)
    unlabeled = demo.examples(cls, status="unlabeled", limit=3)
    demo.submit_label(unlabeled[0], classes=[0])
    demo.save_label(unlabeled[2], classes=[0])  # drafts do not count
    assert [r.id for r in demo.runs(cls)] == [first.id]
    demo.submit_label(unlabeled[1], classes=[1])
    runs = demo.runs(cls)
    assert len(runs) == 2 and runs[1].trigger == "retrain policy: 2 new labels"
    from patientml_widgets.runs import RunHandle

    retrained = RunHandle(demo, runs[1].id).wait(timeout=120)
    assert retrained.status == "succeeded"
    assert len(retrained.snapshot["train"]) + len(retrained.snapshot["val"]) + len(retrained.snapshot["test"]) == (
        sum(len(items) for items in first.snapshot.values()) + 2
    )


@pytest.mark.slow
def test_the_same_run_under_torchrun_with_ddp(demo, seg):
    run = demo.train(seg, hyperparameters=TINY, processes=2).wait(timeout=180)
    assert run.status == "succeeded", (run.error, demo.run_log(run)[-2000:])
    assert run.distributed == {"world_size": 2, "backend": "gloo", "nodes": 1}
    assert run.metrics["test"]["n"] == len(run.snapshot["test"]) and run.artifact_ref


@pytest.mark.slow
def test_the_same_run_on_two_nodes_rendezvous_by_address(demo, seg):
    import socket
    import subprocess

    with socket.socket() as s:  # a free port for node 0's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    local = demo.train(seg, hyperparameters=TINY).wait(timeout=180)
    handle = demo.train(seg, hyperparameters=TINY, nodes=2, rendezvous=f"127.0.0.1:{port}")
    command = handle.node_command(1)
    assert "--node-rank=1" in command and f"--master-port={port}" in command
    other = subprocess.run(command, capture_output=True, text=True, timeout=180)  # node 1, as another machine would
    run = handle.wait(timeout=180)
    assert run.status == "succeeded", (run.error, demo.run_log(run)[-2000:], other.stdout[-2000:])
    assert other.returncode == 0, other.stderr[-2000:]
    assert run.distributed == {"world_size": 2, "backend": "gloo", "nodes": 2}

    # the record has the shape of a local run's
    def shape(r):
        record = demo.session.run_record(r.id)
        return {k: sorted(v) if isinstance(v, dict) else type(v).__name__ for k, v in record.items()}

    ignore = {"distributed", "worker", "champion", "trigger", "approvals", "model_card"}  # a card: on deploy
    assert {k: v for k, v in shape(run).items() if k not in ignore} == {
        k: v for k, v in shape(local).items() if k not in ignore
    }
    with pytest.raises(pml.ValidationError, match="rendezvous"):
        demo.train(seg, hyperparameters=TINY, nodes=2)
    with pytest.raises(pml.ValidationError, match="node_rank"):
        handle.node_command(2)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_tampered_artifacts_are_refused_and_never_unpickled(tmp_path):
    import io
    import pickle

    import torch

    from patientml_widgets.training.trainer import load_state_dict

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "payload": Evil()}, buf)
    with pytest.raises(ValueError, match="not a plain state dict"):
        load_state_dict(buf.getvalue())
    with pytest.raises(ValueError, match="not a plain state dict"):
        load_state_dict(pickle.dumps(Evil()))
    buf = io.BytesIO()
    torch.save([torch.zeros(1)], buf)
    with pytest.raises(ValueError, match="not a plain state dict"):
        load_state_dict(buf.getvalue())
    assert not marker.exists()


def test_training_asks_for_torch_when_it_is_missing(demo, seg, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(pml.PatientMLError, match=r"pip install torch==2\.13\.0"):
        demo.train(seg)
    assert demo.runs(seg) == []


def test_bad_training_settings_are_refused(demo, seg):
    with pytest.raises(pml.ValidationError, match="unknown hyperparameters"):
        demo.train(seg, hyperparameters={"learning_rate": 0.1})
    with pytest.raises(pml.ValidationError, match="0 \\(auto\\) or more"):
        demo.configure_training(seg, hyperparameters={"steps": -1})
    with pytest.raises(pml.ValidationError, match="precision"):
        demo.configure_training(seg, hyperparameters={"precision": "fp8"})
    with pytest.raises(pml.ValidationError, match="budget"):
        demo.configure_training(seg, budget="soon")
    with pytest.raises(pml.ValidationError, match="fp16 is for CUDA"):
        demo.train(seg, hyperparameters={"precision": "fp16"})  # refused before a run is recorded
    with pytest.raises(pml.ValidationError, match="not a segmentation metric"):
        demo.configure_training(seg, objective="balanced_accuracy")
    with pytest.raises(pml.ValidationError, match="direction"):
        demo.configure_training(seg, direction="up")
    with pytest.raises(pml.ValidationError, match="deployed run"):
        demo.predict(seg, demo.examples(seg, limit=1)[0])
    assert demo.runs(seg) == []


def test_a_model_without_enough_labels_cannot_train(project):
    model = project.create_model("m", problem_type="segmentation", classes=["bg", "fg"])
    with pytest.raises(pml.ValidationError, match="no submitted labels"):
        project.train(model)


def test_training_is_deterministic_given_a_seed():
    import torch

    from patientml_widgets.demo import lesion_sample
    from patientml_widgets.training import data, trainer
    from patientml_widgets.training.spec import TrainSpec

    samples = [lesion_sample(i, size=32) for i in range(12)]
    spec = TrainSpec.build(
        "segmentation",
        TINY,
        canvas=[32, 32],
        patch=[32, 32],
        num_classes=3,
        in_channels=3,
        normalization={"scheme": "zscore"},
        eval_every=2,
        depth=3,
        lr=3e-3,
        budget_s=600,
    )
    train = data.prepare([s[0] for s in samples[:8]], [s[1] for s in samples[:8]], spec)
    val = data.prepare([s[0] for s in samples[8:]], [s[1] for s in samples[8:]], spec)
    one = trainer.fit(spec, train, val)
    two = trainer.fit(spec, train, val)
    assert one.history == two.history and one.steps == two.steps == 4
    assert all(torch.equal(one.state_dict[k], two.state_dict[k]) for k in one.state_dict)
    other = trainer.fit(TrainSpec.build("segmentation", {**spec.to_dict(), "seed": 1}, num_classes=3), train, val)
    assert any(not torch.equal(one.state_dict[k], other.state_dict[k]) for k in one.state_dict)


@pytest.mark.slow
def test_multi_label_classification_run(demo):
    from patientml_widgets.demo import lesion_sample

    model = demo.create_model(
        "Findings", problem_type="classification", classes=["irregular", "keratotic", "large"], multi_label=True
    )
    images, labels = [], []
    for i in range(60):
        image, mask, kind = lesion_sample(i, size=32)
        images.append(image)
        labels.append([c for c, on in enumerate([kind == 1, kind == 2, (mask > 0).mean() > 0.12]) if on])
    examples = demo.add_examples(model, images, subjects=[f"p{i % 20}" for i in range(60)])
    with demo.batch():
        for ex, classes in zip(examples, labels):
            demo.submit_label(ex, classes=classes)
    run = demo.train(model, hyperparameters={**TINY, "steps": 30}).wait(timeout=120)
    assert run.status == "succeeded", run.traceback
    assert set(run.metrics["test"]) >= {"subset_accuracy", "f1_macro", "auroc", "precision", "recall"}
    prediction = demo.predict(model, examples[0])
    assert list(prediction.probabilities) == ["irregular", "keratotic", "large"]
    assert all(0 <= p <= 1 for p in prediction.probabilities.values())


def test_a_retrain_policy_that_cannot_start_warns_and_keeps_the_label(demo, cls, monkeypatch):
    demo.set_retrain_policy(cls, after_labels=1)
    monkeypatch.setitem(sys.modules, "torch", None)
    ex = demo.examples(cls, status="unlabeled", limit=1)[0]
    with pytest.warns(UserWarning, match="could not start a run"):
        demo.submit_label(ex, classes=[0])
    assert demo.example(ex).status == "labeled" and demo.runs(cls) == []
