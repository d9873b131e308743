"""The kernel side of runs: start a worker process, watch it, cancel it, reap it, and the retrain policy.

``Project.train`` records a queued run (with its frozen snapshot) and :meth:`Runs.start`
starts ``python -m patientml_widgets.worker PROJECT RUN_ID`` in a new process (see
``worker.py``). A watcher thread fails the run if the process dies before finishing;
:meth:`Runs.reap` (called by ``Project.poll``) fails runs whose worker on this machine is
gone, e.g. because the kernel that started it died.
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
import warnings
from pathlib import Path
from typing import Any

from .errors import PatientMLError, ValidationError
from .model_code import require_trusted
from .policy import (
    check_precision,
    check_trainable,
    check_volume_model,
    new_labels_since_last_run,
    promotion_decision,
)
from .records import Run
from .session import FINISHED, ModelRef, RunRef, Session
from .store.files import make_dirs, open_append

__all__ = ["RunHandle", "Runs", "promotion_decision"]

CANCEL_GRACE_S = 1.5
WORKER_MODULE = "patientml_widgets.worker"


class RunHandle:
    """A run being trained. ``wait()``, ``cancel()``, and the run's latest record as attributes.

    ``RunHandle(project, run_id)`` follows a run started elsewhere (by the retrain policy, say).
    """

    def __init__(self, owner: Any, run_id: str, process: subprocess.Popen | None = None) -> None:
        #: the Project the handle was made from or for (None when made from the layers below)
        self.project: Any = None
        if isinstance(owner, Runs):
            self.runs = owner
        elif isinstance(owner, Session):
            self.runs = Runs(owner)
        else:  # a Project
            self.runs, self.project = Runs(owner.session), owner
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
        return Run.from_record(self.runs.session.run_record(self.id))

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
        return self.runs.cancel(self.id, self._process)

    def node_command(self, node_rank: int, project_path: str | os.PathLike | None = None) -> list[str]:
        """The command that starts node ``node_rank`` of a multi-node run on another machine.

        ``project_path``: where that machine sees the project folder (default: the same path).
        """
        worker = self.runs.session.run_record(self.id).get("worker") or {}
        nodes = int(worker.get("nodes") or 1)
        if nodes < 2:
            raise ValidationError("this run was not started on several nodes (train(..., nodes=N, rendezvous=...))")
        if not 1 <= node_rank < nodes:
            raise ValidationError(f"node_rank is 1 to {nodes - 1}: node 0 is the machine that started the run")
        path = project_path or self.runs.session.path
        return distributed_command(
            path, self.id, int(worker["processes_per_node"]), nodes, node_rank, worker["rendezvous"]
        )

    def _watch(self) -> None:
        assert self._process is not None
        code = self._process.wait()
        session = self.runs.session
        if session.run_record(self.id)["status"] in FINISHED:
            return
        if code < 0:
            name = signal.Signals(-code).name
            hint = " - possibly out of memory" if -code == signal.SIGKILL else ""
            reason = f"the training worker was killed by {name}{hint}"
        else:
            reason = f"the training worker exited with code {code} before finishing"
        session.finish_run(self.id, "failed", error=reason, traceback=self.runs.log_tail(self.id))


class Runs:
    """Starting, watching, cancelling and reaping the runs of one session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def train(
        self,
        model: ModelRef,
        *,
        hyperparameters: dict[str, Any] | None = None,
        trigger: str = "manual",
        processes: int = 1,
        nodes: int = 1,
        rendezvous: str | None = None,
    ) -> RunHandle:
        """Check that the model can train here, record a queued run and start its worker."""
        from .training import require_torch

        require_torch()
        record = self.session.model_record(model)
        if hyperparameters and not (record.get("training") or {}).get("model_code"):
            from .training.spec import TrainSpec

            TrainSpec.build(record["problem_type"], hyperparameters, num_classes=len(record["classes"]))
        self._check_code(record)
        snapshot = self.session.snapshot(record["id"])
        flags = [
            self.session.example_record(i).get("depth") is not None for items in snapshot.values() for i, _ in items
        ]
        check_volume_model(record["problem_type"], sum(flags), len(flags) - sum(flags))
        check_trainable(snapshot)
        check_precision(record, hyperparameters)
        if processes < 1 or nodes < 1:
            raise ValidationError("processes and nodes must be at least 1")
        if nodes > 1 and not rendezvous:
            raise ValidationError('a run on several nodes needs rendezvous="address:port" (node 0, reachable by all)')
        run = self.session.create_run(record["id"], trigger=trigger, hyperparameters=hyperparameters)
        return self.start(run.id, processes=processes, nodes=nodes, rendezvous=rendezvous)

    def start(self, run_id: str, *, processes: int = 1, nodes: int = 1, rendezvous: str | None = None) -> RunHandle:
        """Start the worker for a queued run: one process, or ``processes`` per node under torchrun (DDP).

        With ``nodes > 1`` this machine is node 0 and hosts the rendezvous at ``rendezvous``
        ("address:port", reachable from the other nodes); start each other node with
        :meth:`RunHandle.node_command` on a machine that sees the project folder.
        """
        self._check_code(self.session.model_record(self.session.run_record(run_id)["model_id"]))
        log_path = self.log_file(run_id)
        make_dirs(log_path.parent)
        env = dict(os.environ)
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (see trainer.make_deterministic)
        command = [sys.executable, "-m", WORKER_MODULE, str(self.session.path), run_id]
        if processes > 1 or nodes > 1:
            command = distributed_command(self.session.path, run_id, processes, nodes, 0, rendezvous)
        with open_append(log_path) as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a Ctrl-C in the kernel does not reach the worker
            )
        layout = {"nodes": nodes, "processes_per_node": processes, "rendezvous": rendezvous} if nodes > 1 else {}
        self.session.update_run(run_id, worker={"pid": process.pid, "host": socket.gethostname(), **layout})
        return RunHandle(self, run_id, process)

    def _check_code(self, model_record: dict[str, Any]) -> None:
        """UntrustedCodeError before a worker starts, if the model trains stored code the user does not trust."""
        name = (model_record.get("training") or {}).get("model_code")
        if name:
            require_trusted(self.session, name, f"train {model_record['name']!r}")

    def cancel(self, run: RunRef, process: subprocess.Popen | None = None) -> Run:
        """Ask the worker to stop, then stop it (SIGTERM, SIGKILL after a grace period)."""
        run_id = self.session.run_record(run)["id"]
        if self.session.run_record(run_id)["status"] in FINISHED:
            return Run.from_record(self.session.run_record(run_id))
        with self.session.write():
            self.session.require("developer", "cancelling a run")
            self.session.update_run(run_id, cancel_requested=True)
        pid = process.pid if process is not None else self.local_pid(run_id)
        if pid is not None:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline:
            if self.session.run_record(run_id)["status"] in FINISHED:
                return Run.from_record(self.session.run_record(run_id))
            time.sleep(0.05)
        if pid is not None:
            _signal(pid, signal.SIGKILL)
        if process is not None:
            process.wait(timeout=5)
        self.session.finish_run(run_id, "cancelled", error="cancelled by the user")
        return Run.from_record(self.session.run_record(run_id))

    def reap(self) -> int:
        """Fail the queued or running runs whose worker on this machine is gone (the kernel died, say)."""
        reaped = 0
        host = socket.gethostname()
        for run in self.session.read().records("runs"):
            if run["status"] not in ("queued", "running"):
                continue
            worker = run.get("worker") or {}
            if worker.get("host") == host and worker.get("pid") and _worker_pid(worker, run["id"]) is None:
                error = "the training worker is gone (killed, or its machine restarted)"
                reaped += self.session.finish_run(run["id"], "failed", error=error)
        return reaped

    def maybe_retrain(self, model_id: str) -> RunHandle | None:
        """Start a run when the model's retrain policy says enough new labels came in.

        A run that cannot start is a warning, not an error: the label that triggered it is saved.
        """
        record = self.session.model_record(model_id)
        after = (record.get("retrain") or {}).get("after_labels")
        if not after:
            return None
        fresh = new_labels_since_last_run(self.session.run_records(model_id), self.session.snapshot(model_id))
        if fresh is None or fresh < after:
            return None
        try:
            with self.session.as_system():  # a developer set the policy: it trains for whoever labels
                return self.train(model_id, trigger=f"retrain policy: {fresh} new labels")
        except PatientMLError as e:
            warnings.warn(f"the retrain policy of {record['name']!r} could not start a run: {e}", stacklevel=4)
            return None

    def log_file(self, run_id: str) -> Path:
        return self.session.path / "logs" / f"{run_id}.log"

    def log(self, run: RunRef) -> str:
        """What the run's worker printed."""
        try:
            return self.log_file(self.session.run_record(run)["id"]).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, run_id: str, limit: int = 4000) -> str:
        return self.log(run_id)[-limit:]

    def local_pid(self, run_id: str) -> int | None:
        """The pid of the run's worker if it runs on this machine and is alive."""
        worker = self.session.run_record(run_id).get("worker") or {}
        return _worker_pid(worker, run_id) if worker.get("host") == socket.gethostname() else None


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
    return [*command, "-m", WORKER_MODULE, str(project_path), run_id]


def _worker_pid(worker: dict[str, Any], run_id: str) -> int | None:
    """The recorded pid if it is a live worker process of this run, else None.

    The pid comes from the project folder, which may be crafted: only a positive number that is not
    init's nor ours is signalled (``os.kill`` reads 0 and -1 as whole process groups), and where the
    system shows command lines, only a process started as this run's worker.
    """
    pid = worker.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or pid == os.getpid() or not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None if Path("/proc/self/cmdline").exists() else pid  # gone, or no /proc on this system
    except OSError:
        return None
    if WORKER_MODULE.encode() not in cmdline or os.fsencode(run_id) not in cmdline:
        return None
    return pid


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
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
