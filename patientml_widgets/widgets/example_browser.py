"""ExampleBrowser: the Examples tab - filter, sort and page the examples, open one to label it."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..errors import PermissionDenied
from ..project import Project
from ..records import Example, Model
from .base import Notice, View
from .data_table import DataTable
from .label_canvas import LabelCanvas
from .markup import HTML, html
from .readers import ReaderComparison

__all__ = ["ExampleBrowser"]

FILTERS = [("unlabeled", "Unlabeled"), ("draft", "Draft"), ("labeled", "Labeled")]
#: filters on the label's review (keys ``review:<state>``)
REVIEW_FILTERS = [("review:none", "Awaiting review", "none"), ("review:accepted", "Accepted", "accepted"),
                  ("review:returned", "Returned", "returned")]  # fmt: skip
#: the current user's queue in a model read by several (keys ``queue:<name>``): what is left, what is done
QUEUE_FILTERS = [("queue:open", "My queue", ("to do", "draft", "returned")),
                 ("queue:done", "My submitted", ("submitted", "accepted"))]  # fmt: skip
QUEUE_TONE = {"to do": "gray", "draft": "blue", "returned": "red", "submitted": "blue", "accepted": "green"}
REVIEW_BADGE = {"accepted": {"text": "Accepted", "tone": "green"}, "returned": {"text": "Returned", "tone": "red"}}
ICON = {"labeled": "check-circle", "draft": "circle", "unlabeled": ""}
COLUMNS: list[dict[str, Any]] = [
    {"key": "thumbnail", "label": "", "type": "thumbnail"},
    {"key": "id", "label": "Example", "sortable": True},
    {"key": "updated", "label": "Last Updated", "type": "time", "sortable": True},
    {"key": "status", "label": "Labeled", "type": "icon", "sortable": True},
    {"key": "label_updated", "label": "Label Last Updated", "type": "time", "sortable": True},
    {"key": "review", "label": "Review", "type": "badge"},
    {"key": "subject_id", "label": "Subject", "sortable": True},
    {"key": "source", "label": "Source", "sortable": True},
    {"key": "split", "label": "Split", "sortable": True},
    {"key": "size", "label": "Size"},
    {"key": "slices", "label": "Slices labeled"},
]
QUEUE_COLUMNS: list[dict[str, Any]] = [
    *COLUMNS[:2],
    {"key": "mine", "label": "My reading", "type": "badge"},
    {"key": "comment", "label": "Reviewer's comment"},
    *COLUMNS[2:],
]
ADJUDICATE = "adjudicate"
ADJUDICATION_COLUMNS: list[dict[str, Any]] = [
    *COLUMNS[:2],
    {"key": "agreement", "label": "Agreement", "type": "number"},
    {"key": "readers", "label": "Readers"},
    *COLUMNS[2:],
]
UNCERTAIN = "most uncertain first"
DISAGREES = "disagrees"


def slices_labeled(ex: Example) -> str:
    """``"12 / 300"`` for a volume (slices holding a class other than the background), else blank."""
    if ex.depth is None:
        return ""
    return f"{ex.labeled_slices or 0} / {ex.depth}"


def _settled_label(project: Project, example: Example):
    """The example's label, or None where blind reading hides it from this reviewer (a reader of it too)."""
    try:
        return project.label(example)
    except PermissionDenied:
        return None


