"""The training worker: ``python -m patientml_widgets.worker PROJECT_DIR RUN_ID``.

Started by the kernel side (``runs.py``) in a new process, so the kernel stays responsive, a
cancel is real and a crash or out-of-memory fails the run, not the kernel. It is a client of
the session layer like any other: it loads the run's frozen snapshot, trains
(``training.trainer``), evaluates the run and the current champion on the same test examples,
applies the promotion rule, writes everything into the store as it goes and, when it deployed
the run, predicts every example of the model so the labeling queue's orders are instant.
Under ``torchrun`` every process trains its share and rank 0 records.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from .errors import NotFoundError, StoreError, ValidationError
from .model_code import load_model_code
from .policy import RULES, check_volume_model, promotion_decision
from .predictions import Predictions
from .records import Model
from .session import Session
from .store import Store, now

__all__ = ["SplitData", "load_split", "main", "work"]

PROGRESS_EVERY_S = 0.5
#: fields of a resolved spec that are not hyperparameters (fixed by the data or the model)
_NOT_HYPERPARAMETERS = frozenset(
    {"problem_type", "num_classes", "multi_label", "in_channels", "objective", "extra", "normalization",
     "class_weights", "fit"}
)  # fmt: skip
_VOLUME_FIELDS = frozenset({"volume_mode", "context", "context_stride", "spacing"})


class Reporter:
    """What the trainer reports back: progress (throttled), epochs, and whether to stop."""

    def __init__(self, session: Session, run_id: str, *, silent: bool = False) -> None:
        self.session, self.run_id, self.silent = session, run_id, silent
        self._last_progress = 0.0
        self._last_cancel_check = 0.0

    def should_stop(self) -> bool:
        if self.silent:  # other ranks stop when rank 0's process group goes away
            return False
        now_s = time.monotonic()
        if now_s - self._last_cancel_check < 0.2:
            return False
        self._last_cancel_check = now_s
        return bool(self.session.run_record(self.run_id).get("cancel_requested"))

    def on_step(self, progress: dict[str, Any], trial: int | None = None) -> None:
        now_s = time.monotonic()
        if self.silent or (now_s - self._last_progress < PROGRESS_EVERY_S and progress["step"] < progress["steps"]):
            return
        self._last_progress = now_s
        self.session.update_run(self.run_id, progress=progress if trial is None else {**progress, "trial": trial})

    def on_epoch(self, record: dict[str, Any], trial: int | None = None) -> None:
        if not self.silent:
            self.session.append_to_run(self.run_id, "history", record if trial is None else {**record, "trial": trial})

    def record(self, **fields: Any) -> None:
        if not self.silent:
            self.session.update_run(self.run_id, **fields)


# -- the data ---------------------------------------------------------------------------


class SplitData:
    """One split of a snapshot as arrays: images as stored, targets as class positions.

    Volumes are (Z, Y, X) with (Z, Y, X) targets and their ``spacings`` (dz, dy, dx); ``is_volume`` of
    each example is kept so that a model mixing volumes and 2-D images can be refused.
    """

    def __init__(self) -> None:
        self.images: list[Any] = []
        self.targets: list[Any] = []
        self.example_ids: list[str] = []
        self.modalities: list[str] = []
        self.spacings: list[Any] = []
        self.is_volume: list[bool] = []
        self.records: list[dict[str, Any]] = []  #: the example records (their subject, source, ...)
        self._cache: dict[str, Any] = {}

    def prepared(self, spec) -> Any:
        """The split on a resolved spec's canvas (cached per canvas, channels and normalisation).

        2.5-D: the slices that are samples (:func:`~.training.plan.volume_samples`) with their neighbours.
        """
        from .training import data
        from .training.plan import central_slices, volume_samples

        key = json.dumps(
            [spec.canvas, spec.fit, spec.in_channels, spec.normalization, spec.problem_type, spec.multi_label,
             spec.volume_mode, spec.context, spec.context_stride, spec.spacing],
            sort_keys=True,
        )  # fmt: skip
        if key not in self._cache:
            if spec.volume_mode:
                if spec.problem_type == "segmentation":
                    samples = [volume_samples(t) for t in self.targets]
                else:  # a volume's class: seen through its central slices
                    samples = [central_slices(int(v.shape[0])) for v in self.images]
                self._cache[key] = data.prepare_volumes(self.images, self.targets, self.spacings, samples, spec)
            else:
                self._cache[key] = data.prepare(self.images, self.targets, spec)
        return self._cache[key]


def load_split(session: Session, model: Model, items: list[list[Any]]) -> SplitData:
    """Load the frozen (example id, label version) pairs of one split, in the order of the images'
    content (not of their random ids: the same data trains the same way in any project).
    """
    records = {}
    for example_id, _ in items:
        with contextlib.suppress(NotFoundError):  # deleted since the snapshot: skipped below
            records[example_id] = session.example_record(example_id)
    order = sorted(items, key=lambda item: (records.get(item[0], {}).get("image_ref", ""), item[0]))
    data = SplitData()
    targets = _Targets(model)
    for example_id, version in order:
        if example_id not in records:
            print(f"skipped {example_id}: deleted since the snapshot", flush=True)
            continue
        event = session.label_at(example_id, version)
        if event is None:
            print(f"skipped {example_id}: label version {version} is not in the audit trail", flush=True)
            continue
        target = targets.of(session, event)
        if target is None:
            print(f"skipped {example_id}: its label uses a class the model no longer has", flush=True)
            continue
        data.images.append(session.image(example_id))
        data.targets.append(target)
        data.example_ids.append(example_id)
        data.modalities.append(str((records[example_id].get("source") or {}).get("modality") or ""))
        data.spacings.append(records[example_id].get("spacing"))
        data.is_volume.append(records[example_id].get("depth") is not None)
        data.records.append(records[example_id])
    return data


class _Targets:
    """A label event as a training target: class positions (a map for masks, a vector for multi-label)."""

    def __init__(self, model: Model) -> None:
        import numpy as np

        self.model = model
        self.positions = {c.index: i for i, c in enumerate(model.classes)}
        self.lut = np.full(256, -1, dtype=np.int64)
        for index, position in self.positions.items():
            self.lut[index] = position

    def of(self, session: Session, event: dict[str, Any]) -> Any:
        import numpy as np

        if self.model.problem_type == "segmentation":
            mask = self.lut[session.mask_blob(event["mask_ref"])]
            return None if (mask < 0).any() else mask
        known = [self.positions[c] for c in event["classes"] if c in self.positions]
        if len(known) != len(event["classes"]) or (not self.model.multi_label and len(known) != 1):
            return None
        if not self.model.multi_label:
            return known[0]
        target = np.zeros(len(self.positions), dtype=np.float32)
        target[known] = 1
        return target


# -- the run ----------------------------------------------------------------------------


@dataclass
class Context:
    """What a run trains on and with: built once, then passed through the steps."""

    run: dict[str, Any]
    model_record: dict[str, Any]
    model: Model
    config: dict[str, Any]
    data: dict[str, SplitData]
    fixed: dict[str, Any]
    factory: Any = None
    train_step: Any = None
    hardware: Any = None
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return str(self.config.get("direction", "max"))


def load_context(session: Session, run_id: str) -> Context:
    """The run, its model and config, the snapshot's splits and the model code."""
    run = session.run_record(run_id)
    model_record = session.model_record(run["model_id"])
    model = Model.from_record(model_record)
    config = model_record.get("training") or {}
    data = {split: load_split(session, model, run["snapshot"].get(split, [])) for split in ("train", "val", "test")}
    if not data["train"].images:
        raise ValidationError("the snapshot has no training examples")
    flags = [v for split in data.values() for v in split.is_volume]
    check_volume_model(model.problem_type, sum(flags), len(flags) - sum(flags))
    volume = any(flags)
    in_channels = 3 if not volume and any(img.ndim == 3 for img in data["train"].images) else 1
    factory, train_step, code_meta = load_model_code(session, config.get("model_code"), "train it")
    fixed: dict[str, Any] = {"num_classes": len(model.classes), "multi_label": model.multi_label}
    fixed["in_channels"] = in_channels
    if code_meta:
        fixed["architecture"] = f"code:{code_meta['name']}"
    if config.get("objective"):
        fixed["objective"] = config["objective"]
    return Context(run, model_record, model, config, data, fixed, factory, train_step)


