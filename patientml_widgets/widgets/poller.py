"""Poller: an invisible widget that makes the kernel call ``project.poll()`` while a view is shown."""

from __future__ import annotations

import anywidget
import traitlets as t

from ..project import Project
from .base import STATIC

__all__ = ["Poller"]


class Poller(anywidget.AnyWidget):
    _esm = STATIC / "poller.js"
    seconds = t.Float(2.0).tag(sync=True)

    def __init__(self, project: Project, seconds: float = 2.0) -> None:
        super().__init__(seconds=seconds)
        self.on_msg(lambda _w, content, _b: content.get("kind") == "poll" and project.poll())
