"""The one interface every interactive-segmentation engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .prompts import Prompts

__all__ = ["Engine"]


class Engine(ABC):
    """Prompts + an image -> the probability that each pixel belongs to the prompted object.

    ``name`` is a stable id (recorded on the label's audit), ``label`` what the canvas's menu shows.
    ``image`` is the image as stored ((H, W) or (H, W, C), original values: 16-bit, HU); ``window``
    the display window {"center", "width"} in those values ({} or None: automatic), for engines that
    work on what the user sees.
    """

    name = "engine"
    label = "Engine"

    @abstractmethod
    def propose(self, image: np.ndarray, prompts: Prompts, *, window: dict[str, Any] | None = None) -> np.ndarray:
        """A float32 (H, W) map in [0, 1] at the image's size; all zeros when the prompts are empty."""

    def prepare(self, image: np.ndarray, *, window: dict[str, Any] | None = None) -> None:  # noqa: B027 - optional
        """Work done once per image before the first prompt (an embedding); may run in a thread."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"