def candidates(ctx: Context) -> list[Any]:
    """The specs to train: the run's own, or one per trial of the search space."""
    from .training.search import sample_trials
    from .training.spec import TrainSpec

    layers = [
        {"budget_s": ctx.config.get("budget_s", 0)},
        ctx.config.get("hyperparameters"),
        ctx.run.get("hyperparameters"),
    ]
    base = TrainSpec.build(ctx.model.problem_type, *layers, **ctx.fixed)
    space = ctx.config.get("search_space") or {}
    if not space:
        return [base]
    draws = sample_trials(space, int(ctx.config.get("max_trials") or 4), seed=base.seed)
    return [TrainSpec.build(ctx.model.problem_type, base.to_dict(), draw, **ctx.fixed) for draw in draws]


def prepare_machine(ctx: Context, base, reporter: Reporter) -> None:
    """Choose device, precision and threads for this machine; fingerprint the training data."""
    import torch

    from .training import hardware, trainer
    from .training.plan import fingerprint

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    ctx.hardware = hardware.detect(base.precision, processes_here=local_processes)
    torch.set_num_threads(ctx.hardware.threads)
    trainer.make_deterministic()
    train = ctx.data["train"]
    ctx.fingerprint = fingerprint(
        train.images,
        train.targets,
        problem_type=ctx.model.problem_type,
        num_classes=len(ctx.model.classes),
        modalities=train.modalities,
        spacings=train.spacings if all(train.is_volume) else None,
    )
    reporter.record(fingerprint=ctx.fingerprint, hardware=ctx.hardware.to_dict())
    hw = ctx.hardware
    print(f"[{now()}] {hw.device}, {hw.precision} ({hw.reason}), {hw.threads} threads", flush=True)


