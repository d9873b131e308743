"""Small helpers shared by the views: refresh on project changes, escaped HTML, badges."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..project import Project
from ..records import Change

__all__ = ["escape", "follow", "message"]


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
    return lambda: project.unobserve(handler) if handler in project._observers else None
