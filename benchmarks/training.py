"""Training: the planned default run on real and synthetic data, against classical baselines and the old defaults.

python benchmarks/training.py                       # demo, nuclei, mri_tissue, mri_patches; 3 repeats; old defaults
python benchmarks/training.py --quick               # demo and nuclei, one default run each, no old defaults
python benchmarks/training.py --sets nuclei,mri_patches --repeat 2 --old 70dcaee

Per data set: the default run (no hyperparameters) - test objective, wall time of ``train().wait()``, fit seconds,
steps and why training stopped, precision and threads chosen, the worker's peak memory; the classical baseline and
the margin over it; the same run with precision forced to fp32 and to bf16; the spread of repeated default runs;
and the defaults before the training redesign (git revision ``--old``, imported from a temporary worktree).

Every run is started from its own subprocess of this script (``--_run``; the old code: ``--_old``), whose only
child is the run's worker, so ``RUSAGE_CHILDREN``'s peak RSS read there is that worker's peak memory.
The real data sets need ``pip install nilearn nibabel scikit-image scikit-learn tifffile`` and
``pip install --no-deps stardist`` (see ``real_images.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_images
from _util import table

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SETS = ("demo", "nuclei", "mri_tissue", "mri_patches")
QUICK_SETS = ("demo", "nuclei")
DEMO_MODEL = "Skin lesion segmentation"
RUN_TIMEOUT_S = 900.0
PLAN_KEYS = ("canvas", "patch", "batch_size", "steps", "lr", "budget_s", "depth", "base_channels", "norm")
MARGIN_TARGET, FIT_TARGET_S, SPREAD_TARGET = 0.03, 180.0, 0.01
DEMO_DICE_TARGET, DEMO_WALL_TARGET_S = 0.90, 30.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- inside a subprocess: one run --------------------------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux


def _worker_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _summary(run: Any, wall: float) -> dict[str, Any]:
    """What the tables need from a finished run (works with the old package's Run too)."""
    test = run.metrics.get("test", {})
    name, value = run.objective
    spec = run.spec or {}
    return {
        "status": run.status,
        "error": run.error,
        "objective": name,
        "value": value,
        "per_class": test.get("dice", test.get("recall")),
        "wall_s": wall,
        "fit_s": run.progress.get("seconds"),
        "training": getattr(run, "training", None) or {},
        "hardware": getattr(run, "hardware", None) or {},
        "plan": {k: (getattr(run, "plan", None) or {}).get(k) for k in PLAN_KEYS},
        "normalization": ((getattr(run, "plan", None) or {}).get("normalization") or {}).get("scheme"),
        "spec": {k: spec.get(k) for k in ("image_size", "epochs", "batch_size", "lr", "precision", "canvas")},
        "peak_mb": _peak_mb(),
        "cpu_s": _worker_cpu_s(),  # the worker's CPU time: well below threads x wall when the cores are shared
        "load": os.getloadavg()[0],
    }


def _timed_run(project: Any, model: str, hyperparameters: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    handle = project.train(model, hyperparameters=hyperparameters)
    try:
        run = handle.wait(timeout=timeout)
    except TimeoutError:
        handle.cancel()
        return {"status": "timeout", "error": f"still training after {timeout:.0f} s", "peak_mb": _peak_mb()}
    return _summary(run, time.perf_counter() - t0)


def child_run(path: str, model: str, hyperparameters: str) -> dict[str, Any]:
    """Train one run of ``model`` in the project at ``path`` (current package)."""
    import torch  # noqa: F401 - imported before the clock starts, as in a kernel that has trained before

    import patientml_widgets as pml

    project = pml.Project.open(path, create=False)
    return _timed_run(project, model, json.loads(hyperparameters), RUN_TIMEOUT_S)


def child_old(name: str, folder: str, timeout: str) -> dict[str, Any]:
    """Load ``name`` into a new project with whatever package is importable (the old one) and train its default."""
    import torch  # noqa: F401

    import patientml_widgets as pml

    if name == "demo":
        project = pml.Project.demo(folder, fresh=True)
        model = project.model(DEMO_MODEL).id
    else:
        project = pml.Project.open(folder)
        model = real_images.load_into(project, real_images.DATASETS[name]()).id
    out = _timed_run(project, model, None, float(timeout))
    out["package"] = pml.__file__
    out["worker_old"] = not (out.get("spec") or {}).get("canvas")  # the planned trainer records a canvas
    return out


# -- in the main process -----------------------------------------------------------------------------------------


def _child(args: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE), *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"status": "failed", "error": (proc.stderr or proc.stdout).strip()[-1500:] or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def demo_baseline(project: Any, model: Any) -> dict[str, Any]:
    """Multi-Otsu on grey (mean of RGB) per image, 3 bins mapped to the classes by mean intensity on train."""
    images, targets, splits = [], [], []
    for split in ("train", "test"):
        for ex in project.examples(model, split=split, status="labeled"):
            img = project.image(ex).astype(np.float64)
            images.append(img.mean(axis=2) if img.ndim == 3 else img)
            targets.append(project.mask(ex))
            splits.append(split)
    classes = [c.name for c in model.classes]
    ds = real_images.Dataset("demo", "segmentation", classes, "", images, targets, splits, [""] * len(images))
    return real_images.baseline(ds)


def measure(name: str, repeat: int, workdir: Path) -> dict[str, Any]:
    """The default run (``repeat`` times), precision forced to fp32 and bf16, and the baseline, for one set."""
    import patientml_widgets as pml

    t0 = time.perf_counter()
    if name == "demo":
        project = pml.Project.demo(workdir / name, fresh=True)
        model = project.model(DEMO_MODEL)
        base = demo_baseline(project, model)
    else:
        ds = real_images.DATASETS[name]()
        project = pml.Project.open(workdir / name)
        model = real_images.load_into(project, ds)
        base = real_images.baseline(ds)
    project.configure_training(model, auto_deploy=False)  # no champion: every run is trained and judged alike
    log(f"{name}: loaded in {time.perf_counter() - t0:.1f} s; baseline {base['metric']} {base['value']:.4f}")

    def train(label: str, hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
        result = _child(["--_run", str(project.path), model.id, json.dumps(hyperparameters)])
        log(f"{name}: {label}: {_brief(result)}")
        return result

    defaults = [train("default 1", None)]
    forced = {p: train(f"precision {p}", {"precision": p}) for p in ("fp32", "bf16")}
    defaults += [train(f"default {i}", None) for i in range(2, repeat + 1)]
    classes = [c.name for c in model.classes]
    configured = project.model(model.id).training.get("hyperparameters") or {}
    return {
        "name": name,
        "classes": classes,
        "baseline": base,
        "configured": configured,
        "defaults": defaults,
        "forced": forced,
    }


def measure_old(names: list[str], rev: str, workdir: Path, timeout: float) -> dict[str, dict[str, Any]]:
    """The default run of each set with the package at ``rev``, imported from a temporary git worktree."""
    tree = workdir / "old-tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=REPO, check=True, capture_output=True)
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        out = {}
        for name in names:
            folder = workdir / f"old-{name}"
            out[name] = _child(["--_old", name, str(folder), str(timeout)], env=env, cwd=str(workdir))
            log(f"{name}: old defaults ({rev}, {out[name].get('package', '?')}): {_brief(out[name])}")
            if out[name].get("package") and not out[name]["package"].startswith(str(tree)):
                out[name] = {"status": "failed", "error": f"imported {out[name]['package']}, not the worktree's"}
        return out
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False, capture_output=True)


# -- report ------------------------------------------------------------------------------------------------------


def _ok(r: dict[str, Any] | None) -> bool:
    return bool(r) and r.get("status") == "succeeded" and r.get("value") is not None


def _brief(r: dict[str, Any]) -> str:
    if not _ok(r):
        return f"{r.get('status')}: {str(r.get('error'))[-300:]}"
    precision = (r.get("hardware") or {}).get("precision") or (r.get("spec") or {}).get("precision")
    fit = "-" if r.get("fit_s") is None else f"{r['fit_s']:.1f}"
    return (
        f"{r['objective']} {r['value']:.4f}, wall {r['wall_s']:.1f} s, fit {fit} s, {precision}, "
        f"steps {_stopped(r)}, peak {r['peak_mb']:.0f} MB, worker CPU {r['cpu_s']:.0f} s, load {r['load']:.1f}"
    )


def _v(r: dict[str, Any] | None, key: str = "value", digits: int = 4) -> str:
    value = r.get(key) if r and (_ok(r) or key != "value") else None
    return "-" if value is None else f"{value:.{digits}f}"


def _per_class(classes: list[str], values: list[float] | None) -> str:
    return " / ".join(f"{c} {v:.3f}" for c, v in zip(classes, values)) if values else "-"


def _stopped(r: dict[str, Any]) -> str:
    if r.get("status") != "succeeded":
        return f"{r.get('status')}: {str(r.get('error'))[-60:]}"
    t = r.get("training") or {}
    if not t and (r.get("spec") or {}).get("epochs"):
        return f"{r['spec']['epochs']} epochs (fixed)"  # the old trainer
    return f"{t.get('steps', '-')} (best {t.get('best_step', '-')}), {str(t.get('stopped', '-')).split(' (')[0]}"


def machine() -> str:
    import torch

    from patientml_widgets.training import hardware

    native = sorted(hardware.cpu_flags() & hardware.NATIVE_BF16_FLAGS)
    lines = [
        f"CPU: {hardware.cpu_name()} ({platform.machine()}), native bf16: "
        + (f"yes ({', '.join(native)})" if native else "no (bf16 is emulated)"),
        f"usable cores: {hardware.usable_cores()} (os.cpu_count {os.cpu_count()}), torch {torch.__version__}, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        "peak memory: ru_maxrss of RUSAGE_CHILDREN in a subprocess per run whose only child is the run's worker",
    ]
    return "\n".join(lines) + "\n"


def _default_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        d, hw = res["defaults"][0], res["defaults"][0].get("hardware") or {}
        rows.append(
            [
                res["name"],
                d.get("objective") or res["baseline"]["metric"],
                _v(d),
                _per_class(res["classes"], d.get("per_class")),
                _v(d, "wall_s", 1),
                _v(d, "fit_s", 1),
                _stopped(d),
                hw.get("precision", "-"),
                hw.get("threads", "-"),
                _v(d, "peak_mb", 0),
            ]
        )
    header = ["set", "objective", "value", "per class", "wall s", "fit s", "steps", "prec", "threads", "peak MB"]
    return table("Default run (no hyperparameters): test split", header, rows)


def _plan_table(results: list[dict[str, Any]]) -> str:
    keys = [k for k in PLAN_KEYS if k not in ("lr", "budget_s")]
    rows = []
    for res in results:
        d = res["defaults"][0]
        p = {k: v for k, v in (d.get("plan") or {}).items() if v is not None}
        rows.append(
            [
                res["name"],
                *(p.get(k, "-") for k in keys),
                f"{p['lr']:g}" if "lr" in p else "-",
                f"{p['budget_s']:.0f}" if "budget_s" in p else "-",
                d.get("normalization") or "-",
                json.dumps(res.get("configured") or {}),
            ]
        )
    header = ["set", *keys, "lr", "budget s", "normalization", "configured"]
    return table("Plan of the default run (configured: the model's own hyperparameters)", header, rows)


def _baseline_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        d, base = res["defaults"][0], res["baseline"]
        margin = d["value"] - base["value"] if _ok(d) else None
        if res["name"] == "demo":
            fp32 = res["forced"]["fp32"]
            checks = [
                _ok(d) and d["value"] >= DEMO_DICE_TARGET,
                _ok(d) and d["wall_s"] <= DEMO_WALL_TARGET_S,
                _ok(fp32) and fp32["wall_s"] <= DEMO_WALL_TARGET_S,
            ]
            fp32_wall = _v(fp32, "wall_s", 1)
            target = f"Dice >= {DEMO_DICE_TARGET}, wall <= {DEMO_WALL_TARGET_S:.0f} s, fp32 too ({fp32_wall} s)"
        else:
            checks = [margin is not None and margin >= MARGIN_TARGET, _ok(d) and d["fit_s"] <= FIT_TARGET_S]
            target = f"margin >= {MARGIN_TARGET}, fit <= {FIT_TARGET_S:.0f} s"
        shown = "-" if margin is None else f"{margin:+.4f}"
        met = "yes" if all(checks) else "NO"
        rows.append([res["name"], base["method"], f"{base['value']:.4f}", _v(d), shown, target, met])
    header = ["set", "baseline", "baseline", "default", "margin", "target", "met"]
    return table("Against the classical baseline (margin = default - baseline)", header, rows)


def _precision_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        d = res["defaults"][0]
        auto = f"auto -> {(d.get('hardware') or {}).get('precision', '?')}"
        for label, r in [(auto, d), *res["forced"].items()]:
            ratio = r["wall_s"] / d["wall_s"] if _ok(r) and _ok(d) else None
            rows.append(
                [
                    res["name"],
                    label,
                    _v(r),
                    _v(r, "wall_s", 1),
                    _v(r, "fit_s", 1),
                    _stopped(r),
                    _v(r, "peak_mb", 0),
                    "-" if ratio is None else f"{ratio:.2f}x",
                    _v(r, "cpu_s", 0),
                    _v(r, "load", 1),
                ]
            )
    header = ["set", "precision", "value", "wall s", "fit s", "steps", "peak MB", "wall / auto", "worker CPU s", "load"]
    return table("Precision: auto, and forced to fp32 / bf16 (same spec otherwise)", header, rows)


def _spread_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        done = [r for r in res["defaults"] if _ok(r)]
        if len(res["defaults"]) < 2:
            continue
        values, walls = [r["value"] for r in done], [r["wall_s"] for r in done]
        width = max(values) - min(values) if values else None
        met = width is not None and width <= SPREAD_TARGET and len(done) == len(res["defaults"])
        rows.append(
            [
                res["name"],
                f"{len(done)} of {len(res['defaults'])}",
                ", ".join(f"{v:.4f}" for v in values),
                "-" if width is None else f"{width:.4f}",
                f"{min(walls):.1f}..{max(walls):.1f}" if walls else "-",
                "yes" if met else "NO",
            ]
        )
    if not rows:
        return ""
    title = f"Run-to-run spread of the default run (target: max - min <= {SPREAD_TARGET})"
    note = "(repeats on one project; a run orders its data by the images' content, not by the random example ids)\n"
    return table(title, ["set", "runs", "values", "max - min", "wall s", "met"], rows) + note


def _old_table(results: list[dict[str, Any]], old: dict[str, dict[str, Any]], rev: str) -> str:
    new = {res["name"]: res["defaults"][0] for res in results}
    rows = []
    for name, o in old.items():
        s, n = o.get("spec") or {}, new.get(name)
        what = f"{s.get('image_size')} px, {s.get('epochs')} epochs, batch {s.get('batch_size')}, {s.get('precision')}"
        delta = n["value"] - o["value"] if _ok(n) and _ok(o) else None
        rows.append(
            [
                name,
                what if _ok(o) else f"{o.get('status')}: {str(o.get('error'))[-80:]}",
                _v(o),
                _v(o, "wall_s", 1),
                _v(o, "fit_s", 1),
                _v(o, "peak_mb", 0),
                _v(n),
                _v(n, "wall_s", 1),
                "-" if delta is None else f"{delta:+.4f}",
            ]
        )
    package = next((o["package"] for o in old.values() if o.get("package")), "?")
    workers = "yes" if all(o.get("worker_old") for o in old.values() if _ok(o)) else "NO"
    title = f"Old defaults (rev {rev}, {package}; workers ran the old trainer: {workers})"
    header = ["set", "old spec", "old value", "wall s", "fit s", "peak MB", "new value", "new wall s", "new - old"]
    note = "(the old code scores segmentation on masks resampled to its square canvas, the new one at full size)\n"
    segmentation = any(o.get("objective") == "dice_mean" for o in old.values())
    return table(title, header, rows) + (note if segmentation else "")


def report(results: list[dict[str, Any]], old: dict[str, dict[str, Any]], rev: str) -> str:
    parts = [_default_table, _plan_table, _baseline_table, _precision_table, _spread_table]
    out = "\n".join(filter(None, (part(results) for part in parts)))
    return out + ("\n" + _old_table(results, old, rev) if old else "")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="demo and nuclei, one run each, no old defaults")
    parser.add_argument("--repeat", type=int, default=None, help="default runs per set (default 3; --quick: 1)")
    parser.add_argument("--sets", default=None, help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--old", default="70dcaee", help="git revision of the old defaults (default 70dcaee)")
    parser.add_argument("--old-timeout", type=float, default=900.0, help="seconds an old default run may take")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--report", help="print the tables of measurements written by --json; train nothing")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        return saved["header"] + "\n" + report(saved["results"], saved["old"], saved["rev"])
    names = args.sets.split(",") if args.sets else list(QUICK_SETS if args.quick else SETS)
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        parser.error(f"unknown sets {unknown}; choose from {', '.join(SETS)}")
    repeat = max(1, args.repeat or (1 if args.quick else 3))
    started = time.perf_counter()
    header = machine()
    log(header)
    with tempfile.TemporaryDirectory(prefix="pml-bench-train-") as tmp:
        workdir = Path(tmp)
        results = [measure(name, repeat, workdir) for name in names]
        old = {} if args.quick else measure_old(names, args.old, workdir, args.old_timeout)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "results": results, "old": old, "rev": args.old}))
    out = header + "\n" + report(results, old, args.old)
    return out + f"\n(benchmark took {time.perf_counter() - started:.0f} s)\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--_run", "--_old"):
        print(json.dumps((child_run if sys.argv[1] == "--_run" else child_old)(*sys.argv[2:])))
    else:
        print(main())
