"""A promptable foundation model the user already has on disk: a SAM-family checkpoint, never downloaded.

``SamEngine("path/to/sam-vit-base")`` checks the folder at once (torch-free): a Hugging Face format SAM
checkpoint (``config.json`` with ``model_type`` "sam" and ``model.safetensors``, or shards with
``model.safetensors.index.json``). The model loads on first use (or :meth:`SamEngine.load`) through
:mod:`patientml_widgets.training.sam`, where torch and transformers live.

Per image, the image encoder runs once (:meth:`SamEngine.prepare`, which may run in a thread) and its
embedding is kept in a small LRU cache keyed by a hash of the image's bytes, its shape, dtype and the window;
each click then runs only the prompt encoder and the mask decoder (tens of milliseconds on a CPU). A
``propose`` for an image whose embedding is being computed waits for it rather than computing it twice.

Preprocessing follows the checkpoint: ``"sam"`` (SAM, SlimSAM and fine-tunes of them: the windowed 8-bit image,
grey repeated to RGB, the long side resized to the model's size, normalised with the pixel mean / std of the
folder's ``preprocessor_config.json`` (ImageNet's by default, as SAM), padded to a square at the bottom right)
or ``"medsam"`` (MedSAM's own: resized to the square, scaled to [0, 1] by its min and max, no mean / std, no
padding). ``preprocessing="auto"`` picks ``"medsam"`` when the folder's name says medsam.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ValidationError
from ..imaging.window import apply_window
from .engine import Engine
from .prompts import Prompts

__all__ = ["INSTALL_HINT", "Checkpoint", "SamEngine", "check_checkpoint", "image_key", "prompt_points"]

INSTALL_HINT = 'the SAM engine needs transformers and safetensors: pip install "patientml-widgets[sam]"'
TORCH_HINT = "the SAM engine needs PyTorch: pip install torch==2.13.0 (the CPU build)"

SCRIBBLE_POINTS = 5  #: points sampled along each scribble (evenly by length, both ends included)
MAX_DECODER_POINTS = 64  #: more prompt points than this: the most recent clicks are kept
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # SAM's pixel mean / std, in [0, 1] units (x 255: 123.675, ...)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSING = ("auto", "sam", "medsam")
_OTHER_FAMILIES = {  # model types of related checkpoints transformers' SamModel does not run
    "sam2": "SAM 2",
    "sam2_video": "SAM 2",
    "sam_hq": "SAM-HQ",
    "edgetam": "EdgeTAM",
    "sam3": "SAM 3",
}


@dataclass(frozen=True)
class Checkpoint:
    """What the folder check found: the folder, its config and the preprocessing it implies."""

    folder: Path
    config: dict[str, Any]
    weights: tuple[Path, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    normalize: bool


@dataclass
class _Embedded:
    embedding: Any  # the encoder's output (a torch tensor, kept opaque here)
    resized: tuple[int, int]  # (h, w) of the image inside the model's square frame
    shape: tuple[int, int]  # (H, W) of the image


class SamEngine(Engine):
    """SAM-family promptable segmentation from a local Hugging Face checkpoint folder.

    ``cache_size`` image embeddings are kept (least recently used dropped; about 4 MB each at ViT-B/L/H).
    ``refine_with_mask``: feed the previous low-resolution logits to the decoder when a prompt adds one click
    to the previous prompts (SAM's iterative refinement; off by default, as in Meta's demo).
    """

    name = "sam"

    def __init__(
        self,
        path: str | Path,
        *,
        preprocessing: str = "auto",
        cache_size: int = 4,
        refine_with_mask: bool = False,
    ) -> None:
        if preprocessing not in PREPROCESSING:
            raise ValidationError(f"preprocessing is one of {', '.join(PREPROCESSING)}, not {preprocessing!r}")
        if not (isinstance(cache_size, int) and not isinstance(cache_size, bool) and cache_size >= 1):
            raise ValidationError(f"cache_size is a whole number of images, at least 1, not {cache_size!r}")
        require_sam_packages()
        self.checkpoint = check_checkpoint(path)
        folder = self.checkpoint.folder
        if preprocessing == "auto":
            named = f"{folder.name} {self.checkpoint.config.get('_name_or_path', '')}".lower()
            preprocessing = "medsam" if "medsam" in named else "sam"
        self.preprocessing = preprocessing
        self.label = f"SAM ({folder.name})"
        self.cache_size = cache_size
        self.refine_with_mask = bool(refine_with_mask)
        self.embeddings_computed = 0  #: how many times the image encoder ran (cache misses)
        self._net: Any = None
        self._load_lock = threading.Lock()
        self._encoder_lock = threading.Lock()  # one encoder run at a time: each already uses every core
        self._lock = threading.Lock()  # guards the cache, the preparations in flight and the last proposal
        self._cache: OrderedDict[str, _Embedded] = OrderedDict()
        self._pending: dict[str, Future[_Embedded]] = {}
        self._last: tuple[str, Prompts, Any] | None = None

    # -- the Engine interface --------------------------------------------------------------

    def prepare(self, image: np.ndarray, *, window: dict[str, Any] | None = None) -> None:
        """Compute (or find) the image's embedding; safe to call from a thread."""
        image = _check_image(image)
        self._embedding(image, window, image_key(image, window))

    def propose(self, image: np.ndarray, prompts: Prompts, *, window: dict[str, Any] | None = None) -> np.ndarray:
        image = _check_image(image)
        h, w = image.shape[:2]
        if prompts.empty:
            return np.zeros((h, w), np.float32)
        key = image_key(image, window)
        entry = self._embedding(image, window, key)
        rh, rw = entry.resized
        sx, sy = rw / w, rh / h

        def frame(x: float, y: float) -> tuple[float, float]:  # pixel centres to the model's frame
            return (min(max(x, -0.5), w - 0.5) + 0.5) * sx - 0.5, (min(max(y, -0.5), h - 0.5) + 0.5) * sy - 0.5

        clicks = prompt_points(prompts)
        points = np.array([frame(x, y) for x, y, _ in clicks], np.float32).reshape(-1, 2)
        labels = np.array([1 if p else 0 for _, _, p in clicks], np.int64)
        box = None
        if prompts.box is not None:
            x0, y0, x1, y1 = prompts.box
            box = np.array([*frame(min(x0, x1), min(y0, y1)), *frame(max(x0, x1), max(y0, y1))], np.float32)
        mask_input = None
        if self.refine_with_mask:
            with self._lock:
                last = self._last
            if last is not None and last[0] == key and _adds_one_click(last[1], prompts):
                mask_input = last[2]
        multimask = len(prompts.points) == 1 and prompts.box is None and not prompts.scribbles
        out = self._load().decode(
            entry.embedding,
            points=points if len(points) else None,
            labels=labels if len(points) else None,
            box=box,
            mask_input=mask_input,
            multimask=multimask,
            resized=entry.resized,
            shape=(h, w),
        )
        with self._lock:
            self._last = (key, prompts, out.low_res_logits)
        return np.clip(out.probabilities, 0.0, 1.0).astype(np.float32, copy=False)

    # -- the model and the cache -----------------------------------------------------------

    def load(self) -> Any:
        """Load the model now (else the first ``prepare`` / ``propose`` does); returns the loaded network."""
        return self._load()

    @property
    def loaded(self) -> bool:
        return self._net is not None

    @property
    def cached(self) -> int:
        """How many image embeddings the cache holds."""
        with self._lock:
            return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._last = None

    def _load(self) -> Any:
        if self._net is None:
            with self._load_lock:
                if self._net is None:
                    from ..training.sam import load_sam

                    self._net = load_sam(self.checkpoint.folder)
        return self._net

    def _embedding(self, image: np.ndarray, window: dict[str, Any] | None, key: str) -> _Embedded:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            waiting = self._pending.get(key)
            if waiting is None:
                future: Future[_Embedded] = Future()
                self._pending[key] = future
        if waiting is not None:  # another thread is computing this very embedding: wait for it
            return waiting.result()
        try:
            net = self._load()
            pixels, resized = self.pixels(image, window, net.image_size)
            with self._encoder_lock:
                embedding = net.embed(pixels)
                self.embeddings_computed += 1
            entry = _Embedded(embedding, resized, (int(image.shape[0]), int(image.shape[1])))
        except BaseException as e:
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(e)
            raise
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            self._pending.pop(key, None)
        future.set_result(entry)
        return entry

    def pixels(self, image: np.ndarray, window: dict[str, Any] | None, size: int) -> tuple[np.ndarray, tuple[int, int]]:
        """What the image encoder sees: float32 (3, size, size), and the (h, w) the image fills in it."""
        rgb = _rgb8(_check_image(image), window)
        h, w = rgb.shape[:2]
        if self.preprocessing == "medsam":  # MedSAM: the whole square, [0, 1] by min / max, no mean / std
            resized = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC), np.float32)
            lo, hi = float(resized.min()), float(resized.max())
            return ((resized - lo) / max(hi - lo, 1e-8)).transpose(2, 0, 1).copy(), (size, size)
        scale = size / max(h, w)
        rh, rw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        scaled: np.ndarray = np.asarray(Image.fromarray(rgb).resize((rw, rh), Image.Resampling.BILINEAR), np.float32)
        scaled /= 255.0
        if self.checkpoint.normalize:
            scaled = (scaled - np.array(self.checkpoint.mean, np.float32)) / np.array(self.checkpoint.std, np.float32)
        out = np.zeros((3, size, size), np.float32)
        out[:, :rh, :rw] = scaled.transpose(2, 0, 1)
        return out, (rh, rw)


