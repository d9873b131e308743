"""The views: anywidget front ends over :class:`~patientml_widgets.Project` (or plain arrays)."""

from .label_canvas import LabelCanvas

__all__ = ["LabelCanvas"]
