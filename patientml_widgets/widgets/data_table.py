"""DataTable: one table front end (server-side paging, sorting, filtering) for every table view."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets as w
import traitlets as t

from .base import STATIC, InvalidTrait, describe_error, run_callbacks

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
        self._fetch = fetch
        self._callbacks = {kind: w.CallbackDispatcher() for kind in ("row_click", "action", "poll")}
        super().__init__(
            title=title,
            columns=columns,
            sort=sort or {},
            page_size=page_size,
            actions=actions or [],
            empty_message=empty_message,
            active_filter=active_filter,
        )
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
            self.error = describe_error(e)
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
        self._callbacks["row_click"].register_callback(callback, remove=remove)

    def on_action(self, callback: Callable[[str], Any], remove: bool = False) -> None:
        """Call ``callback(action_key)`` when an action button is pressed."""
        self._callbacks["action"].register_callback(callback, remove=remove)

    def on_poll(self, callback: Callable[[], Any], remove: bool = False) -> None:
        """Call ``callback()`` every ``poll_seconds`` while the table is shown."""
        self._callbacks["poll"].register_callback(callback, remove=remove)

    @t.validate("columns")
    def _valid_columns(self, proposal):
        columns = []
        for c in proposal["value"]:
            if not isinstance(c, dict) or not c.get("key"):
                raise InvalidTrait(f"a column is a dict with a key, not {c!r}")
            if c.get("type", "text") not in COLUMN_TYPES:
                raise InvalidTrait(f"column type {c.get('type')!r} is not one of {COLUMN_TYPES}")
            columns.append({"sortable": False, "type": "text", **c})
        return columns

    @t.validate("page", "page_size")
    def _valid_paging(self, proposal):
        value = int(proposal["value"])
        minimum = 1 if proposal["trait"].name == "page_size" else 0
        if value < minimum:
            raise InvalidTrait(f"{proposal['trait'].name} must be at least {minimum}, not {value}")
        return value

    def _handle_message(self, _widget, content: dict[str, Any], _buffers) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind not in self._callbacks:
            self.error = f"unknown message from the browser: {kind!r}"
            return
        args = () if kind == "poll" else (content.get("id") if kind == "row_click" else content.get("key"),)
        run_callbacks(self._callbacks[kind], *args, on_error=self._show_error)

    def _show_error(self, text: str) -> None:
        self.error = text
