"""Real medical/biomedical images with reference labels, shipped inside pip packages, plus classical baselines.

Nothing is downloaded at run time: the data files come with the wheels of ``nilearn`` (MNI152 2009 T1 template
and its GM/WM probability maps) and ``stardist`` (a human-annotated fluorescence nuclei image). Neither package is
imported; their files are located with :func:`importlib.util.find_spec` and read with nibabel / tifffile.

    pip install nilearn nibabel scikit-image scikit-learn tifffile
    pip install --no-deps stardist

Run ``python benchmarks/real_images.py`` for a summary of every dataset and its baseline.

Caveats: both MRI sets come from one template brain (an average of 152 subjects, skull-stripped, 1 mm), so the
splits are region-disjoint (slabs of axial slices with gaps), not patient-disjoint, and its tissue labels are the
argmax of probability maps, not manual delineations; the nuclei masks are human annotations (512^2 cut into
16 tiles in spatially separate blocks).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

SPLITS = ("train", "val", "test")

# MNI T1: the slabs of axial slices, inferior to superior; a gap of _GAP slices is dropped wherever the split changes.
_SLAB_PLAN = ("train", "test", "train", "val", "train", "test", "train", "val", "train", "test", "train")
_SLAB_LEN = {"test": 7, "val": 6}
_GAP = 3
_MIN_BRAIN = 0.10  # keep axial slices whose brain (T1 > 0) covers at least this fraction of the slice

_TILE = 128
# stardist img2d (512x512) as a 4x4 grid of tiles: (row, col) -> block; the block decides the split.
_NUCLEI_BLOCKS = {
    "train-A": [(0, 0), (0, 1), (1, 0), (1, 1)],
    "train-B": [(2, 0), (2, 1), (3, 0), (3, 1)],
    "train-C": [(1, 2), (1, 3)],
    "val-A": [(0, 2), (0, 3)],
    "test-A": [(2, 2), (2, 3), (3, 2), (3, 3)],
}

_PATCH = 32
_CORE, _PURITY = 8, 0.75  # a patch's class: the tissue of at least 75% of its central 8x8 pixels
_PATCHES_PER_CLASS = {"train": 100, "val": 34, "test": 67}


@dataclass
class Dataset:
    """Images with reference labels, an explicit split and a subject (region) id per example."""

    name: str
    problem_type: str  # "segmentation" | "classification"
    classes: list[str]  # index 0 is the background for segmentation
    modality: str
    images: list[np.ndarray] = field(repr=False)
    targets: list[Any] = field(repr=False)  # uint8 masks of class indices, or int class indices
    splits: list[str] = field(repr=False)
    subjects: list[str] = field(repr=False)
    description: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]


# -- locating the packaged files ---------------------------------------------------------------------------------


def _package_dir(package: str, pip: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {package!r} package is needed for its data files: {pip}")
    return spec.submodule_search_locations[0]


def _data_file(package: str, pip: str, *parts: str) -> str:
    path = os.path.join(_package_dir(package, pip), *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing from the installed {package!r}; reinstall it: {pip}")
    return path


def _need(module: str, pip: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(f"the {module!r} package is needed: {pip}") from None


_NILEARN_PIP = "pip install nilearn nibabel"
_STARDIST_PIP = "pip install tifffile && pip install --no-deps stardist"


@functools.lru_cache(maxsize=1)
def _mni() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 2009a sym. T1 (raw stored values, float32) and its tissue labels, as (x, y, z) volumes."""
    nib = _need("nibabel", "pip install nibabel")
    name = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    vols = []
    for kind in ("t1", "gm", "wm"):
        path = _data_file("nilearn", _NILEARN_PIP, "datasets", "data", name.format(kind))
        vols.append(np.asarray(nib.load(path).dataobj, dtype=np.float32))
    t1, gm, wm = vols
    return t1, _tissue(gm / 255.0, wm / 255.0)  # the maps are stored as uint8 0..255 probabilities


