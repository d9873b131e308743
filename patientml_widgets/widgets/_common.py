"""Small helpers shared by the views: refresh on project changes, escaped HTML, badges."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..project import Project
from ..records import Change

__all__ = ["STATIC", "View", "escape", "follow", "message"]

#: the front ends: one anywidget ES module per widget, the only copy (their tests are in js/)
STATIC = Path(__file__).parent.parent / "static"


def escape(value: Any) -> str:
    """Text for an HTML widget: every user string goes through here."""
    return html.escape(str(value), quote=True)


def message(text: str, tone: str = "gray") -> w.HTML:
    colors = {"gray": "#5f6368", "red": "#c5221f", "green": "#137333"}
    return w.HTML(f'<span style="color:{colors.get(tone, "#5f6368")}">{escape(text)}</span>')


def follow(
    project: Project, callback: Callable[[Change], Any], *, model_id: str | None = None, kinds: set[str] | None = None
) -> Callable[[], None]:
    """Call ``callback(change)`` for the project's changes that concern a view; returns an unsubscribe.

    Changes from other processes arrive as ``external`` (picked up by ``project.poll()``, which
    the tables call every few seconds while they are shown) and always count.
    """

    def handler(change: Change) -> None:
        if change.kind == "external":
            callback(change)
            return
        if model_id is not None and change.model_id not in (None, model_id):
            return
        if kinds is not None and change.kind not in kinds:
            return
        callback(change)

    project.observe(handler)
    return lambda: project.unobserve(handler)


class View:
    """Mixin for the composed views: ``close()`` also stops following the project and closes
    every widget inside (ipywidgets keeps widgets alive until they are closed).
    """

    _unfollows: list[Callable[[], None]]

    def follow(self, project: Project, callback: Callable[[Change], Any], **kwargs: Any) -> None:
        self.__dict__.setdefault("_unfollows", []).append(follow(project, callback, **kwargs))

    def close(self) -> None:
        for unfollow in self.__dict__.pop("_unfollows", []):
            unfollow()
        for child in list(getattr(self, "children", ())):
            close_tree(child)
        super().close()  # type: ignore[misc]


def close_tree(widget: w.Widget) -> None:
    """Close a widget and everything inside it (tabs and boxes do not close their children)."""
    if not isinstance(widget, View):
        for child in list(getattr(widget, "children", ())):
            close_tree(child)
    widget.close()