def train_candidates(ctx: Context, specs: list[Any], reporter: Reporter) -> tuple[Any, Any, dict[str, Any]]:
    """Train each candidate; the best on the validation objective wins: ``(spec, result, plan)``."""
    from .training import trainer

    direction = ctx.config.get("direction", "max")
    sign = 1 if direction == "max" else -1
    best = None
    trials = []
    for number, candidate in enumerate(specs, start=1):
        trial = number if len(specs) > 1 else None
        spec, plan = trainer.resolve(candidate, ctx.fingerprint, ctx.hardware)
        if len(specs) > 1 and spec.budget_s:  # a search shares the budget between its trials
            spec.budget_s = plan["budget_s"] = round(spec.budget_s / len(specs), 1)
        reporter.record(plan=plan, progress={"phase": "training", "trial": trial, "steps": spec.steps})
        print(f"[{now()}] plan: {plan}", flush=True)
        result = trainer.fit(
            spec,
            ctx.data["train"].prepared(spec),
            ctx.data["val"].prepared(spec),
            device=ctx.hardware.device,
            factory=ctx.factory,
            train_step=ctx.train_step,
            on_step=functools.partial(reporter.on_step, trial=trial),
            on_epoch=functools.partial(reporter.on_epoch, trial=trial),
            should_stop=reporter.should_stop,
            direction=direction,
        )
        score = result.val_metrics.get(spec.objective)
        if trial is not None:
            trials.append({"trial": trial, "hyperparameters": hyperparameters(spec), "val": {spec.objective: score}})
            reporter.record(trials=trials)
        if best is None or (score is not None and (best[3] is None or sign * score > sign * best[3])):
            best = (spec, result, plan, score)
    assert best is not None
    return best[0], best[1], best[2]


def test_and_judge(session: Session, ctx: Context, spec, result) -> tuple[dict[str, Any], str, str, bytes]:
    """Evaluate on the test split next to the champion, with intervals, and apply the promotion rule.

    Returns the fields to record (metrics, evaluation, thresholds...), the decision, its reason and the weights.
    """
    from .interactive.clicker import click_scores
    from .training import trainer

    net = trainer.build_model(spec, ctx.factory)
    net.load_state_dict(result.state_dict)
    net.to(ctx.hardware.device)
    test = ctx.data["test"]
    test_metrics, outputs = score(net, spec, test, device=ctx.hardware.device)
    if spec.guidance:  # the interactive use: the standard clicker on the test masks' objects
        started = time.perf_counter()
        propose = functools.partial(
            trainer.propose_prepared, net, spec, test.prepared(spec), device=ctx.hardware.device
        )
        test_metrics.update(click_scores(propose, test.targets))
        clicked = test_metrics.get("click_objects", 0)
        print(f"[{now()}] clicked {clicked} test objects in {time.perf_counter() - started:.1f} s", flush=True)
    champion: dict[str, Any] = {}
    champion_outputs = None
    champion_id = ctx.model.champion_run_id
    if champion_id and champion_id != ctx.run["id"]:
        champion, champion_outputs = evaluate_champion(session, ctx.model, champion_id, test)
    started = time.perf_counter()
    evaluation = evaluate_run(session, ctx, spec, test_metrics, outputs, champion, champion_outputs)
    print(f"[{now()}] evaluated with intervals in {time.perf_counter() - started:.1f} s", flush=True)
    fields = {
        "metrics": {
            "val": result.val_metrics,
            "test": test_metrics,
            "best_epoch": result.best_epoch,
            "best_step": result.best_step,
        },
        "test_examples": per_example_scores(spec, outputs, test.targets, test.example_ids),
        "champion": champion,
        "evaluation": evaluation,
    }
    point = ctx.config.get("operating_point")
    if point and spec.problem_type != "segmentation":
        fields["thresholds"] = choose_thresholds(net, spec, ctx, point, outputs)
    champion_score = (champion.get("metrics") or {}).get("test", {}).get(spec.objective) if champion else None
    decision, reason = promotion_decision(
        spec.objective,
        ctx.direction,
        float(ctx.config.get("min_margin", 0.0)),
        test_metrics.get(spec.objective),
        champion_score,
        rule=ctx.config["rule"] if ctx.config.get("rule") in RULES else "margin",
        evaluation=evaluation,
    )
    return fields, decision, reason, trainer.save_state_dict(net)


