"""DataTable: one table front end (server-side paging, sorting, filtering) for every table view."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets as t

from .base import STATIC

__all__ = ["DataTable", "Page"]

log = logging.getLogger(__name__)

#: fetch(page, page_size, sort, descending, active_filter) -> (rows, total, filters)
Page = tuple[list[dict[str, Any]], int, list[dict[str, Any]]]
COLUMN_TYPES = ("text", "time", "badge", "icon", "thumbnail", "number")


class DataTable(anywidget.AnyWidget):
    """A page of typed rows. Give it a ``fetch`` function; it asks again when the user pages,
    sorts or filters, and when :meth:`refresh` is called.
    """

    _esm = STATIC / "data_table.js"

    title = t.Unicode("").tag(sync=True)
    columns = t.List(t.Dict()).tag(sync=True)
    rows = t.List(t.Dict()).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(50).tag(sync=True)
    sort = t.Dict().tag(sync=True)
    filters = t.List(t.Dict()).tag(sync=True)
    active_filter = t.Unicode("").tag(sync=True)
    actions = t.List(t.Dict()).tag(sync=True)
    loading = t.Bool(False).tag(sync=True)
    empty_message = t.Unicode("Nothing here yet.").tag(sync=True)
    poll_seconds = t.Float(2.0).tag(sync=True)
    error = t.Unicode("").tag(sync=True)

    def __init__(
        self,
        fetch: Callable[[int, int, str, bool, str], Page],
        columns: list[dict[str, Any]],
        *,
        title: str = "",
        sort: dict[str, Any] | None = None,
        page_size: int = 50,
        actions: list[dict[str, Any]] | None = None,
        empty_message: str = "Nothing here yet.",
        active_filter: str = "",
    ) -> None:
        for c in columns:
            if c.get("type", "text") not in COLUMN_TYPES:
                raise ValueError(f"column type {c.get('type')!r} is not one of {COLUMN_TYPES}")
        super().__init__(
            title=title,
            columns=[{"sortable": False, "type": "text", **c} for c in columns],
            sort=sort or {},
            page_size=page_size,
            actions=actions or [],
            empty_message=empty_message,
            active_filter=active_filter,
        )
        self._fetch = fetch
        self._row_handlers: list[Callable[[str], Any]] = []
        self._action_handlers: list[Callable[[str], Any]] = []
        self._poll_handlers: list[Callable[[], Any]] = []
        self.on_msg(self._handle_message)
        self.observe(lambda _: self.refresh(), names=["page", "sort", "active_filter", "page_size"])
        self.refresh()

    def refresh(self) -> None:
        """Fetch the current page again (after a change in the project)."""
        self.loading = True  # the front end dims the table while a slow page is fetched
        try:
            rows, total, filters = self._fetch(
                self.page,
                self.page_size,
                self.sort.get("key", ""),
                bool(self.sort.get("descending")),
                self.active_filter,
            )
        except Exception as e:  # shown, not swallowed
            log.exception("table fetch failed")
            self.error = "".join(traceback.format_exception_only(type(e), e)).strip()
            return
        finally:
            self.loading = False
        last = max(0, (total - 1) // self.page_size)
        if self.page > last:  # the data shrank under us: show the last page
            self.page = last
            return
        with self.hold_sync():
            self.rows, self.total, self.filters, self.error = rows, total, filters, ""

    def on_row_click(self, callback: Callable[[str], Any], remove: bool = False) -> None:
        """Call ``callback(row_id)`` when a row is clicked (or chosen with Enter)."""
        _register(self._row_handlers, callback, remove)

    def on_action(self, callback: Callable[[str], Any], remove: bool = False) -> None:
        """Call ``callback(action_key)`` when an action button is pressed."""
        _register(self._action_handlers, callback, remove)

    def on_poll(self, callback: Callable[[], Any], remove: bool = False) -> None:
        """Call ``callback()`` every ``poll_seconds`` while the table is shown."""
        _register(self._poll_handlers, callback, remove)

    def _handle_message(self, _widget, content: dict[str, Any], _buffers) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        handlers = {"row_click": self._row_handlers, "action": self._action_handlers, "poll": self._poll_handlers}
        if kind not in handlers:
            self.error = f"unknown message from the browser: {kind!r}"
            return
        args = () if kind == "poll" else (content.get("id") if kind == "row_click" else content.get("key"),)
        for handler in list(handlers[kind]):
            try:
                handler(*args)
            except Exception as e:
                log.exception("table %s handler failed", kind)
                self.error = "".join(traceback.format_exception_only(type(e), e)).strip()


def _register(handlers: list, callback, remove: bool) -> None:
    if remove:
        handlers.remove(callback)
    else:
        handlers.append(callback)
