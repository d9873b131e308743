"""What the views share: following the project's changes, one notice area per view, callbacks.
HTML is built only in :mod:`.markup`.

One way to register callbacks: ``on_<event>(callback, remove=False)``, kept in ipywidgets'
``CallbackDispatcher``. One way to show errors: a composed view has one ``notice`` area
(:class:`Notice`) where its own failures and those of the callbacks it runs are shown, with
the traceback logged; a front-end widget (DataTable, LabelCanvas) shows them in its ``error``
trait. Nothing is swallowed and nothing goes to a warning no one reads.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ipywidgets as w
import traitlets as t

from ..errors import PatientMLError, ValidationError
from ..project import Project
from ..records import Change
from .markup import HTML, Markup, escape, html

__all__ = ["STATIC", "InvalidTrait", "Notice", "View", "describe_error", "follow", "message", "run_callbacks"]

log = logging.getLogger(__name__)

#: the shipped front ends (the only copy; js/ holds their tests)
STATIC = Path(__file__).parent.parent / "static"
TONES = {"gray": "#5f6368", "red": "#c5221f", "green": "#137333"}


def message(text: str, tone: str = "gray") -> HTML:
    return HTML(_span(text, tone))


def _span(text: str, tone: str) -> Markup:
    return html('<span style="color:{}">{}</span>', TONES.get(tone, TONES["gray"]), text)


class InvalidTrait(t.TraitError, ValidationError):
    """A value a widget's trait cannot take (a ValidationError and a traitlets TraitError)."""


def describe_error(error: BaseException) -> str:
    """One line for a person: the exception's type (unless it is one of ours) and message."""
    if isinstance(error, PatientMLError):
        return str(error)
    return "".join(traceback.format_exception_only(type(error), error)).strip()


class Notice(HTML):
    """A view's one message area: what it did (gray / green) and what failed (red)."""

    def show(self, text: str, tone: str = "gray") -> None:
        self.value = _span(text, tone) if text else escape("")

    def error(self, error: BaseException | str, context: str = "") -> None:
        """Show a failure (logging its traceback, so the details are in the log too)."""
        if isinstance(error, BaseException):
            log.error("%s", context or "view action failed", exc_info=error)
            error = describe_error(error)
        self.show(f"{context}: {error}" if context else error, "red")

    def clear(self) -> None:
        self.value = escape("")


def run_callbacks(callbacks: w.CallbackDispatcher, *args: Any, on_error: Callable[[str], Any]) -> None:
    """Call every registered callback; a failing one is reported with ``on_error(text)`` and the rest still run."""
    for callback in list(callbacks.callbacks):
        try:
            callback(*args)
        except Exception as e:
            log.exception("callback %r failed", callback)
            on_error(f"{getattr(callback, '__name__', callback)!r} failed: {describe_error(e)}")


def follow(
    project: Project,
    callback: Callable[[Change], Any],
    *,
    model_id: str | None = None,
    kinds: Iterable[str] | None = None,
    tables: Iterable[str] | None = None,
) -> Callable[[], None]:
    """Call ``callback(change)`` for the project's changes that concern a view; returns an unsubscribe.

    A change concerns the view when it is of one of ``kinds`` (if given), of its model (if
    given) and wrote one of ``tables`` (if given). Changes from other processes arrive as
    ``external`` (picked up by ``project.poll()``, which the tables call every few seconds
    while they are shown) and count when they moved one of ``tables``.
    """
    kinds = set(kinds) if kinds is not None else None
    tables = tuple(tables) if tables is not None else None

    def handler(change: Change) -> None:
        if tables is not None and not change.touches(*tables):
            return
        if change.kind != "external":
            if model_id is not None and change.model_id not in (None, model_id):
                return
            if kinds is not None and change.kind not in kinds:
                return
        callback(change)

    project.observe(handler)
    return lambda: project.unobserve(handler)


class View:
    """Mixin for the composed views: one ``notice`` area; ``follow`` runs callbacks that show
    their failures there; ``close()`` also stops following the project and closes every widget
    inside (ipywidgets keeps widgets alive until they are closed).
    """

    notice: Notice
    _unfollows: list[Callable[[], None]]

    def follow(self, project: Project, callback: Callable[[Change], Any], **kwargs: Any) -> None:
        self.__dict__.setdefault("_unfollows", []).append(follow(project, self.guarded(callback), **kwargs))

    def guarded(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``callback`` with its failures shown in this view's notice area instead of raised."""

        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except Exception as e:
                self._notice().error(e)
                return None

        return run

    def _notice(self) -> Notice:
        if "notice" not in self.__dict__:
            self.notice = Notice()
        return self.notice

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