def score(net, spec, split: SplitData, *, device: Any = "cpu", precision: str | None = None) -> tuple[dict, Any]:
    """A network's metrics on a split and its outputs (probabilities, or predicted label maps / volumes)."""
    from .training import trainer

    if spec.volume_mode:  # whole volumes: Dice over every voxel and HD95 in mm, or one class per volume
        return trainer.evaluate_volumes(
            net, spec, split.images, split.targets, split.spacings, device=device, precision=precision
        )
    return trainer.evaluate(net, spec, split.prepared(spec), device=device, precision=precision, masks=split.targets)


def evaluate_run(
    session: Session, ctx: Context, spec, metrics: dict[str, Any], outputs: Any, champion: dict, champion_outputs: Any
) -> dict[str, Any]:
    """The paired bootstrap over test subjects of every test metric, of the difference with the champion,
    per subgroup, and the calibration (classification): the run's ``evaluation``.
    """
    from . import evaluation

    test = ctx.data["test"]
    k = len(ctx.model.classes)
    if not test.example_ids:
        return {"note": "the test split is empty: nothing to evaluate"}

    def stats(output: Any, recorded: dict[str, Any]) -> dict[str, Any]:
        out = output.numpy() if hasattr(output, "numpy") else output
        hd95 = recorded.get("hd95_per_volume")
        hd95 = hd95 if isinstance(hd95, list) and len(hd95) == len(test.targets) else None
        return evaluation.statistics(spec.problem_type, out, test.targets, k, multi_label=spec.multi_label, hd95=hd95)

    try:
        ours = stats(outputs, metrics)
    except ValidationError as e:  # the network gave NaN: the run is judged (and rejected) on its metrics alone
        return {"note": f"no intervals: {e}"}
    theirs, champion_note = None, ""
    if champion_outputs is not None:
        try:
            theirs = stats(champion_outputs, champion["metrics"]["test"])
        except ValidationError as e:
            champion_note = f"the champion is not compared with intervals: {e}"
    subjects = [r.get("subject_id") or r["id"] for r in test.records]
    people: dict[str, dict[str, Any]] = {}
    for subject_id in {str(s) for s in subjects}:
        with contextlib.suppress(NotFoundError, StoreError):
            people[subject_id] = session.subject_record(subject_id)
    fields = ctx.config.get("subgroups")
    fields = [f for f in fields if isinstance(f, str)] if isinstance(fields, list) else evaluation.SUBGROUP_FIELDS
    out = evaluation.evaluate(
        ours, subjects, theirs, objective=spec.objective, direction=ctx.direction,
        subgroups=evaluation.groups(fields, test.records, people), seed=spec.seed,
    )  # fmt: skip
    if champion_note:
        out["note"] = champion_note
    if spec.problem_type != "segmentation":
        proba = outputs.numpy() if hasattr(outputs, "numpy") else outputs
        out["calibration"] = evaluation.calibration(proba, test.targets, multi_label=spec.multi_label)
    return out