class ExampleBrowser(View, w.VBox):
    """Examples of one model; clicking a row opens the labeling view with Back / Previous / Next."""

    def __init__(
        self,
        project: Project,
        model: Model | str,
        *,
        page_size: int = 50,
        queue: bool | None = None,
        queue_only: bool = False,
    ) -> None:
        """``queue``: open on the current user's queue ("My queue"); by default, when the model is read by
        several readers and the user has examples assigned. ``queue_only``: show that queue and nothing else
        (no other filters, orders or examples: the clinicians' page).
        """
        self.project = project
        self._model_key = project.model(model).id
        self._queue_only = queue_only
        queue = True if queue_only else queue
        if queue is None:
            queue = self._reads_several() and sum(project.queue_counts(self._model_key).values()) > 0
        self.table = DataTable(
            self._fetch,
            QUEUE_COLUMNS if queue else COLUMNS,
            title="Examples",
            sort={"key": "created", "descending": False},
            page_size=page_size,
            empty_message="No examples match.",
            active_filter=QUEUE_FILTERS[0][0] if queue else "",
        )
        self.notice = Notice()
        self.table.on_row_click(self.guarded(self.open_example))
        self.table.on_action(self.guarded(self._action))
        self.table.on_poll(self.guarded(project.poll))
        self.canvas: LabelCanvas | ReaderComparison | None = None
        self._order: list[str] = []
        self._position = -1
        self.follow(
            project,
            self._changed,
            model_id=self._model_key,
            tables=("examples", "labels", "readings", "models", "predictions"),
        )
        self._update_actions()
        super().__init__([self.table, self.notice])

    # -- the table ---------------------------------------------------------------------------

    def _query(self, sort: str | None = None, descending: bool | None = None, active_filter: str | None = None):
        """The project query for the table's sort and filter (or the ones given)."""
        sort = (self.table.sort.get("key") if sort is None else sort) or "created"
        descending = bool(self.table.sort.get("descending")) if descending is None else descending
        active_filter = self.table.active_filter if active_filter is None else active_filter
        if self._queue_only and active_filter not in {key for key, _, _ in QUEUE_FILTERS}:
            active_filter = QUEUE_FILTERS[0][0]
        query: dict[str, Any] = {"descending": descending, "sort": "uncertainty" if sort == UNCERTAIN else sort}
        if active_filter in dict(FILTERS):
            query["status"] = active_filter
        reviews = {key: state for key, _, state in REVIEW_FILTERS}
        if active_filter in reviews:
            query["review"] = reviews[active_filter]
            if reviews[active_filter] == "none":
                query["status"] = "labeled"
        queues = {key: states for key, _, states in QUEUE_FILTERS}
        if active_filter in queues:
            query["state"] = list(queues[active_filter])
            query["sort"] = "created" if query["sort"] == "uncertainty" else query["sort"]
        if active_filter == ADJUDICATE:
            query["adjudicate"] = True
        return query, active_filter == DISAGREES

    def _adjudicating(self) -> bool:
        return not self._queue_only and self._reads_several() and self.project.can("reviewer")

    def _reads_several(self) -> bool:
        return self.project.reading_plan(self._model_key)["readers"] > 1

    def _fetch(self, page, page_size, sort, descending, active_filter):
        project, model_id = self.project, self._model_key
        filters = []
        if not self._queue_only:
            counts = project.status_counts(model_id)
            filters = [{"key": k, "label": label, "count": counts[k]} for k, label in FILTERS]
            filters += [{"key": k, "label": label, "count": None} for k, label, _ in REVIEW_FILTERS]
            if project.model(model_id).deployed:
                filters.append({"key": DISAGREES, "label": "Prediction disagrees", "count": None})
        adjudicating = self._adjudicating()
        waiting = project.adjudication_queue(model_id) if adjudicating else []
        if adjudicating:
            filters.insert(0, {"key": ADJUDICATE, "label": "To adjudicate", "count": len(waiting)})
        if self._reads_several() or self._queue_only:
            mine = project.queue_counts(model_id)
            filters[:0] = [
                {"key": k, "label": label, "count": sum(mine[s] for s in states)} for k, label, states in QUEUE_FILTERS
            ]
        query, disagreeing = self._query(sort, descending, active_filter)
        states: dict[str, tuple[str, str]] = {}
        figures: dict[str, tuple[float | None, str]] = {}
        if query.get("adjudicate"):
            self._columns(ADJUDICATION_COLUMNS)
            total = len(waiting)
            examples = waiting[page * page_size : (page + 1) * page_size]
            labels = {ex.id: _settled_label(project, ex) for ex in examples}
            figures = {
                i: (lab.agreement, ", ".join(lab.readers)) if lab is not None else (None, "")
                for i, lab in labels.items()
            }
        elif "state" in query:
            self._columns(QUEUE_COLUMNS)
            total = sum(project.queue_counts(model_id)[s] for s in query["state"])
            entries = project.queue(model_id, offset=page * page_size, limit=page_size, **query)
            examples = [e.example for e in entries]
            states = {e.example.id: (e.state, e.comment) for e in entries}
        elif disagreeing:
            self._columns(COLUMNS)
            found = self._disagreements(query)
            total, examples = len(found), found[page * page_size : (page + 1) * page_size]
        else:
            self._columns(COLUMNS)
            filters_of = {k: query[k] for k in ("status", "review") if k in query}
            total = project.count_examples(model_id, **filters_of)
            examples = project.examples(model_id, offset=page * page_size, limit=page_size, **query)
        rows = [
            {
                "_id": ex.id,
                "thumbnail": project.thumbnail(ex),
                "id": ex.id,
                "updated": ex.updated,
                "status": ICON[ex.status],
                "label_updated": ex.label_updated,
                "review": REVIEW_BADGE.get(ex.review or ""),
                **(
                    {
                        "mine": {"text": states[ex.id][0].capitalize(), "tone": QUEUE_TONE[states[ex.id][0]]},
                        "comment": states[ex.id][1],
                    }
                    if ex.id in states
                    else {}
                ),
                **({"agreement": figures[ex.id][0], "readers": figures[ex.id][1]} if ex.id in figures else {}),
                "subject_id": ex.subject_id or "",
                "source": ex.origin,
                "split": ex.split,
                "size": ex.size,
                "slices": slices_labeled(ex),
            }
            for ex in examples
        ]
        return rows, total, filters

    def _columns(self, columns: list[dict[str, Any]]) -> None:
        """The queue's columns (with the reading's state and comment) or the examples' (the first page is
        fetched while the table is made: it starts with the right ones).
        """
        table = self.__dict__.get("table")
        if table is not None and table.columns != columns:
            table.columns = columns

    def _update_actions(self) -> None:
        model = self.project.model(self._model_key)
        uncertain = model.deployed and not self._queue_only
        self.table.actions = [{"key": "uncertain", "label": "Most uncertain first"}] if uncertain else []

    def _action(self, key: str) -> None:
        if key == "uncertain":
            self.table.sort = {"key": UNCERTAIN, "descending": False}

    def _ordered_ids(self) -> list[str]:
        """Example ids in the table's current order and filter (what Previous / Next walk)."""
        query, disagreeing = self._query()
        if disagreeing:
            return [e.id for e in self._disagreements(query)]
        if query.get("adjudicate"):
            return [e.id for e in self.project.adjudication_queue(self._model_key)]
        if "state" in query:
            return [e.example.id for e in self.project.queue(self._model_key, **query)]
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
        if self.canvas is None and (change.touches("examples", "labels", "readings", "models") or uses_predictions):
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
        if self._query()[0].get("adjudicate"):  # a reviewer settles the readings
            comparison = ReaderComparison(self.project, example_id)
            comparison.on_settle(lambda _view: self.next())
            self.canvas = comparison
        else:
            canvas = LabelCanvas.for_example(self.project, example_id)
            canvas.on_submit(lambda _c: self.next())
            self.canvas = canvas
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
