"""Training runs: start a worker process, watch it, cancel it, and the worker itself.

``Project.train`` records a queued run (with its frozen snapshot) and starts
``python -m patientml_widgets.runs PROJECT RUN_ID`` in a new process, so the kernel
stays responsive, a cancel is real and a crash or out-of-memory fails the run, not
the kernel. The worker loads the snapshot, trains (``training.trainer``), evaluates
the run and the current champion on the same test examples, applies the promotion
rule and writes everything into the store as it goes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError, ValidationError
from .records import Model, Run
from .store import now

if TYPE_CHECKING:
    from .project import Project

__all__ = ["RunHandle", "promotion_decision", "start_run"]

CANCEL_GRACE_S = 1.5
PROGRESS_EVERY_S = 0.5


class RunHandle:
    """A run being trained. ``wait()``, ``cancel()``, and the run's latest record as attributes."""

    def __init__(self, project: Project, run_id: str, process: subprocess.Popen | None = None) -> None:
        self.project = project
        self.id = run_id
        self._process = process
        self._watcher: threading.Thread | None = None
        if process is not None:
            self._watcher = threading.Thread(target=self._watch, name=f"watch {run_id}", daemon=True)
            self._watcher.start()

    def __repr__(self) -> str:
        run = self.run
        step = f" step {run.progress['step']}/{run.progress['steps']}" if run.progress.get("step") else ""
        return f"<RunHandle {run.slug} {run.status}{step}>"

    @property
    def run(self) -> Run:
        return self.project.run(self.id)

    def __getattr__(self, name: str) -> Any:  # status, metrics, progress, ... from the latest record
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.run, name)

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run has finished (or ``timeout`` seconds); return its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run
            if run.finished and (self._watcher is None or not self._watcher.is_alive()):
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run.slug} is still {run.status} after {timeout} s")
            time.sleep(0.1)

    def cancel(self) -> Run:
        """Stop the run (within about 2 s); it ends as cancelled."""
        return cancel_run(self.project, self.id, self._process)

    def node_command(self, node_rank: int, project_path: str | os.PathLike | None = None) -> list[str]:
        """The command that starts node ``node_rank`` of a multi-node run on another machine.

        ``project_path``: where that machine sees the project folder (default: the same path).
        """
        worker = self.project._run_record(self.id).get("worker") or {}
        nodes = int(worker.get("nodes") or 1)
        if nodes < 2:
            raise ValidationError("this run was not started on several nodes (train(..., nodes=N, rendezvous=...))")
        if not 1 <= node_rank < nodes:
            raise ValidationError(f"node_rank is 1 to {nodes - 1}: node 0 is the machine that started the run")
        path = project_path or self.project.path
        return distributed_command(
            path, self.id, int(worker["processes_per_node"]), nodes, node_rank, worker["rendezvous"]
        )

    def _watch(self) -> None:
        assert self._process is not None
        code = self._process.wait()
        run = self.project.run(self.id)
        if run.finished:
            return
        if code < 0:
            name = signal.Signals(-code).name
            hint = " - possibly out of memory" if -code == signal.SIGKILL else ""
            reason = f"the training worker was killed by {name}{hint}"
        else:
            reason = f"the training worker exited with code {code} before finishing"
        _finish(self.project, self.id, "failed", error=reason, traceback=_log_tail(self.project, self.id))


def start_run(
    project: Project, run: Run, *, processes: int = 1, nodes: int = 1, rendezvous: str | None = None
) -> RunHandle:
    """Start the worker for a queued run: one process, or ``processes`` per node under torchrun (DDP).

    With ``nodes > 1`` this machine is node 0 and hosts the rendezvous at ``rendezvous``
    ("address:port", reachable from the other nodes); start each other node with
    :meth:`RunHandle.node_command` on a machine that sees the project folder.
    """
    if processes < 1 or nodes < 1:
        raise ValidationError("processes and nodes must be at least 1")
    if nodes > 1 and not rendezvous:
        raise ValidationError('a run on several nodes needs rendezvous="address:port" (node 0, reachable by all)')
    log_path = log_file(project, run.id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (see trainer.make_deterministic)
    command = [sys.executable, "-m", "patientml_widgets.runs", str(project.path), run.id]
    if processes > 1 or nodes > 1:
        command = distributed_command(project.path, run.id, processes, nodes, 0, rendezvous)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the kernel does not reach the worker
        )
    layout = {"nodes": nodes, "processes_per_node": processes, "rendezvous": rendezvous} if nodes > 1 else {}
    project._update_run(run.id, worker={"pid": process.pid, "host": socket.gethostname(), **layout})
    return RunHandle(project, run.id, process)