def choose_thresholds(net, spec, ctx: Context, point: Any, test_outputs: Any) -> dict[str, Any]:
    """Per-class operating thresholds chosen on the validation split, and what they give on the test split."""
    import numpy as np

    from . import evaluation

    names = [c.name for c in ctx.model.classes]
    val = ctx.data["val"]
    _, val_outputs = score(net, spec, val, device=ctx.hardware.device)
    val_proba = np.asarray(val_outputs, np.float64)
    if not np.isfinite(val_proba).all():
        return {"point": point, "classes": {}, "note": "no thresholds: the validation probabilities hold NaN"}
    chosen = evaluation.operating_thresholds(val_proba, val.targets, names, point, multi_label=spec.multi_label)
    test = ctx.data["test"]
    if not test.example_ids:
        return chosen
    proba = np.asarray(test_outputs)
    k = len(names)
    truth = (
        np.asarray(test.targets, bool).reshape(len(proba), k)
        if spec.multi_label
        else np.eye(k, dtype=bool)[np.asarray(test.targets, np.int64)]
    )
    chosen["test"] = {
        name: evaluation.sensitivity_specificity(proba[:, names.index(name)], truth[:, names.index(name)], t)
        for name, t in chosen["classes"].items()
        if name in chosen["val"]
    }
    return chosen


def train_and_evaluate(session: Session, run_id: str, reporter: Reporter) -> str:
    """The body of a run: data, plan, (search and) fit, test next to the champion, decision, artifact.

    A silent reporter (the other ranks of a distributed run) only trains.
    """
    ctx = load_context(session, run_id)
    specs = candidates(ctx)
    prepare_machine(ctx, specs[0], reporter)
    spec, result, plan = train_candidates(ctx, specs, reporter)
    if reporter.silent:
        return "trained (not recording: not rank 0)"
    training = {"steps": result.steps, "best_step": result.best_step, "stopped": result.stopped}
    reporter.record(
        spec=spec.to_dict(),
        plan=plan,
        training={**training, "seconds": round(result.seconds, 2)},
        hyperparameters=hyperparameters(spec),
        classes=ctx.model_record["classes"],
        progress={"phase": "evaluating"},
    )
    fields, decision, reason, weights = test_and_judge(session, ctx, spec, result)
    approval = {"decision": decision, "actor": "system", "reason": reason, "time": now()}
    deploy = decision == "approve" and ctx.config.get("auto_deploy", True)
    with session.write():  # the result, the decision and the deployment: one commit
        record = session.run_record(run_id)
        session.store_artifact(
            run_id,
            weights,
            status="succeeded",
            ended=now(),
            approvals=[*record.get("approvals", []), approval],
            progress={"phase": "done", "seconds": round(result.seconds, 2)},
            **fields,
        )
        if deploy:
            session.deploy(run_id, actor="system", reason="approved by the promotion rule (auto_deploy)")
    if deploy:
        predict_after_deploy(session, ctx.model.id, run_id)
    else:  # what RunDetails shows of the run: its worst test examples, predicted
        predict_after_deploy(session, ctx.model.id, run_id, ids=[e["example_id"] for e in worst(fields)])
    return f"{decision}: {reason}"


