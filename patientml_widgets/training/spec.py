"""What a training run is told besides its data: the recorded, torch-free training spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ValidationError
from .hardware import PRECISIONS
from .metrics import OBJECTIVES

__all__ = ["TrainSpec", "parse_budget"]


@dataclass
class TrainSpec:
    """Everything a training run needs to know besides the data. Recorded on the run, resolved.

    Zero means "from the plan": the working resolution (``image_size`` caps its longer side),
    batch size, number of optimisation ``steps`` (or ``epochs`` passes over the training set),
    learning rate, network width and depth, the time ``budget_s`` the steps must fit, and how
    often the validation split is scored (``eval_every`` steps; training stops early when the
    objective stops improving and keeps the best checkpoint).
    """

    problem_type: str
    num_classes: int
    multi_label: bool = False
    architecture: str = ""
    in_channels: int = 3
    image_size: int = 0
    canvas: list[int] = field(default_factory=list)  # working (height, width), from the plan
    patch: list[int] = field(default_factory=list)  # training patch (segmentation), from the plan
    fit: str = "pad"  # "pad": aspect ratio kept; "stretch": runs from before the plan (squashed square)
    normalization: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 0
    steps: int = 0
    epochs: int = 0
    budget_s: float = 0.0
    eval_every: int = 0
    early_stopping: bool = True
    lr: float = 0.0
    weight_decay: float = 1e-4
    base_channels: int = 0
    depth: int = 0
    norm: str = ""  # the U-Net's normalisation: batch (fastest on CPUs) or group (small batches); "": the plan
    class_weights: list[float] | None = None
    seed: int = 0
    augment: bool = True
    tta: bool = True  # predict also on the flipped image and average (segmentation)
    precision: str = "auto"  # auto: bf16 only where the CPU or GPU runs it natively, else fp32 (see hardware)
    objective: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # hyperparameters for registered model code
    #: volumes: "2.5d" trains and predicts slice by slice, the neighbouring slices as extra input channels
    #: (set by the plan when the examples are volumes; "" for 2-D images)
    volume_mode: str = ""
    context: int = 0  # 2.5-D: neighbouring slices on each side given as channels (0: the plan's, 1)
    context_stride: int = 0  # 2.5-D: slices from one neighbour to the next (from the slice spacing)
    spacing: list[float] = field(default_factory=list)  # 2.5-D: working in-plane pixel size (dy, dx) in mm
    #: click guidance (segmentation, the built-in U-Net, 2-D images): the network also takes a positive and a
    #: negative click map and gives the clicked object's logit, trained with clicks simulated from the labels
    #: (``training.guidance``). None: the plan's (off unless asked); runs recorded before it: off
    guidance: bool | None = False

    def __post_init__(self) -> None:
        if not self.architecture:
            self.architecture = "unet" if self.problem_type == "segmentation" else "cnn"
        if not self.objective:
            self.objective = OBJECTIVES[self.problem_type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        known = {f.name for f in fields(cls)} - {"extra"}
        data = dict(data)
        if "canvas" not in data and data.get("image_size") and data.get("problem_type"):
            # a run recorded before the plan: a square of image_size, batch-norm networks, fixed epochs
            size = int(data["image_size"])
            data.update(
                canvas=[size, size], fit="stretch", norm="batch", depth=3, normalization={"scheme": "zscore"}, tta=False
            )
        extra = {**data.get("extra", {}), **{k: v for k, v in data.items() if k not in known and k != "extra"}}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    @classmethod
    def build(cls, problem_type: str, *layers: dict[str, Any] | None, **fixed: Any) -> TrainSpec:
        """Auto settings for the problem type, overridden by each layer in turn, then by ``fixed``."""
        values: dict[str, Any] = {}
        for layer in layers:
            values.update(layer or {})
        values.update(fixed, problem_type=problem_type)
        if "budget" in values:
            values["budget_s"] = values.pop("budget")
        if "budget_s" in values:
            values["budget_s"] = parse_budget(values["budget_s"])
        patch = values.get("patch") or []
        if not (isinstance(patch, (list, tuple)) and len(patch) in (0, 2)) or not all(
            isinstance(v, int) and v >= 8 for v in patch
        ):
            raise ValidationError("patch is [height, width] in pixels (at least 8 each), or [] for the plan's")
        values.setdefault("canvas", [])  # a new run is always planned (never the legacy path)
        values.setdefault("guidance", None)  # the plan's: guided when asked (a run recorded before it: off)
        try:
            spec = cls.from_dict(values)
        except TypeError as e:
            raise ValidationError(f"bad hyperparameters: {e}") from None
        for name in ("epochs", "batch_size", "image_size", "base_channels", "steps", "depth", "eval_every", "context"):
            try:
                value = int(getattr(spec, name))
            except (TypeError, ValueError):
                raise ValidationError(f"hyperparameter {name} must be a whole number") from None
            if value < 0 or value != getattr(spec, name):
                raise ValidationError(f"hyperparameter {name} must be a whole number, 0 (auto) or more")
        if spec.image_size and spec.image_size < 16:
            raise ValidationError("hyperparameter image_size must be at least 16 (or 0: from the data)")
        if spec.context > 4:
            raise ValidationError("hyperparameter context must be 0-4 neighbouring slices on each side (0: the plan's)")
        if spec.depth and not 2 <= spec.depth <= 5:
            raise ValidationError("hyperparameter depth must be 2-5 (or 0: from the data)")
        if not (isinstance(spec.lr, (int, float)) and spec.lr >= 0) or float(spec.budget_s) < 0:
            raise ValidationError("lr and budget_s must be 0 (auto) or positive")
        if spec.extra and spec.architecture in ("unet", "cnn"):
            raise ValidationError(f"unknown hyperparameters for the built-in {spec.architecture}: {sorted(spec.extra)}")
        if spec.precision not in PRECISIONS:
            raise ValidationError(f"precision is one of {', '.join(PRECISIONS)}")
        if spec.volume_mode not in ("", "2.5d"):
            raise ValidationError(
                "volume_mode is '2.5d' (volumes slice by slice with their neighbours) or '' (the plan's)"
            )
        if spec.norm not in ("", "group", "batch"):
            raise ValidationError("norm is 'group' or 'batch' (or '': from the batch size)")
        if not (spec.guidance is None or isinstance(spec.guidance, bool)):
            raise ValidationError("guidance is True or False (or None: the plan's)")
        if spec.guidance and (spec.problem_type != "segmentation" or spec.architecture != "unet"):
            raise ValidationError("guidance (clicks) is for the built-in U-Net of a segmentation model")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_budget(value: Any) -> float:
    """Seconds from ``90``, ``"90 s"``, ``"3 min"``, ``"1.5 h"`` (0 / None: the machine's default)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif not isinstance(value, str):
        raise ValidationError(f"a budget is seconds or a text like '90 s', '3 min', '1 h', not {value!r}")
    else:
        text = str(value).strip().lower().replace(" ", "")
        units = {
            "s": 1,
            "sec": 1,
            "secs": 1,
            "second": 1,
            "seconds": 1,
            "m": 60,
            "min": 60,
            "mins": 60,
            "minute": 60,
            "minutes": 60,
            "h": 3600,
            "hour": 3600,
            "hours": 3600,
        }
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :] or "s"
        try:
            seconds = float(number) * units[unit]
        except (ValueError, KeyError):
            raise ValidationError(f"a budget is seconds or a text like '90 s', '3 min', '1 h', not {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValidationError(f"a budget must be a positive time, not {value!r}")
    return seconds