def distributed_command(
    project_path: str | os.PathLike, run_id: str, processes: int, nodes: int, node_rank: int, rendezvous: str | None
) -> list[str]:
    """The torchrun command line of one node of a run (static rendezvous at node 0's address)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}"]
    if nodes > 1:
        host, _, port = str(rendezvous).rpartition(":")
        if not host or not port.isdigit():
            raise ValidationError(f'rendezvous is "address:port", not {rendezvous!r}')
        command += [f"--nnodes={nodes}", f"--node-rank={node_rank}", f"--master-addr={host}", f"--master-port={port}"]
    else:
        command.append("--standalone")
    return [*command, "-m", "patientml_widgets.runs", str(project_path), run_id]


def cancel_run(project: Project, run_id: str, process: subprocess.Popen | None = None) -> Run:
    run = project.run(run_id)
    if run.finished:
        return run
    project._update_run(run_id, cancel_requested=True)
    pid = process.pid if process is not None else _local_pid(project, run_id)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while time.monotonic() < deadline:
        run = project.run(run_id)
        if run.finished:
            return run
        time.sleep(0.05)
    if pid is not None:
        _signal(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=5)
    _finish(project, run_id, "cancelled", error="cancelled by the user")
    return project.run(run_id)


def reap_dead_runs(project: Project, runs: list[dict[str, Any]]) -> None:
    """Mark running runs whose worker on this machine is gone (e.g. the kernel died) as failed."""
    for run in runs:
        if run["status"] not in ("queued", "running"):
            continue
        worker = run.get("worker") or {}
        if worker.get("host") == socket.gethostname() and worker.get("pid") and not _alive(worker["pid"]):
            _finish(
                project, run["id"], "failed", error="the training worker is gone (killed, or its machine restarted)"
            )


def log_file(project: Project, run_id: str) -> Path:
    return project.path / "logs" / f"{run_id}.log"


def _log_tail(project: Project, run_id: str, limit: int = 4000) -> str:
    try:
        return log_file(project, run_id).read_text(errors="replace")[-limit:]
    except FileNotFoundError:
        return ""


def _local_pid(project: Project, run_id: str) -> int | None:
    worker = project._run_record(run_id).get("worker") or {}
    if worker.get("host") == socket.gethostname() and worker.get("pid") and _alive(worker["pid"]):
        return int(worker["pid"])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _finish(project: Project, run_id: str, status: str, **fields: Any) -> None:
    """Set a final status unless the run already has one."""
    with project._write():
        record = project._run_record(run_id)
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return
        project._update_run(run_id, status=status, ended=now(), **fields)


# -- promotion -------------------------------------------------------------------------


def promotion_decision(
    objective: str, direction: str, min_margin: float, challenger: float | None, champion: float | None
) -> tuple[str, str]:
    """``("approve" | "reject", reason)`` by the model's explicit rule."""
    if challenger is None:
        return "reject", f"the run has no test {objective} (is the test split empty?)"
    if champion is None:
        return "approve", f"first run: no champion to beat (test {objective} {challenger:.4f})"
    better = challenger - champion if direction == "max" else champion - challenger
    comparison = f"test {objective} {challenger:.4f} vs champion {champion:.4f}, margin {min_margin:g}"
    if better >= min_margin and better > 0:
        return "approve", f"better than the champion: {comparison}"
    return "reject", f"not better than the champion by the margin: {comparison}"


# -- the worker ------------------------------------------------------------------------


class _Worker:
    def __init__(self, project: Project, run_id: str) -> None:
        self.project = project
        self.run_id = run_id
        self._last_progress = 0.0
        self._last_cancel_check = 0.0

    def should_stop(self) -> bool:
        now_s = time.monotonic()
        if now_s - self._last_cancel_check < 0.2:
            return False
        self._last_cancel_check = now_s
        return bool(self.project._run_record(self.run_id).get("cancel_requested"))

    def on_step(self, progress: dict[str, Any], trial: int | None = None) -> None:
        now_s = time.monotonic()
        if now_s - self._last_progress < PROGRESS_EVERY_S and progress["step"] < progress["steps"]:
            return
        self._last_progress = now_s
        if trial is not None:
            progress = {**progress, "trial": trial}
        self.project._update_run(self.run_id, progress=progress)

    def on_epoch(self, record: dict[str, Any], trial: int | None = None) -> None:
        run = self.project._run_record(self.run_id)
        if trial is not None:
            record = {**record, "trial": trial}
        self.project._update_run(self.run_id, history=[*run.get("history", []), record])


