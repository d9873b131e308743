"""What a training run is told besides its data: the recorded, torch-free training spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ValidationError
from .metrics import OBJECTIVES

__all__ = ["DEFAULTS", "TrainSpec"]

#: default hyperparameters per problem type, chosen on the demo project (2 CPU cores):
#: the U-Net reaches test Dice > 0.9 in about 20 s, the CNN balanced accuracy 1.0 in 3 s.
DEFAULTS: dict[str, dict[str, Any]] = {
    "segmentation": {"architecture": "unet", "image_size": 128, "epochs": 8, "batch_size": 8, "lr": 1e-2},
    "classification": {"architecture": "cnn", "image_size": 64, "epochs": 10, "batch_size": 16, "lr": 5e-3},
}


@dataclass
class TrainSpec:
    """Everything a training run needs to know besides the data. Recorded on the run."""

    problem_type: str
    num_classes: int
    multi_label: bool = False
    architecture: str = ""
    in_channels: int = 3
    image_size: int = 128
    epochs: int = 8
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    base_channels: int = 16
    seed: int = 0
    augment: bool = True
    precision: str = "bf16"  # bf16 autocast (1.3x faster for the demo U-Net on these CPUs) or fp32
    objective: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # hyperparameters for registered model code

    def __post_init__(self) -> None:
        if not self.architecture:
            self.architecture = "unet" if self.problem_type == "segmentation" else "cnn"
        if not self.objective:
            self.objective = OBJECTIVES[self.problem_type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = {**data.get("extra", {}), **{k: v for k, v in data.items() if k not in known and k != "extra"}}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    @classmethod
    def build(cls, problem_type: str, *layers: dict[str, Any], **fixed: Any) -> TrainSpec:
        """Defaults for the problem type, overridden by each layer in turn, then by ``fixed``."""
        values: dict[str, Any] = dict(DEFAULTS[problem_type])
        for layer in layers:
            values.update(layer or {})
        values.update(fixed, problem_type=problem_type)
        try:
            spec = cls.from_dict(values)
        except TypeError as e:
            raise ValidationError(f"bad hyperparameters: {e}") from None
        for name in ("epochs", "batch_size", "image_size", "base_channels"):
            if int(getattr(spec, name)) < 1:
                raise ValidationError(f"hyperparameter {name} must be at least 1")
        if spec.extra and spec.architecture in ("unet", "cnn"):
            raise ValidationError(f"unknown hyperparameters for the built-in {spec.architecture}: {sorted(spec.extra)}")
        if spec.precision not in ("bf16", "fp32"):
            raise ValidationError("precision is bf16 or fp32")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
