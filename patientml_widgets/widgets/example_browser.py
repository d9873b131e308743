"""ExampleBrowser: the Examples tab - filter, sort and page the examples, open one to label it."""

from __future__ import annotations

import random
from typing import Any

import ipywidgets as w
import numpy as np

from ..project import Project
from ..records import Example, Model
from ._common import View, escape
from .data_table import DataTable
from .label_canvas import LabelCanvas

__all__ = ["ExampleBrowser"]

FILTERS = [("unlabeled", "Unlabeled"), ("draft", "Draft"), ("labeled", "Labeled")]
ICON = {"labeled": "check-circle", "draft": "circle", "unlabeled": ""}
COLUMNS = [
    {"key": "thumbnail", "label": "", "type": "thumbnail"},
    {"key": "id", "label": "Example", "sortable": True},
    {"key": "updated", "label": "Last Updated", "type": "time", "sortable": True},
    {"key": "status", "label": "Labeled", "type": "icon", "sortable": True},
    {"key": "label_updated", "label": "Label Last Updated", "type": "time", "sortable": True},
    {"key": "subject_id", "label": "Subject", "sortable": True},
    {"key": "source", "label": "Source", "sortable": True},
    {"key": "split", "label": "Split", "sortable": True},
]
UNCERTAIN = "most uncertain first"
DISAGREES = "disagrees"


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
        self.table.on_row_click(self.open_example)
        self.table.on_action(self._action)
        self.table.on_poll(project.poll)
        self.canvas: LabelCanvas | None = None
        self._order: list[str] = []
        self._position = -1
        self.follow(project, self._changed, model_id=self._model_key)
        self._update_actions()
        super().__init__([self.table])

    # -- the table ---------------------------------------------------------------------------

    def _query(self, sort: str | None = None, descending: bool | None = None, active_filter: str | None = None):
        """The project query for the table's sort and filter (or the ones given)."""
        sort = (self.table.sort.get("key") if sort is None else sort) or "created"
        descending = bool(self.table.sort.get("descending")) if descending is None else descending
        active_filter = self.table.active_filter if active_filter is None else active_filter
        query: dict[str, Any] = {"descending": descending, "sort": "created" if sort == UNCERTAIN else sort}
        if active_filter in dict(FILTERS):
            query["status"] = active_filter
        return query

    def _fetch(self, page, page_size, sort, descending, active_filter):
        project, model_id = self.project, self._model_key
        counts = project.status_counts(model_id)
        filters = [{"key": k, "label": label, "count": counts[k]} for k, label in FILTERS]
        if project.model(model_id).deployed:
            filters.append({"key": DISAGREES, "label": "Prediction disagrees", "count": None})
        query = self._query(sort, descending, active_filter)
        if sort == UNCERTAIN or active_filter == DISAGREES:
            ordered = self._ordered_ids(query, sort, active_filter)
            total = len(ordered)
            examples = [project.example(i) for i in ordered[page * page_size : (page + 1) * page_size]]
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

    def _ordered_ids(self, query: dict[str, Any], sort: str | None, active_filter: str | None) -> list[str]:
        """Example ids in the table's order, for the orders and filters that need predictions."""
        if active_filter == DISAGREES:
            ids = [e.id for e in self.project.examples(self._model_key, **{**query, "status": "labeled"})]
            ids = [i for i in ids if self._disagrees(i)]
        elif sort == UNCERTAIN:
            return self._uncertain_order(query.get("status"))
        else:
            ids = [e.id for e in self.project.examples(self._model_key, **query)]
        return ids

    def _disagrees(self, example_id: str) -> bool:
        """The deployed model's prediction differs from the submitted label (Dice < 0.8 for masks)."""
        model = self.project.model(self._model_key)
        prediction = self.project.predict(model, example_id)
        label = self.project.label(example_id)
        if label is None:
            return False
        if prediction.mask is None:
            names = {c.index: c.name for c in model.classes}
            return sorted(prediction.classes) != sorted(names[i] for i in label.classes)
        truth = self.project.mask(example_id)
        fg_truth, fg_pred = truth > 0, prediction.mask > 0
        overlap = 2 * np.logical_and(truth == prediction.mask, fg_truth).sum()
        total = fg_truth.sum() + fg_pred.sum()
        return total > 0 and overlap / total < 0.8

    def _uncertain_order(self, status: str | None) -> list[str]:
        """Examples whose deployed-model prediction is least sure first, with 10% drawn at random
        (so the queue does not only ever show one kind of case). Predicts what is not cached yet.
        """
        model = self.project.model(self._model_key)
        ids = [e.id for e in self.project.examples(self._model_key, status=status)]
        scored = sorted(ids, key=lambda i: -self.project.predict(model, i).uncertainty)
        rng = random.Random(len(ids))
        share = max(1, len(scored) // 10) if scored else 0
        picks = rng.sample(scored[len(scored) // 2 :], min(share, len(scored) // 2))
        rest = [i for i in scored if i not in set(picks)]
        for k, pick in enumerate(picks):  # every tenth place goes to a random example
            rest.insert(min(len(rest), 10 * k + 9), pick)
        return rest

    def _changed(self, change) -> None:
        if change.kind == "model_updated":
            self._update_actions()
        if self.canvas is None:
            self.table.refresh()

    # -- the labeling view ---------------------------------------------------------------------

    def open_example(self, example_id: str) -> None:
        """Show the labeling view for one example (Back returns to the table)."""
        query = self._query()
        self._order = self._ordered_ids(query, self.table.sort.get("key"), self.table.active_filter)
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
        back.on_click(lambda _: self.back())
        prev.on_click(lambda _: self.previous())
        nxt.on_click(lambda _: self.next())
        unlabeled.on_click(lambda _: self.next_unlabeled())
        example = self.project.example(example_id)
        where = w.HTML(
            f"<span style='color:#5f6368'>{self._position + 1} of {len(self._order)} - "
            f"{escape(example.id)}, subject {escape(example.subject_id or '-')}, {escape(example.split)}</span>"
        )
        self.children = [w.HBox([back, prev, nxt, unlabeled, where]), self.canvas]

    def back(self) -> None:
        if self.canvas is not None:
            self.canvas.close()
        self.canvas = None
        self.children = [self.table]
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
