"""A trained run, loaded for prediction: in the kernel, or elsewhere from an export folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..interactive.prompts import Prompts
from .hardware import choose_precision, cpu_flags
from .spec import TrainSpec
from .trainer import (
    ModelFactory,
    VolumePrediction,
    build_model,
    load_state_dict,
    predict_image,
    predict_volume,
    propose_image,
)

__all__ = ["Predictor"]

EXPORT_VERSION = 1


class Predictor:
    """Weights + spec + class vocabulary. ``predict(array)`` gives class probabilities at the image's size."""

    def __init__(
        self,
        spec: TrainSpec,
        weights: bytes,
        classes: list[dict[str, Any]],
        factory: ModelFactory | None = None,
    ) -> None:
        self.spec = spec
        self.classes = classes
        self.class_indices = [int(c["index"]) for c in classes]
        self.net = build_model(spec, factory)
        state = load_state_dict(weights)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
            raise ValidationError(f"the weights do not fit the network of this run's spec: {e}") from None
        self.net.eval()
        self._weights = weights
        # predictions run on the CPU: in fp32 when the run was trained in fp32, else in bf16 only where
        # this CPU runs it natively
        self.precision = "fp32" if spec.precision == "fp32" else choose_precision("auto", "cpu", flags=cpu_flags())[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities: (k,) for classification, (k, H, W) at the image's own size for segmentation
        (resampled from the working resolution; averaged over flips when the run used ``tta``).
        A run trained on volumes predicts volumes: :meth:`predict_volume`.
        """
        if self.volumes:
            raise ValidationError("this run was trained on volumes; predict a volume with predict_volume")
        return predict_image(self.net, self.spec, image, precision=self.precision).numpy()

    @property
    def guided(self) -> bool:
        """Whether the run was trained with clicks, and so proposes the object a person clicks (:meth:`propose`)."""
        return bool(self.spec.guidance)

    def propose(self, image: np.ndarray, prompts: Prompts) -> np.ndarray:
        """The probability (H, W) float32 in [0, 1] that each pixel of ``image`` (as stored) belongs to the
        object ``prompts`` point at (clicks, a box, scribbles in the image's pixels), at the image's size.
        """
        if not self.guided:
            raise ValidationError(
                "this run was trained without clicks (guidance off): a run with hyperparameters={'guidance': True} "
                "proposes objects"
            )
        return propose_image(self.net, self.spec, image, prompts, precision=self.precision)

    @property
    def volumes(self) -> bool:
        """Whether the run was trained on volumes (2.5-D) and so predicts volumes, not 2-D images."""
        return bool(self.spec.volume_mode)

    def predict_volume(self, volume: np.ndarray, spacing: Any, *, batch_size: int = 16) -> VolumePrediction:
        """A (Z, Y, X) volume with its spacing (dz, dy, dx) in mm, predicted slice by slice (2.5-D runs).

        Segmentation: class positions at the volume's size, the mean probability of each class over its
        voxels, the uncertainty. Classification: the mean of the probabilities of the volume's central
        slices (``training.plan.central_slices``: the middle half, at most 32), and the uncertainty.
        """
        if not self.volumes:
            raise ValidationError("this run was trained on 2-D images; it predicts images, not volumes")
        volume = np.asarray(volume)
        if volume.ndim != 3:
            raise ValidationError(f"a volume is (slices, rows, columns), not an array of shape {volume.shape}")
        return predict_volume(self.net, self.spec, volume, spacing, precision=self.precision, batch_size=batch_size)

    def export(self, folder: str | Path, *, model: dict[str, Any], run: dict[str, Any]) -> Path:
        """Write ``weights.pt`` (a plain state dict) and ``config.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.pt").write_bytes(self._weights)
        config = {
            "export_version": EXPORT_VERSION,
            "spec": self.spec.to_dict(),
            "classes": self.classes,
            "model": model,
            "run": run,
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, factory: ModelFactory | None = None) -> Predictor:
        """Load an export written by :meth:`export` (weights are loaded with ``weights_only=True``)."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        spec = TrainSpec.from_dict(config["spec"])
        if spec.architecture.startswith("code:") and factory is None:
            raise ValidationError(f"this run used registered model code ({spec.architecture[5:]}); pass its factory")
        return cls(spec, (folder / "weights.pt").read_bytes(), config["classes"], factory)
