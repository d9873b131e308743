"""SubjectViewer: one patient's images across models, labeled in place (the labeler module)."""

from __future__ import annotations

import ipywidgets as w

from ..project import Project
from .base import Notice, View
from .data_table import DataTable
from .example_browser import ICON, slices_labeled
from .label_canvas import LabelCanvas
from .markup import HTML, html

__all__ = ["SubjectViewer"]

COLUMNS = [
    {"key": "thumbnail", "label": "", "type": "thumbnail"},
    {"key": "model", "label": "Model"},
    {"key": "id", "label": "Example"},
    {"key": "source", "label": "Source"},
    {"key": "status", "label": "Labeled", "type": "icon"},
    {"key": "label_updated", "label": "Label Last Updated", "type": "time"},
    {"key": "split", "label": "Split"},
    {"key": "size", "label": "Size"},
    {"key": "slices", "label": "Slices labeled"},
]


class SubjectViewer(View, w.VBox):
    def __init__(self, project: Project, subject: str | None = None) -> None:
        self.project = project
        subjects = project.subjects()
        self.picker = w.Dropdown(
            description="Subject", options=[(f"{s.name} ({s.id})" if s.name != s.id else s.id, s.id) for s in subjects]
        )
        if subject is not None:
            self.picker.value = subject
        self.table = DataTable(self._fetch, COLUMNS, title="Images", empty_message="This subject has no images.")
        self.notice = Notice()
        self.table.on_row_click(self.guarded(self.open_example))
        self.table.on_poll(self.guarded(project.poll))
        self.picker.observe(self.guarded(lambda _: self.back()), names="value")
        self.canvas: LabelCanvas | None = None
        tables = ("examples", "labels", "subjects", "models")
        self.follow(project, self._changed, tables=tables)
        super().__init__([self.picker, self.table, self.notice])

    def _fetch(self, page, page_size, _sort, _descending, _filter):
        subject = self.picker.value
        if subject is None:
            return [], 0, []
        rows = []
        for model in self.project.models():
            for ex in self.project.examples(model, subject=subject, sort="source"):  # series in slice order
                rows.append(
                    {
                        "_id": ex.id,
                        "thumbnail": self.project.thumbnail(ex),
                        "model": model.name,
                        "id": ex.id,
                        "source": ex.origin,
                        "status": ICON[ex.status],
                        "label_updated": ex.label_updated,
                        "split": ex.split,
                        "size": ex.size,
                        "slices": slices_labeled(ex),
                    }
                )
        return rows[page * page_size : (page + 1) * page_size], len(rows), []

    def open_example(self, example_id: str) -> None:
        """Label one of the subject's images in place."""
        if self.canvas is not None:
            self.canvas.close()
        self.canvas = LabelCanvas.for_example(self.project, example_id)
        back = w.Button(description="Back", icon="arrow-left")
        back.on_click(lambda _: self.back())
        model = self.project.model(self.project.example(example_id).model_id)
        self.children = [
            self.picker,
            w.HBox([back, HTML(html("&nbsp;{} - {}", model.name, example_id))]),
            self.canvas,
            self.notice,
        ]

    def _changed(self, _change) -> None:
        if self.canvas is None:
            self.table.refresh()

    def back(self) -> None:
        canvas = getattr(self, "canvas", None)
        if canvas is not None:
            canvas.close()
        self.canvas = None
        self.children = [self.picker, self.table, self.notice]
        self.table.refresh()
