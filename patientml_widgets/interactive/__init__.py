"""Interactive segmentation: prompts (clicks, a box, scribbles) in, a probability map of one object out.

Engines share one small interface (:class:`Engine`): ``propose(image, prompts, window=...)`` gives a
float32 (H, W) map in [0, 1] at the image's own size. The canvas shows ``map >= 0.5`` as a proposal the
user accepts (Enter) or rejects (Esc).

Engines: :class:`ClassicalEngine` (a random walker on the image's own values, no model), the project's
click-guided model, :class:`SamEngine` (a SAM-family checkpoint on disk; torch and transformers load on
first use).
"""

from .classical import ClassicalEngine
from .engine import Engine
from .model import ProjectModelEngine
from .prompts import MAX_POINTS, Prompts, Scribble
from .sam import SamEngine

__all__ = ["ClassicalEngine", "Engine", "MAX_POINTS", "ProjectModelEngine", "Prompts", "SamEngine", "Scribble"]