def worst(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The test examples the run did worst on (``test_examples`` is sorted worst first)."""
    from .evaluation import WORST

    return list(fields.get("test_examples") or [])[:WORST]


def predict_after_deploy(session: Session, model_id: str, run_id: str, *, ids: list[str] | None = None) -> None:
    """Store the new champion's prediction of every example (the queue's orders are then instant), or the
    run's prediction of ``ids``.

    Best effort: the run has succeeded; what is not predicted here is predicted when the kernel first needs it.
    """
    try:
        count = Predictions(session).predict_all(model_id, run_id, ids=ids)
        print(f"[{now()}] predicted {count} examples with {'the new champion' if ids is None else 'the run'}",
              flush=True)  # fmt: skip
    except Exception:
        print(f"[{now()}] predicting after deploy failed (the kernel predicts on demand):", flush=True)
        print(traceback.format_exc(), flush=True)


def evaluate_champion(session: Session, model: Model, champion_id: str, test: SplitData) -> tuple[dict[str, Any], Any]:
    """The champion's metrics on the challenger's test examples (or why it could not be compared), and its
    outputs (None when it could not be scored).
    """
    from .interactive.clicker import click_scores
    from .training import trainer

    try:
        predictor = Predictions(session).predictor(champion_id)
    except Exception as e:
        return {"run_id": champion_id, "error": f"the champion could not be loaded: {e}"}, None
    if predictor.class_indices != [c.index for c in model.classes]:
        return {"run_id": champion_id, "error": "the class vocabulary changed since the champion was trained"}, None
    volumes = all(test.is_volume) if test.is_volume else predictor.volumes  # an empty split: nothing to score
    if volumes != predictor.volumes:
        kind = "volumes" if predictor.volumes else "2-D images"
        return {
            "run_id": champion_id,
            "error": f"the champion was trained on {kind}; it cannot be scored on these",
        }, None
    metrics, outputs = score(predictor.net, predictor.spec, test, precision=predictor.precision)
    if predictor.guided and not volumes:  # scored the same way on the same objects
        prepared = test.prepared(predictor.spec)
        propose = functools.partial(
            trainer.propose_prepared, predictor.net, predictor.spec, prepared, precision=predictor.precision
        )
        metrics.update(click_scores(propose, test.targets))
    return {"run_id": champion_id, "metrics": {"test": metrics}}, outputs


def hyperparameters(spec) -> dict[str, Any]:
    """The hyperparameters of a resolved spec (what a user could set), as recorded on the run.

    The 2.5-D settings (neighbouring slices) only for a run trained on volumes; click guidance only for
    segmentation.
    """
    left_out = _NOT_HYPERPARAMETERS | (_VOLUME_FIELDS if not spec.volume_mode else {"volume_mode", "spacing"})
    if spec.problem_type != "segmentation":
        left_out |= {"guidance"}
    return {k: v for k, v in spec.to_dict().items() if k not in left_out} | dict(spec.extra)


def per_example_scores(spec, outputs, targets, example_ids) -> list[dict[str, Any]]:
    """A score per test example (Dice for segmentation, probability of the truth otherwise), worst first.

    ``outputs``: predicted label maps (segmentation) or probabilities (classification).
    """
    import numpy as np

    from .training.metrics import segmentation_metrics

    out = []
    for i, example_id in enumerate(example_ids):
        if spec.problem_type == "segmentation":
            score = segmentation_metrics(np.asarray(targets[i]), outputs[i], spec.num_classes)["dice_mean"]
        elif spec.multi_label:
            score = float(1 - np.abs(outputs[i].numpy() - np.asarray(targets[i])).mean())
        else:
            score = float(outputs[i, int(targets[i])])
        out.append({"example_id": example_id, "score": round(float(score), 5)})
    return sorted(out, key=lambda e: e["score"])


# -- the process ------------------------------------------------------------------------


def work(session: Session, run_id: str) -> None:
    """Train, evaluate and judge one run, writing every step into the store."""
    from .training import trainer

    def cancelled(signum, frame):
        raise trainer.Cancelled

    signal.signal(signal.SIGTERM, cancelled)
    layout = {k: v for k, v in (session.run_record(run_id).get("worker") or {}).items() if k not in ("pid", "host")}
    worker = {"pid": os.getpid(), "host": socket.gethostname(), **layout}
    session.update_run(run_id, status="running", started=now(), worker=worker)
    print(f"[{now()}] run {run_id} started in process {os.getpid()}", flush=True)
    try:
        result = train_and_evaluate(session, run_id, Reporter(session, run_id))
    except trainer.Cancelled:
        session.finish_run(run_id, "cancelled", error="cancelled by the user")
        print(f"[{now()}] cancelled", flush=True)
        return
    except BaseException as e:
        session.finish_run(run_id, "failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        print(traceback.format_exc(), flush=True)
        raise SystemExit(1) from None
    print(f"[{now()}] finished: {result}", flush=True)


def work_distributed(session: Session, run_id: str) -> None:
    """One of several torchrun processes: all train their share; rank 0 records everything."""
    from .training import trainer

    rank, world, backend = trainer.init_distributed()
    try:
        if rank == 0:
            nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
            session.update_run(run_id, distributed={"world_size": world, "backend": backend, "nodes": nodes})
            work(session, run_id)
        else:
            with contextlib.suppress(trainer.Cancelled):  # rank 0 records the cancellation; exit cleanly
                train_and_evaluate(session, run_id, Reporter(session, run_id, silent=True))
    finally:
        trainer.shutdown_distributed()


def main(argv: list[str] | None = None) -> None:
    """Worker entry point; under torchrun each process joins a gloo/NCCL process group (DDP)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m patientml_widgets.worker PROJECT_DIR RUN_ID")
    session = Session(Store(args[0], create=False), user="trainer", system=True)  # started by a developer
    try:
        session.run_record(args[1])
    except NotFoundError as e:
        raise SystemExit(str(e)) from None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        work_distributed(session, args[1])
    else:
        work(session, args[1])


if __name__ == "__main__":
    main()