# -- the folder ------------------------------------------------------------------------------


def require_sam_packages() -> None:
    """Raise a ValidationError naming the install command when torch, transformers or safetensors is missing."""
    if not _installed("torch"):
        raise ValidationError(f"{TORCH_HINT}, then {INSTALL_HINT.split(': ', 1)[1]}")
    if not (_installed("transformers") and _installed("safetensors")):
        raise ValidationError(INSTALL_HINT)


def _installed(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it."""
    if name in sys.modules:
        return sys.modules[name] is not None  # None: imports of it are blocked
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_checkpoint(path: str | Path) -> Checkpoint:
    """The SAM checkpoint in ``path``, checked without loading it, or a ValidationError saying what is wrong."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ValidationError(f"no SAM checkpoint at {folder}: the folder does not exist")
    if not folder.is_dir():
        raise ValidationError(
            f"{folder} is a file; a SAM checkpoint is a folder in Hugging Face format (config.json + model.safetensors)"
        )
    folder = folder.resolve()
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValidationError(
            f"{folder} holds no config.json: a SAM checkpoint is a folder in Hugging Face format "
            "(config.json + model.safetensors), such as a copy of facebook/sam-vit-base"
        )
    config = _read_json(config_file, "config.json")
    model_type = config.get("model_type")
    if model_type != "sam":
        family = _OTHER_FAMILIES.get(str(model_type))
        what = f"a {family} checkpoint (model_type {model_type!r})" if family else f"model_type {model_type!r}"
        raise ValidationError(
            f"{config_file} describes {what}, not a SAM model: this engine runs checkpoints with model_type "
            '"sam" (SAM ViT-B/L/H, MedSAM, SlimSAM)'
        )
    weights = _weight_files(folder)
    for f in weights:
        _check_safetensors(f)
    mean, std, normalize = IMAGENET_MEAN, IMAGENET_STD, True
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        settings = _read_json(pre, "preprocessor_config.json")
        normalize = settings.get("do_normalize", True) is not False
        mean = _triple(settings.get("image_mean", IMAGENET_MEAN), pre, "image_mean", positive=False)
        std = _triple(settings.get("image_std", IMAGENET_STD), pre, "image_std", positive=True)
    return Checkpoint(folder, config, weights, mean, std, normalize)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValidationError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValidationError(f"{path} is not a {what} (a JSON object)")
    return data


def _triple(value: Any, path: Path, name: str, *, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or (positive and min(value) <= 0):
        raise ValidationError(f"{path}: {name} is three finite numbers{' above 0' if positive else ''}, not {value!r}")
    return float(value[0]), float(value[1]), float(value[2])


def _weight_files(folder: Path) -> tuple[Path, ...]:
    single = folder / "model.safetensors"
    if single.is_file():
        return (single,)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, "model.safetensors.index.json").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValidationError(f"{index} has no weight_map")
        shards = []
        for name in sorted({str(v) for v in weight_map.values()}):
            shard = (folder / name).resolve()
            if shard.parent != folder or not shard.name.endswith(".safetensors"):
                raise ValidationError(f"{index} names {name!r}, not a .safetensors file in the folder")
            if not shard.is_file():
                raise ValidationError(f"{index} names {name}, which is missing from {folder}")
            shards.append(shard)
        return tuple(shards)
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pth", ".pt", ".ckpt", ".pkl"})
    if pickles:
        raise ValidationError(
            f"{folder} holds {', '.join(pickles)} but no model.safetensors: pickled weights can run code when "
            "loaded, so they are refused. Convert the folder to safetensors once, where you trust the file: "
            "SamModel.from_pretrained(folder, use_safetensors=False).save_pretrained(new_folder) "
            '(see the README, "SAM")'
        )
    raise ValidationError(f"{folder} holds no model.safetensors: copy the checkpoint's weights file there")


def _check_safetensors(path: Path) -> None:
    """The safetensors header is readable and the tensors it lists fill the file exactly (a truncated or
    overwritten file is refused before torch sees it).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= n <= min(size - 8, 100_000_000):
                raise ValueError("the header length is wrong")
            header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        end = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
                raise ValueError(f"the tensor {name!r} has no data offsets")
            end = max(end, offsets[1])
        if 8 + n + end != size:
            raise ValueError(f"the tensors need {8 + n + end} bytes and the file has {size} (truncated or damaged)")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValidationError(f"{path} is not a readable safetensors file: {e}") from None


# -- images and prompts ----------------------------------------------------------------------


def _check_image(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))):
        raise ValidationError(f"an image is (H, W) or (H, W, 1-4 channels), not an array of shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValidationError(f"the image is empty ({arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ValidationError(f"an image holds real numbers, not {arr.dtype}")
    return arr


def image_key(image: np.ndarray, window: Mapping[str, Any] | None) -> str:
    """The cache key of an image seen through ``window``: a hash of its bytes, shape, dtype and the window."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.shape}|{image.dtype.str}|{_window_key(window)}|".encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def _window_key(window: Mapping[str, Any] | None) -> str:
    try:
        return f"{float(window['center'])!r},{float(window['width'])!r}" if window else "auto"
    except (KeyError, TypeError, ValueError):
        return "auto"


def _rgb8(image: np.ndarray, window: dict[str, Any] | None) -> np.ndarray:
    """The image as the user sees it: windowed to 8 bits (automatic without a window), as (H, W, 3)."""
    arr = image
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    if arr.ndim == 3:
        arr = arr[:, :, :1] if arr.shape[2] == 2 else arr[:, :, :3]  # grey + alpha -> grey; RGBA -> RGB
    out = apply_window(arr, window or None)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def prompt_points(prompts: Prompts) -> list[tuple[float, float, bool]]:
    """The decoder's points: each click, then :data:`SCRIBBLE_POINTS` points along each scribble; the last
    :data:`MAX_DECODER_POINTS` of them when there are more (clicks are kept first).
    """
    sampled: list[tuple[float, float, bool]] = []
    for s in prompts.scribbles:
        sampled += [(x, y, s.positive) for x, y in _along(s.points, SCRIBBLE_POINTS)]
    points = [*sampled, *((float(x), float(y), bool(p)) for x, y, p in prompts.points)]
    return points[-MAX_DECODER_POINTS:]


def _along(pts: tuple[tuple[float, float], ...], n: int) -> list[tuple[float, float]]:
    """``n`` points evenly spaced by length along a polyline, both ends included (one for a dot)."""
    xy = np.asarray(pts, np.float64).reshape(-1, 2)
    lengths = np.hypot(*np.diff(xy, axis=0).T) if len(xy) > 1 else np.zeros(0)
    total = float(lengths.sum())
    if total <= 0:
        return [(float(xy[0, 0]), float(xy[0, 1]))]
    at = np.concatenate([[0.0], np.cumsum(lengths)])
    targets = np.linspace(0.0, total, n)
    return [(float(np.interp(t, at, xy[:, 0])), float(np.interp(t, at, xy[:, 1]))) for t in targets]


def _adds_one_click(before: Prompts, now: Prompts) -> bool:
    return (
        before.box == now.box
        and before.scribbles == now.scribbles
        and len(now.points) == len(before.points) + 1
        and now.points[:-1] == before.points
    )
