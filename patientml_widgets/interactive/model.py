"""The project's own model as an interactive engine: a run trained with click guidance proposes the clicked object."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import ValidationError
from .engine import Engine
from .prompts import Prompts

__all__ = ["GuidedPredictor", "ProjectModelEngine"]


class GuidedPredictor(Protocol):
    """What the engine needs of a run loaded for prediction (``training.predictor.Predictor``)."""

    @property
    def guided(self) -> bool: ...

    def propose(self, image: np.ndarray, prompts: Prompts) -> np.ndarray: ...


class ProjectModelEngine(Engine):
    """A guided run (``Predictor.guided``) of the model being labelled: clicks, a box or scribbles in, the
    object out. The run does the torch work; it reads the image as stored (its own normalisation), so the
    display ``window`` plays no part.
    """

    name = "model"

    def __init__(self, predictor: GuidedPredictor, *, run: str = "") -> None:
        if not predictor.guided:
            raise ValidationError(
                f"run {run or '(unnamed)'} was trained without clicks (guidance off), so it cannot propose objects: "
                "train a run that learns them: project.train(model, hyperparameters={'guidance': True})"
            )
        self.predictor = predictor
        self.label = f"Project model (run {run})" if run else "Project model"

    def propose(self, image: np.ndarray, prompts: Prompts, *, window: dict[str, Any] | None = None) -> np.ndarray:
        image = np.asarray(image)
        if prompts.empty:
            return np.zeros(image.shape[:2], np.float32)
        return np.asarray(self.predictor.propose(image, prompts), dtype=np.float32)
