"""Volume segmentation: 2.5-D (the package's default) against a minimal 3-D U-Net on patches, and a classical baseline.

python benchmarks/volume_training.py               # budget 120 s per model, 3 timing repeats
python benchmarks/volume_training.py --budget 60 --repeat 1

Data: the MNI152 2009a symmetric T1 template shipped inside the nilearn wheel (no download; ``pip install nilearn
nibabel scikit-image``) with its tissue labels (background, grey matter, white matter: argmax of the packaged
probability maps), as in ``real_images.py``. The "subjects" are axial slabs of that one brain, inferior to
superior, each a volume of its own, with a gap of 3 slices wherever the split changes, so the splits are
region-disjoint; each slab gets its own smooth bias field, gain and noise, like scans from different scanners.
Caveats: one brain (an average of 152, skull-stripped, 1 mm isotropic), so anatomy is shared across splits at
the level of "what a brain looks like" and the labels are a template's probability maps, not manual
delineations; the split unit is the slab, not the patient.

Per model: 3-D Dice per class over every voxel of the test slabs, HD95 per class in mm (mean over test slabs;
``training.metrics.hausdorff``), fit seconds, prediction seconds for the test slabs, and the median time to
predict a 512 x 512 x 300 int16 CT-sized volume (timing only: its content is noise). The classical baseline is
multi-Otsu (3 classes) inside the brain, per volume, bins mapped to classes by their mean on the train slabs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import real_images
from _util import table

CLASSES = ["background", "grey matter", "white matter"]
SLABS = ("train", "test", "train", "val", "train", "test")
GAP = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------------------------


def slabs(seed: int = 0) -> list[dict]:
    """The MNI T1 as axial slabs (Z, Y, X) with their tissue labels, a split each, and a scanner-like variation."""
    t1, lab = real_images._mni()  # (x, y, z)
    vol = np.ascontiguousarray(t1.transpose(2, 1, 0))  # (z, y, x): axial slices
    labels = np.ascontiguousarray(lab.transpose(2, 1, 0))
    brain = (vol > 0).mean(axis=(1, 2))
    zs = np.flatnonzero(brain >= 0.10)
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    length = (z1 - z0 - GAP * (len(SLABS) - 1)) // len(SLABS)
    rng = np.random.default_rng(seed)
    out, z = [], z0
    for i, split in enumerate(SLABS):
        v = vol[z : z + length].astype(np.float64)
        zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in v.shape), indexing="ij")
        c = rng.normal(0, 0.08, 4)
        bias = 1 + c[0] * xx + c[1] * yy + c[2] * zz + c[3] * xx * yy  # smooth, about +-15 %
        gain = rng.uniform(0.7, 1.4)
        noise = rng.normal(0, rng.uniform(0.01, 0.04) * v.max(), v.shape)
        varied = np.where(v > 0, v * bias * gain + noise, 0)
        out.append(
            {
                "name": f"slab{i:02d}",
                "split": split,
                "image": np.clip(varied, 0, 32767).astype(np.int16),
                "mask": labels[z : z + length].copy(),
                "spacing": (1.0, 1.0, 1.0),
            }
        )
        z += length + GAP
    return out


def baseline(data: list[dict]) -> list[np.ndarray]:
    """Multi-Otsu (3 classes) inside the brain of each test volume; bins -> classes by their train means."""
    from skimage.filters import threshold_multiotsu

    train = [d for d in data if d["split"] == "train"]
    x = np.concatenate([d["image"].ravel() for d in train]).astype(np.float64)
    y = np.concatenate([d["mask"].ravel() for d in train]).astype(np.int64)
    means = np.bincount(y, weights=x, minlength=3) / np.maximum(np.bincount(y, minlength=3), 1)
    order = np.argsort(means, kind="stable")
    preds = []
    for d in (d for d in data if d["split"] == "test"):
        img = d["image"].astype(np.float64)
        inside = img > 0
        bins = np.zeros(img.shape, np.int64)
        bins[inside] = np.digitize(img[inside], threshold_multiotsu(img[inside], classes=3))
        preds.append(order[bins].astype(np.uint8))
    return preds


# -- 2.5-D: the package ----------------------------------------------------------------------------------------


def run_25d(data: list[dict], budget: float, folder: str) -> dict:
    import patientml_widgets as pml

    project = pml.Project.open(Path(folder) / "p", user="bench")
    model = project.create_model("MNI tissue volumes", problem_type="segmentation", classes=CLASSES)
    with project.batch():
        for d in data:
            ex = project.add_volume(
                model, d["image"], spacing=d["spacing"], subject=d["name"], split=d["split"], source={"modality": "MR"}
            )
            project.submit_label(ex, mask=d["mask"])
    t0 = time.perf_counter()
    run = project.train(model, hyperparameters={"budget_s": budget}).wait(timeout=budget * 4 + 600)
    wall = time.perf_counter() - t0
    if run.status != "succeeded":
        raise SystemExit(f"the 2.5-D run failed: {run.error}\n{run.traceback}")
    predictor = _predictor(project, run.id)
    test = [d for d in data if d["split"] == "test"]
    t0 = time.perf_counter()
    for d in test:
        predictor.predict_volume(d["image"], d["spacing"])
    predict_test = time.perf_counter() - t0
    return {
        "metrics": run.metrics["test"],
        "fit_s": run.training["seconds"],
        "wall_s": wall,
        "steps": run.training["steps"],
        "stopped": run.training["stopped"],
        "plan": {k: run.plan.get(k) for k in ("canvas", "spacing", "context", "context_stride", "batch_size", "steps")},
        "precision": run.hardware["precision"],
        "predict_test_s": predict_test,
        "predict_big": lambda vol: predictor.predict_volume(vol, (1.0, 0.7, 0.7)),
        "predict_big_fp32": lambda vol: _in_fp32(predictor, vol),
    }


def _in_fp32(predictor, vol):
    """The prediction as on a CPU without native bf16 (AVX2 only): in fp32."""
    saved, predictor.precision = predictor.precision, "fp32"
    try:
        return predictor.predict_volume(vol, (1.0, 0.7, 0.7))
    finally:
        predictor.precision = saved


def _predictor(project, run_id):
    from patientml_widgets.predictions import Predictions

    return Predictions(project.session).predictor(run_id)


# -- 3-D: a minimal U-Net on patches ---------------------------------------------------------------------------


def _net3d(base: int = 8, classes: int = 3):
    import torch
    from torch import nn

    def block(i, o):
        return nn.Sequential(
            nn.Conv3d(i, o, 3, padding=1, bias=False),
            nn.InstanceNorm3d(o, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(o, o, 3, padding=1, bias=False),
            nn.InstanceNorm3d(o, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )

    class UNet3d(nn.Module):
        """Three levels (widths base, 2 base, 4 base, bottom 8 base), pooling 2 x 2 x 2."""

        def __init__(self):
            super().__init__()
            w = [base, 2 * base, 4 * base, 8 * base]
            self.down = nn.ModuleList([block(1, w[0]), block(w[0], w[1]), block(w[1], w[2])])
            self.bottom = block(w[2], w[3])
            self.up = nn.ModuleList([nn.ConvTranspose3d(w[i + 1], w[i], 2, stride=2) for i in (2, 1, 0)])
            self.merge = nn.ModuleList([block(2 * w[i], w[i]) for i in (2, 1, 0)])
            self.out = nn.Conv3d(w[0], classes, 1)

        def forward(self, x):
            skips = []
            for d in self.down:
                x = d(x)
                skips.append(x)
                x = nn.functional.max_pool3d(x, 2)
            x = self.bottom(x)
            for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
                x = merge(torch.cat([up(x), skip], 1))
            return self.out(x)

    return UNet3d()


def _zscore(v: np.ndarray) -> np.ndarray:
    x = v.astype(np.float32)
    return (x - x.mean()) / max(float(x.std()), 1e-6)


def _loss(logits, target, k: int = 3):
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, k).permute(0, 4, 1, 2, 3).float()
    inter = (probs * onehot).sum((0, 2, 3, 4))
    dice = (2 * inter + 1e-5) / (probs.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4)) + 1e-5)
    return ce + (1 - dice[1:].mean())


def _predict3d(net, vol: np.ndarray, tile=(64, 160, 160), margin: int = 8) -> np.ndarray:
    """Tiles of ``tile`` voxels overlapping by 2 x ``margin``; each keeps its centre (no seams at the margins)."""
    import torch

    x = torch.from_numpy(_zscore(vol))
    z, h, w = x.shape
    out = np.zeros((z, h, w), np.uint8)
    step = [t - 2 * margin for t in tile]
    net.eval()
    with torch.no_grad():
        for z0 in range(0, z, step[0]):
            for y0 in range(0, h, step[1]):
                for x0 in range(0, w, step[2]):
                    lo = [max(0, a - margin) for a in (z0, y0, x0)]
                    hi = [min(n, a + s + margin) for a, s, n in zip((z0, y0, x0), step, (z, h, w))]
                    part = x[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
                    pad = [(-n) % 8 for n in part.shape]
                    inp = torch.nn.functional.pad(part[None, None], (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
                    arg = net(inp)[0].argmax(0)[: part.shape[0], : part.shape[1], : part.shape[2]].numpy()
                    keep = [slice(a - b, min(a + s, n) - b) for a, b, s, n in zip((z0, y0, x0), lo, step, (z, h, w))]
                    out[z0 : min(z, z0 + step[0]), y0 : min(h, y0 + step[1]), x0 : min(w, x0 + step[2])] = arg[
                        tuple(keep)
                    ]
    return out


def run_3d(data: list[dict], budget: float, patch=(16, 64, 64), batch: int = 2, seed: int = 0) -> dict:
    """Random patches (a third centred on a foreground voxel), flips, CE + soft Dice, AdamW, cosine decay."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = [(_zscore(d["image"]), d["mask"].astype(np.int64)) for d in data if d["split"] == "train"]
    net = _net3d()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    t0 = time.perf_counter()
    steps = 0
    while (elapsed := time.perf_counter() - t0) < budget:
        for group in opt.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        xs, ys = [], []
        for _ in range(batch):
            img, mask = train[rng.integers(len(train))]
            pz, py, px = (min(p, n // 8 * 8) for p, n in zip(patch, img.shape))
            if rng.random() < 1 / 3:
                fg = np.argwhere(mask > 0)
                c = fg[rng.integers(len(fg))]
            else:
                c = [rng.integers(n) for n in img.shape]
            start = [int(min(max(0, ci - p // 2), n - p)) for ci, p, n in zip(c, (pz, py, px), img.shape)]
            sl = tuple(slice(s, s + p) for s, p in zip(start, (pz, py, px)))
            xi, yi = img[sl], mask[sl]
            for axis in (1, 2):
                if rng.random() < 0.5:
                    xi, yi = np.flip(xi, axis), np.flip(yi, axis)
            xs.append(np.ascontiguousarray(xi))
            ys.append(np.ascontiguousarray(yi))
        net.train()
        opt.zero_grad()
        loss = _loss(net(torch.from_numpy(np.stack(xs))[:, None]), torch.from_numpy(np.stack(ys)))
        loss.backward()
        opt.step()
        steps += 1
    fit = time.perf_counter() - t0
    test = [d for d in data if d["split"] == "test"]
    t0 = time.perf_counter()
    preds = [_predict3d(net, d["image"]) for d in test]
    predict_test = time.perf_counter() - t0
    from patientml_widgets.training.metrics import volume_metrics

    metrics = volume_metrics([d["mask"] for d in test], preds, [d["spacing"] for d in test], 3)
    return {
        "metrics": metrics,
        "fit_s": fit,
        "steps": steps,
        "predict_test_s": predict_test,
        "predict_big": lambda vol: _predict3d(net, vol),
    }


# -- main ------------------------------------------------------------------------------------------------------


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="the 2.5-D run's budget; the 3-D trains as long")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the 512 x 512 x 300 prediction timing")
    parser.add_argument("--skip-3d", action="store_true")
    parser.add_argument("--big", default="300,512,512", help="the timed volume's Z,Y,X")
    parser.add_argument("--slices-3d", type=int, default=64, help="the 3-D model is timed on this many slices, scaled")
    args = parser.parse_args()
    big_shape = tuple(int(v) for v in args.big.split(","))
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = slabs()
    for split in ("train", "val", "test"):
        part = [d for d in data if d["split"] == split]
        log(f"{split}: {len(part)} slabs of {part[0]['image'].shape} (Z, Y, X), 1 mm")
    test = [d for d in data if d["split"] == "test"]
    from patientml_widgets.training.metrics import volume_metrics

    results = {"multi-Otsu (baseline)": {"metrics": volume_metrics([d["mask"] for d in test], baseline(data),
                                                                  [d["spacing"] for d in test], 3)}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        log(f"training 2.5-D (budget {args.budget:.0f} s) ...")
        results["2.5-D U-Net (package)"] = run_25d(data, args.budget, folder)
        if not args.skip_3d:
            budget = results["2.5-D U-Net (package)"]["fit_s"]  # the same training time as the 2.5-D run took
            log(f"training 3-D U-Net on patches ({budget:.0f} s, as the 2.5-D run) ...")
            results["3-D U-Net, 16x64x64 patches"] = run_3d(data, budget)
        big = np.random.default_rng(1).normal(40, 300, big_shape).astype(np.int16)
        for name, r in results.items():
            if "predict_big" not in r:
                continue
            if name.startswith("3-D") and args.slices_3d < big_shape[0]:  # minutes per run: time a part, scale up
                part = big[: args.slices_3d]
                log(f"timing {name} on {part.shape} once, scaled to {big_shape[0]} slices ...")
                r["predict_big_s"] = (
                    _median_s(lambda r=r, part=part: r["predict_big"](part), 1) * big_shape[0] / len(part)
                )
                r["scaled"] = True
            else:
                log(f"timing {name} on {big_shape} ...")
                r["predict_big_s"] = _median_s(lambda r=r: r["predict_big"](big), args.repeat)
            if "predict_big_fp32" in r and r.get("precision") != "fp32":
                log(f"timing {name} on {big_shape} in fp32 ...")
                r["predict_big_fp32_s"] = _median_s(lambda r=r: r["predict_big_fp32"](big), args.repeat)
    rows = []
    for name, r in results.items():
        m = r["metrics"]
        rows.append(
            [name, *(f"{v:.3f}" for v in m["dice"][1:]), f"{m['dice_mean']:.3f}",
             *(f"{v:.2f}" for v in m["hd95"][1:]), f"{m['hd95_mean']:.2f}",
             f"{r['fit_s']:.0f}" if "fit_s" in r else "-", str(r.get("steps", "-")),
             f"{r['predict_test_s']:.1f}" if "predict_test_s" in r else "-",
             (f"{r['predict_big_s']:.1f}" + (" (scaled)" if r.get("scaled") else "")) if "predict_big_s" in r else "-"]
        )  # fmt: skip
    big_name = f"predict {big_shape[2]}x{big_shape[1]}x{big_shape[0]} s (median of {args.repeat})"
    header = ["model", "Dice GM", "Dice WM", "Dice mean", "HD95 GM mm", "HD95 WM mm", "HD95 mean", "fit s", "steps",
              "predict test s", big_name]  # fmt: skip
    print(table(f"MNI152 T1 slabs: {len(test)} test slabs, 3-D metrics over whole volumes", header, rows))
    r = results["2.5-D U-Net (package)"]
    print(f"2.5-D plan: {r['plan']}, {r['precision']}, stopped: {r['stopped']}; worker wall {r['wall_s']:.0f} s")
    if "predict_big_fp32_s" in r:
        fp32 = r["predict_big_fp32_s"]
        print(f"2.5-D prediction of {big_shape} in fp32 (as on CPUs without native bf16): {fp32:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
