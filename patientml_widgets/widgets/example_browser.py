"""ExampleBrowser: the Examples tab - filter, sort and page the examples, open one to label it."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..project import Project
from ..records import Example, Model
from .base import Notice, View
from .data_table import DataTable
from .label_canvas import LabelCanvas
from .markup import HTML, html

__all__ = ["ExampleBrowser"]

FILTERS = [("unlabeled", "Unlabeled"), ("draft", "Draft"), ("labeled", "Labeled")]
ICON = {"labeled": "check-circle", "draft": "circle", "unlabeled": ""}
COLUMNS: list[dict[str, Any]] = [
    {"key": "thumbnail", "label": "", "type": "thumbnail"},
    {"key": "id", "label": "Example", "sortable": True},
    {"key": "updated", "label": "Last Updated", "type": "time", "sortable": True},
    {"key": "status", "label": "Labeled", "type": "icon", "sortable": True},
    {"key": "label_updated", "label": "Label Last Updated", "type": "time", "sortable": True},
    {"key": "subject_id", "label": "Subject", "sortable": True},
    {"key": "source", "label": "Source", "sortable": True},
    {"key": "split", "label": "Split", "sortable": True},
    {"key": "size", "label": "Size"},
    {"key": "slices", "label": "Slices labeled"},
]
UNCERTAIN = "most uncertain first"
DISAGREES = "disagrees"


def slices_labeled(ex: Example) -> str:
    """``"12 / 300"`` for a volume (slices holding a class other than the background), else blank."""
    if ex.depth is None:
        return ""
    return f"{ex.labeled_slices or 0} / {ex.depth}"


class ExampleBrowser(View, w.VBox):
    """Examples of one model; clicking a row opens the labeling view with Back / Previous / Next."""

    def __init__(self, project: Project, model: Model | str, *, page_size: int = 50) -> None:
        self.project = project
        self._model_key = project.model(model).id
        self.table = DataTable(
            self._fetch,
            COLUMNS,
            title="Examples",
            sort={"key": "created", "descending": False},
            page_size=page_size,
            empty_message="No examples match.",
        )
        self.notice = Notice()
        self.table.on_row_click(self.guarded(self.open_example))
        self.table.on_action(self.guarded(self._action))
        self.table.on_poll(self.guarded(project.poll))
        self.canvas: LabelCanvas | None = None
        self._order: list[str] = []
        self._position = -1
        self.follow(
            project, self._changed, model_id=self._model_key, tables=("examples", "labels", "models", "predictions")
        )
        self._update_actions()
        super().__init__([self.table, self.notice])

    # -- the table ---------------------------------------------------------------------------

    def _query(self, sort: str | None = None, descending: bool | None = None, active_filter: str | None = None):
        """The project query for the table's sort and filter (or the ones given)."""
        sort = (self.table.sort.get("key") if sort is None else sort) or "created"
        descending = bool(self.table.sort.get("descending")) if descending is None else descending
        active_filter = self.table.active_filter if active_filter is None else active_filter
        query: dict[str, Any] = {"descending": descending, "sort": "uncertainty" if sort == UNCERTAIN else sort}
        if active_filter in dict(FILTERS):
            query["status"] = active_filter
        return query, active_filter == DISAGREES

    def _fetch(self, page, page_size, sort, descending, active_filter):
        project, model_id = self.project, self._model_key
        counts = project.status_counts(model_id)
        filters = [{"key": k, "label": label, "count": counts[k]} for k, label in FILTERS]
        if project.model(model_id).deployed:
            filters.append({"key": DISAGREES, "label": "Prediction disagrees", "count": None})
        query, disagreeing = self._query(sort, descending, active_filter)
        if disagreeing:
            found = self._disagreements(query)
            total, examples = len(found), found[page * page_size : (page + 1) * page_size]
        else:
            total = project.count_examples(model_id, status=query.get("status"))
            examples = project.examples(model_id, offset=page * page_size, limit=page_size, **query)
        rows = [
            {
                "_id": ex.id,
                "thumbnail": project.thumbnail(ex),
                "id": ex.id,
                "updated": ex.updated,
                "status": ICON[ex.status],
                "label_updated": ex.label_updated,
                "subject_id": ex.subject_id or "",
                "source": ex.origin,
                "split": ex.split,
                "size": ex.size,
                "slices": slices_labeled(ex),
            }
            for ex in examples
        ]
        return rows, total, filters

    def _update_actions(self) -> None:
        model = self.project.model(self._model_key)
        self.table.actions = [{"key": "uncertain", "label": "Most uncertain first"}] if model.deployed else []

    def _action(self, key: str) -> None:
        if key == "uncertain":
            self.table.sort = {"key": UNCERTAIN, "descending": False}

    def _ordered_ids(self) -> list[str]:
        """Example ids in the table's current order and filter (what Previous / Next walk)."""
        query, disagreeing = self._query()
        if disagreeing:
            return [e.id for e in self._disagreements(query)]
        return [e.id for e in self.project.examples(self._model_key, **query)]

    def _disagreements(self, query: dict[str, Any]) -> list[Example]:
        """The labeled examples the deployed run disagrees with, in the table's sort (created for uncertainty)."""
        sort = query["sort"] if query["sort"] != "uncertainty" else "created"
        return self.project.disagreements(self._model_key, sort=sort, descending=query["descending"])

    def _changed(self, change) -> None:
        """Refresh what the change concerns: the actions when the model changed, the table when its
        rows may have (predictions only matter to the orders and filters built on them).
        """
        if change.touches("models"):
            self._update_actions()
        query, disagreeing = self._query()
        uses_predictions = disagreeing or query["sort"] == "uncertainty"
        if self.canvas is None and (change.touches("examples", "labels", "models") or uses_predictions):
            self.table.refresh()

    # -- the labeling view ---------------------------------------------------------------------

    def open_example(self, example_id: str) -> None:
        """Show the labeling view for one example (Back returns to the table)."""
        self._order = self._ordered_ids()
        if example_id not in self._order:
            self._order.insert(0, example_id)
        self._position = self._order.index(example_id)
        self._show()

    def _show(self) -> None:
        example_id = self._order[self._position]
        if self.canvas is not None:
            self.canvas.close()
        self.canvas = LabelCanvas.for_example(self.project, example_id)
        self.canvas.on_submit(lambda _c: self.next())
        back = w.Button(description="Back", icon="arrow-left")
        prev = w.Button(description="Previous", disabled=self._position == 0)
        nxt = w.Button(description="Next", disabled=self._position >= len(self._order) - 1)
        unlabeled = w.Button(description="Next unlabeled")
        back.on_click(self.guarded(lambda _: self.back()))
        prev.on_click(self.guarded(lambda _: self.previous()))
        nxt.on_click(self.guarded(lambda _: self.next()))
        unlabeled.on_click(self.guarded(lambda _: self.next_unlabeled()))
        example = self.project.example(example_id)
        where = HTML(
            html(
                "<span style='color:#5f6368'>{} of {} - {}, subject {}, {}</span>",
                self._position + 1,
                len(self._order),
                example.id,
                example.subject_id or "-",
                example.split,
            )
        )
        self.children = [w.HBox([back, prev, nxt, unlabeled, where]), self.canvas, self.notice]

    def back(self) -> None:
        if self.canvas is not None:
            self.canvas.close()
        self.canvas = None
        self.children = [self.table, self.notice]
        self.table.refresh()

    def previous(self) -> None:
        if self._position > 0:
            self._position -= 1
            self._show()

    def next(self) -> None:
        """The next example in the table's current order (after a submit, too)."""
        if self._position < len(self._order) - 1:
            self._position += 1
            self._show()
        else:
            self.back()

    def next_unlabeled(self) -> None:
        for position in range(self._position + 1, len(self._order)):
            if self.project.example(self._order[position]).status == "unlabeled":
                self._position = position
                self._show()
                return
        remaining = self.project.examples(self._model_key, status="unlabeled", limit=1)
        if remaining:
            self.open_example(remaining[0].id)
        else:
            self.back()

    @property
    def example(self) -> Example | None:
        """The example being labeled, if the labeling view is open."""
        return self.project.example(self._order[self._position]) if self.canvas is not None else None