class _SilentWorker(_Worker):
    """For ranks other than 0: never writes, stops when rank 0's process group goes away."""

    def should_stop(self) -> bool:
        return False

    def on_step(self, progress: dict[str, Any], trial: int | None = None) -> None:
        pass

    def on_epoch(self, record: dict[str, Any], trial: int | None = None) -> None:
        pass


def work(project: Project, run_id: str) -> None:
    """Train, evaluate and judge one run, writing every step into the store."""
    from .training import trainer

    worker = _Worker(project, run_id)

    def cancelled(signum, frame):
        raise trainer.Cancelled

    signal.signal(signal.SIGTERM, cancelled)
    layout = {k: v for k, v in (project._run_record(run_id).get("worker") or {}).items() if k not in ("pid", "host")}
    project._update_run(
        run_id, status="running", started=now(), worker={"pid": os.getpid(), "host": socket.gethostname(), **layout}
    )
    print(f"[{now()}] run {run_id} started in process {os.getpid()}", flush=True)
    try:
        result = train_and_evaluate(project, run_id, worker)
    except trainer.Cancelled:
        _finish(project, run_id, "cancelled", error="cancelled by the user")
        print(f"[{now()}] cancelled", flush=True)
        return
    except BaseException as e:
        _finish(project, run_id, "failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        print(traceback.format_exc(), flush=True)
        raise SystemExit(1) from None
    print(f"[{now()}] finished: {result}", flush=True)


def train_and_evaluate(project: Project, run_id: str, worker: _Worker, *, record: bool = True) -> str:
    """The body of a run: data, fingerprint and plan, (search and) fit, test, champion, decision, artifact.

    With ``record=False`` (the other ranks of a distributed run) it only trains.
    """
    import torch

    from .training import hardware, trainer
    from .training.plan import fingerprint
    from .training.search import sample_trials
    from .training.spec import TrainSpec

    run = project._run_record(run_id)
    model_record = project._model_record(run["model_id"])
    model = Model.from_record(model_record)
    config = model_record.get("training") or {}
    data = {split: load_split(project, model, run["snapshot"].get(split, [])) for split in ("train", "val", "test")}
    if not data["train"].images:
        raise ValidationError("the snapshot has no training examples")
    in_channels = 3 if any(img.ndim == 3 for img in data["train"].images) else 1
    factory, train_step, code_meta = load_model_code(project, config.get("model_code"))
    fixed = {"num_classes": len(model.classes), "multi_label": model.multi_label, "in_channels": in_channels}
    if code_meta:
        fixed["architecture"] = f"code:{code_meta['name']}"
    if config.get("objective"):
        fixed["objective"] = config["objective"]
    layers = [{"budget_s": config.get("budget_s", 0)}, config.get("hyperparameters"), run.get("hyperparameters")]
    base = TrainSpec.build(model.problem_type, *layers, **fixed)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    hw = hardware.detect(base.precision, processes_here=local_processes)
    torch.set_num_threads(hw.threads)
    trainer.make_deterministic()
    train = data["train"]
    fp = fingerprint(
        train.images,
        train.targets,
        problem_type=model.problem_type,
        num_classes=len(model.classes),
        modalities=train.modalities,
    )
    space = config.get("search_space") or {}
    candidates = [base]
    if space:
        draws = sample_trials(space, int(config.get("max_trials") or 4), seed=base.seed)
        candidates = [TrainSpec.build(model.problem_type, base.to_dict(), draw, **fixed) for draw in draws]
    if record:
        project._update_run(run_id, fingerprint=fp, hardware=hw.to_dict())
    print(f"[{now()}] {hw.device}, {hw.precision} ({hw.reason}), {hw.threads} threads", flush=True)
    direction = config.get("direction", "max")
    best = None
    trials = []
    for number, candidate in enumerate(candidates, start=1):
        trial = number if len(candidates) > 1 else None
        spec, plan = trainer.resolve(candidate, fp, hw)
        if len(candidates) > 1 and spec.budget_s:  # a search shares the budget between its trials
            spec.budget_s = plan["budget_s"] = round(spec.budget_s / len(candidates), 1)
        if record:
            project._update_run(run_id, plan=plan, progress={"phase": "training", "trial": trial, "steps": spec.steps})
        print(f"[{now()}] plan: {plan}", flush=True)
        result = trainer.fit(
            spec,
            data["train"].prepared(spec),
            data["val"].prepared(spec),
            device=hw.device,
            factory=factory,
            train_step=train_step,
            on_step=lambda p, t=trial: worker.on_step(p, t),
            on_epoch=lambda r, t=trial: worker.on_epoch(r, t),
            should_stop=worker.should_stop,
            direction=direction,
        )
        score = result.val_metrics.get(spec.objective)
        if trial is not None:
            trials.append({"trial": trial, "hyperparameters": _hp(spec), "val": {spec.objective: score}})
            if record:
                project._update_run(run_id, trials=trials)
        sign = 1 if direction == "max" else -1
        if best is None or (score is not None and (best[2] is None or sign * score > sign * best[2])):
            best = (spec, result, score, plan)
    spec, result, _, plan = best
    if not record:
        return "trained (not recording: not rank 0)"
    training = {
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped": result.stopped,
        "seconds": round(result.seconds, 2),
    }
    project._update_run(
        run_id,
        spec=spec.to_dict(),
        plan=plan,
        training=training,
        hyperparameters=_hp(spec),
        classes=model_record["classes"],
        progress={"phase": "evaluating"},
    )

    net = trainer.build_model(spec, factory)
    net.load_state_dict(result.state_dict)
    net.to(hw.device)
    test = data["test"]
    test_metrics, proba = trainer.evaluate(net, spec, test.prepared(spec), device=hw.device, masks=test.targets)
    per_example = _per_example_scores(spec, proba, test.targets, test.example_ids)
    weights = trainer.save_state_dict(net)

    champion = {}
    champion_id = model.champion_run_id
    if champion_id and champion_id != run_id:
        champion = evaluate_champion(project, model, champion_id, test)
    objective = spec.objective
    decision, reason = promotion_decision(
        objective,
        direction,
        float(config.get("min_margin", 0.0)),
        test_metrics.get(objective),
        (champion.get("metrics") or {}).get("test", {}).get(objective) if champion else None,
    )
    with project._write():
        artifact = project._store.put_blob(weights, "pt")
        record = project._run_record(run_id)
        approvals = [*record.get("approvals", []), _approval(decision, "system", reason)]
        project._update_run(
            run_id,
            status="succeeded",
            ended=now(),
            metrics={
                "val": result.val_metrics,
                "test": test_metrics,
                "best_epoch": result.best_epoch,
                "best_step": result.best_step,
            },
            test_examples=per_example,
            champion=champion,
            artifact_ref=artifact,
            approvals=approvals,
            progress={"phase": "done", "seconds": round(result.seconds, 2)},
        )
        if decision == "approve" and config.get("auto_deploy", True):
            project.deploy(run_id, actor="system", reason="approved by the promotion rule (auto_deploy)")
    return f"{decision}: {reason}"


class SplitData:
    """One split of a snapshot as arrays: images as stored, targets as class positions."""

    def __init__(self) -> None:
        self.images: list[Any] = []
        self.targets: list[Any] = []
        self.example_ids: list[str] = []
        self.modalities: list[str] = []
        self._cache: dict[str, Any] = {}

    def prepared(self, spec) -> Any:
        """The split on a resolved spec's canvas (cached per canvas, channels and normalisation)."""
        import json

        from .training import data

        key = json.dumps(
            [spec.canvas, spec.fit, spec.in_channels, spec.normalization, spec.problem_type, spec.multi_label],
            sort_keys=True,
        )
        if key not in self._cache:
            self._cache[key] = data.prepare(self.images, self.targets, spec)
        return self._cache[key]


def load_split(project: Project, model: Model, items: list[list[Any]]) -> SplitData:
    """Load the frozen (example id, label version) pairs of one split."""
    import numpy as np

    from . import imaging

    positions = {c.index: i for i, c in enumerate(model.classes)}
    lut = np.full(256, -1, dtype=np.int64)
    for index, position in positions.items():
        lut[index] = position
    data = SplitData()
    # in the order of the images' content, not of their (random) ids: the same data trains the same
    # way in any project
    records = {}
    for example_id, _ in items:
        with contextlib.suppress(NotFoundError):  # deleted since the snapshot: skipped below
            records[example_id] = project._example_record(example_id)
    order = sorted(items, key=lambda item: (records.get(item[0], {}).get("image_ref", ""), item[0]))
    for example_id, version in order:
        event = project._label_at(example_id, version)
        try:
            image = project.image(example_id)
        except NotFoundError:
            print(f"skipped {example_id}: deleted since the snapshot", flush=True)
            continue
        if event is None:
            print(f"skipped {example_id}: label version {version} is not in the audit trail", flush=True)
            continue
        if model.problem_type == "segmentation":
            mask = lut[imaging.decode_mask_png(project._store.blobs.get(event["mask_ref"]))]
            if (mask < 0).any():
                print(f"skipped {example_id}: its mask uses a class the model no longer has", flush=True)
                continue
            target: Any = mask
        else:
            known = [positions[c] for c in event["classes"] if c in positions]
            if len(known) != len(event["classes"]) or (not model.multi_label and len(known) != 1):
                print(f"skipped {example_id}: its label uses a class the model no longer has", flush=True)
                continue
            if model.multi_label:
                target = np.zeros(len(positions), dtype=np.float32)
                target[known] = 1
            else:
                target = known[0]
        data.images.append(image)
        data.targets.append(target)
        data.example_ids.append(example_id)
        data.modalities.append(str((records[example_id].get("source") or {}).get("modality") or ""))
    return data


def load_model_code(project: Project, name: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """The factory and train step of registered model code (executed from its stored source)."""
    if not name:
        return None, None, {}
    record = project._store.get("code", name)
    if record is None:
        raise NotFoundError(f"no registered model code {name!r}")
    source = project._store.blobs.get(record["source_ref"]).decode()
    namespace: dict[str, Any] = {"__name__": f"patientml_model_code_{name}"}
    exec(compile(source, f"<model code {name!r}>", "exec"), namespace)
    factory = namespace[record["factory"]]
    step = namespace[record["train_step"]] if record.get("train_step") else None
    return factory, step, record


def _hp(spec) -> dict[str, Any]:
    skip = {
        "problem_type",
        "num_classes",
        "multi_label",
        "in_channels",
        "objective",
        "extra",
        "normalization",
        "class_weights",
        "fit",
    }
    return {k: v for k, v in spec.to_dict().items() if k not in skip} | dict(spec.extra)


def _approval(decision: str, actor: str, reason: str) -> dict[str, Any]:
    return {"decision": decision, "actor": actor, "reason": reason, "time": now()}


def _per_example_scores(spec, outputs, targets, example_ids) -> list[dict[str, Any]]:
    """A score per test example (Dice for segmentation, probability of the truth otherwise).

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


def evaluate_champion(project: Project, model: Model, champion_id: str, test: SplitData) -> dict[str, Any]:
    """The champion's metrics on the challenger's test examples (or why it could not be compared)."""
    from .training import trainer

    try:
        predictor = project._predictor(champion_id)
    except Exception as e:
        return {"run_id": champion_id, "error": f"the champion could not be loaded: {e}"}
    if predictor.class_indices != [c.index for c in model.classes]:
        return {"run_id": champion_id, "error": "the class vocabulary changed since the champion was trained"}
    metrics, _ = trainer.evaluate(
        predictor.net, predictor.spec, test.prepared(predictor.spec), precision=predictor.precision, masks=test.targets
    )
    return {"run_id": champion_id, "metrics": {"test": metrics}}


def main(argv: list[str] | None = None) -> None:
    """Worker entry point; under torchrun each process joins a gloo/NCCL process group (DDP)."""
    from .project import Project

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m patientml_widgets.runs PROJECT_DIR RUN_ID")
    project = Project.open(args[0], create=False, user="trainer")
    try:
        project._run_record(args[1])
    except NotFoundError as e:
        raise SystemExit(str(e)) from None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        work_distributed(project, args[1])
    else:
        work(project, args[1])


def work_distributed(project: Project, run_id: str) -> None:
    """One of several torchrun processes: all train their share; rank 0 records everything."""
    from .training import trainer

    rank, world, backend = trainer.init_distributed()
    try:
        if rank == 0:
            nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
            project._update_run(run_id, distributed={"world_size": world, "backend": backend, "nodes": nodes})
            work(project, run_id)
        else:
            with contextlib.suppress(trainer.Cancelled):  # rank 0 records the cancellation; exit cleanly
                train_and_evaluate(project, run_id, _SilentWorker(project, run_id), record=False)
    finally:
        trainer.shutdown_distributed()


def check_trainable(snapshot: dict[str, list]) -> None:
    """Refuse a run whose snapshot has nothing to train or validate on, saying what to do."""
    if not snapshot.get("train"):
        raise ValidationError("there are no submitted labels in the train split yet; submit some labels first")
    if not snapshot.get("val"):
        raise ValidationError("the validation split has no submitted labels yet; label more patients' images")


if __name__ == "__main__":
    main()