def _axial(vol: np.ndarray, z: int) -> np.ndarray:
    """Axial slice z as an image: rows anterior to posterior, columns left to right (neurological view)."""
    return np.ascontiguousarray(vol[:, :, z].T[::-1])


def _tissue(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Class per voxel: argmax of (1 - gm - wm, gm, wm)."""
    return np.argmax(np.stack([1.0 - gm - wm, gm, wm]), axis=0).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _mri_slabs() -> list[tuple[int, str, str]]:
    """(z, split, slab id) for every axial slice used, inferior to superior; region-disjoint slabs with gaps."""
    t1, _ = _mni()
    brain = (t1 > 0).mean(axis=(0, 1))
    zs = np.flatnonzero(brain >= _MIN_BRAIN)
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    n_train = _SLAB_PLAN.count("train")
    fixed = sum(_SLAB_LEN.get(s, 0) for s in _SLAB_PLAN) + _GAP * (len(_SLAB_PLAN) - 1)
    train_len, extra = divmod(z1 - z0 - fixed, n_train)
    out, z, k_train = [], z0, 0
    for i, split in enumerate(_SLAB_PLAN):
        if split == "train":
            n = train_len + (1 if k_train < extra else 0)
            k_train += 1
        else:
            n = _SLAB_LEN[split]
        out += [(zz, split, f"mni152-slab{i:02d}") for zz in range(z, z + n)]
        z += n + _GAP
    return out


# -- datasets -----------------------------------------------------------------------------------------------------


def mri_tissue() -> Dataset:
    """Axial MNI152 T1 slices segmented into background, grey matter and white matter (argmax of the maps)."""
    t1, lab = _mni()
    images, targets, splits, subjects = [], [], [], []
    for z, split, slab in _mri_slabs():
        images.append(_axial(t1, z))
        targets.append(_axial(lab, z))
        splits.append(split)
        subjects.append(slab)
    return Dataset(
        "MNI152 T1 tissue",
        "segmentation",
        ["background", "grey matter", "white matter"],
        "MR",
        images,
        targets,
        splits,
        subjects,
        "nilearn's MNI152 2009a sym. T1 template (skull-stripped, 1 mm); labels = argmax(1-gm-wm, gm, wm).",
    )


def nuclei(*, tile: int = _TILE, instances: bool = False) -> Dataset:
    """``tile`` x ``tile`` tiles (128 or 64) of stardist's fluorescence nuclei image with its human-annotated
    instances as a binary mask (``instances``: the instance ids, uint16, one per nucleus).
    """
    tifffile = _need("tifffile", "pip install tifffile")
    img = tifffile.imread(_data_file("stardist", _STARDIST_PIP, "data", "images", "img2d.tif"))
    inst = tifffile.imread(_data_file("stardist", _STARDIST_PIP, "data", "images", "mask2d.tif"))
    images, targets, splits, subjects = [], [], [], []
    if _TILE % tile:
        raise ValueError(f"a tile is a divisor of {_TILE} pixels, not {tile}")
    per = _TILE // tile
    for block, tiles in _NUCLEI_BLOCKS.items():
        for r, c in tiles:
            for i in range(per * per):
                top, left = r * _TILE + (i // per) * tile, c * _TILE + (i % per) * tile
                window = np.s_[top : top + tile, left : left + tile]
                images.append(np.ascontiguousarray(img[window]))
                targets.append(inst[window].astype(np.uint16) if instances else (inst[window] > 0).astype(np.uint8))
                splits.append(block.split("-")[0])
                subjects.append(f"stardist-{block}")
    return Dataset(
        "stardist nuclei",
        "segmentation",
        ["background", "nucleus"],
        "microscopy",
        images,
        targets,
        splits,
        subjects,
        "stardist's img2d.tif (fluorescence nuclei, uint16) with mask2d.tif (human-annotated instances) > 0.",
    )


def mri_patches(seed: int = 0) -> Dataset:
    """32x32 MNI T1 patches labelled by the tissue of their centre region (at least 75% of the central 8x8
    pixels; inside the brain), class-balanced per split - like curated histology patch sets, whose label
    describes a region, not one pixel."""
    t1, lab = _mni()
    rng = np.random.default_rng(seed)
    half = _PATCH // 2
    slabs = _mri_slabs()
    classes = ["CSF/other", "grey matter", "white matter"]
    images, targets, splits, subjects = [], [], [], []
    for split in SPLITS:
        rows = [(z, slab) for z, s, slab in slabs if s == split]
        vol = np.stack([_axial(t1, z) for z, _ in rows])
        cls = np.stack([_axial(lab, z) for z, _ in rows])
        ok = np.zeros(vol.shape, bool)  # centres inside the brain, whole patch inside the slice
        ok[:, half:-half, half:-half] = vol[:, half:-half, half:-half] > 0
        for c in range(len(classes)):
            # the tissue of the patch's centre region: at least 75% of the central 8x8 pixels
            share = ndimage.uniform_filter((cls == c).astype(np.float32), size=(1, _CORE, _CORE), mode="constant")
            pool = np.argwhere(ok & (share >= _PURITY))
            pick = np.sort(rng.choice(len(pool), size=_PATCHES_PER_CLASS[split], replace=False))
            for k, r, col in pool[pick]:
                images.append(np.ascontiguousarray(vol[k, r - half : r + half, col - half : col + half]))
                targets.append(c)
                splits.append(split)
                subjects.append(rows[k][1])
    return Dataset(
        "MNI152 T1 tissue patches",
        "classification",
        classes,
        "MR",
        images,
        targets,
        splits,
        subjects,
        "32x32 patches from the mri_tissue slabs; class = the tissue of >= 75% of the central 8x8 pixels.",
    )


DATASETS = {"mri_tissue": mri_tissue, "nuclei": nuclei, "mri_patches": mri_patches}


# -- baselines ----------------------------------------------------------------------------------------------------


def dice_per_class(y_true_list, y_pred_list, k):
    """Dice per class, pooled over all pixels of all images (1.0 for a class absent from both)."""
    t = np.concatenate([a.ravel() for a in y_true_list]).astype(np.int64)
    p = np.concatenate([a.ravel() for a in y_pred_list]).astype(np.int64)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(float)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
    return dice  # report dice[1:].mean()


def _support(img: np.ndarray) -> np.ndarray:
    """Pixels to threshold: all, unless the image has a flat background at its minimum (>5% of the pixels)."""
    low = img == img.min()
    return ~low if low.mean() > 0.05 else np.ones_like(low)


def _otsu_bins(img: np.ndarray, k: int) -> np.ndarray:
    """Per-image (multi-)Otsu bins 0..k-1 by ascending intensity; a flat minimum background goes to bin 0."""
    from skimage.filters import threshold_multiotsu

    x = img.astype(np.float64)
    inside = _support(x)
    bins = np.zeros(x.shape, np.int64)
    values = x[inside]
    if values.size and values.min() < values.max():
        try:
            thresholds = threshold_multiotsu(values, classes=k)
        except ValueError:  # too few distinct values for k classes
            thresholds = np.quantile(values, np.linspace(0, 1, k + 1)[1:-1])
        bins[inside] = np.digitize(values, thresholds)
    return bins


def _segmentation_baseline(ds: Dataset) -> dict:
    k = len(ds.classes)
    train, test = ds.indices("train"), ds.indices("test")
    x = np.concatenate([ds.images[i].ravel().astype(np.float64) for i in train])
    y = np.concatenate([ds.targets[i].ravel() for i in train]).astype(np.int64)
    means = np.bincount(y, weights=x, minlength=k) / np.maximum(np.bincount(y, minlength=k), 1)
    order = np.argsort(means, kind="stable")  # bin j (j-th darkest) -> j-th darkest class on train
    preds = [order[_otsu_bins(ds.images[i], k)].astype(np.uint8) for i in test]
    dice = dice_per_class([ds.targets[i] for i in test], preds, k)
    method = "Otsu per image" if k == 2 else f"multi-Otsu ({k} classes) per image"
    return {"method": method, "metric": "dice_mean", "value": float(dice[1:].mean()), "per_class": dice.tolist()}


def _classification_baseline(ds: Dataset) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, recall_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def xy(split):
        idx = ds.indices(split)
        return np.stack([ds.images[i].ravel() for i in idx]).astype(np.float64), np.array([ds.targets[i] for i in idx])

    (x_tr, y_tr), (x_te, y_te) = xy("train"), xy("test")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x_tr, y_tr)
    pred = clf.predict(x_te)
    labels = list(range(len(ds.classes)))
    recall = recall_score(y_te, pred, labels=labels, average=None, zero_division=0)
    return {
        "method": "logistic regression on z-scored pixels",
        "metric": "balanced_accuracy",
        "value": float(balanced_accuracy_score(y_te, pred)),
        "per_class": recall.tolist(),  # recall per class
    }


def baseline(ds: Dataset) -> dict:
    """Classical baseline fitted on the train split, scored on the test split."""
    if ds.problem_type == "segmentation":
        return _segmentation_baseline(ds)
    return _classification_baseline(ds)


# -- into a project -----------------------------------------------------------------------------------------------


def load_into(project, ds: Dataset, name: str | None = None):
    """Create a model in ``project`` and add every example with its split, subject and submitted label."""
    model = project.create_model(name or ds.name, problem_type=ds.problem_type, classes=ds.classes)
    with project.batch():
        examples = project.add_examples(
            model,
            ds.images,
            subjects=ds.subjects,
            splits=ds.splits,
            sources=[{"modality": ds.modality} for _ in ds.images],
        )
        for ex, target in zip(examples, ds.targets, strict=True):
            if ds.problem_type == "segmentation":
                project.submit_label(ex, mask=target)
            else:
                project.submit_label(ex, classes=[ds.classes[int(target)]])
    return model


# -- summary ------------------------------------------------------------------------------------------------------


def summarize(ds: Dataset) -> str:
    """Counts per split, image shape/dtype, class frequencies and the baseline's test figure."""
    lines = [f"== {ds.name} ({ds.problem_type}, {ds.modality}): {len(ds)} examples"]
    for split in SPLITS:
        idx = ds.indices(split)
        subjects = sorted({ds.subjects[i] for i in idx})
        lines.append(f"  {split:5s}: {len(idx):4d} examples, {len(subjects)} subjects ({', '.join(subjects)})")
    shapes = sorted({(a.shape, str(a.dtype)) for a in ds.images})
    lo = min(float(a.min()) for a in ds.images)
    hi = max(float(a.max()) for a in ds.images)
    lines.append(f"  images: {', '.join(f'{s} {d}' for s, d in shapes)}; values {lo:g}..{hi:g}")
    k = len(ds.classes)
    for split in SPLITS:
        idx = ds.indices(split)
        if ds.problem_type == "segmentation":
            counts = np.bincount(np.concatenate([ds.targets[i].ravel() for i in idx]), minlength=k)
            freq = ", ".join(f"{c} {n / counts.sum():.3f}" for c, n in zip(ds.classes, counts))
            lines.append(f"  {split:5s} pixel fractions: {freq}")
        else:
            counts = np.bincount([ds.targets[i] for i in idx], minlength=k)
            lines.append(
                f"  {split:5s} examples per class: {', '.join(f'{c} {n}' for c, n in zip(ds.classes, counts))}"
            )
    b = baseline(ds)
    per = ", ".join(f"{c} {v:.3f}" for c, v in zip(ds.classes, b["per_class"]))
    lines.append(f"  baseline: {b['method']}: test {b['metric']} = {b['value']:.4f} (per class: {per})")
    return "\n".join(lines)


def main() -> int:
    start = time.perf_counter()
    for make in DATASETS.values():
        print(summarize(make()))
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
