"""ModelTable: the models of a project (name, description, problem type, status) and New model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..errors import PatientMLError
from ..project import Project
from ..records import PALETTE, Model
from .base import Notice, View
from .data_table import DataTable

__all__ = ["ModelTable"]

COLUMNS: list[dict[str, Any]] = [
    {"key": "name", "label": "Model Name", "sortable": True},
    {"key": "description", "label": "Description"},
    {"key": "problem_type", "label": "Problem Type", "sortable": True},
    {"key": "status", "label": "Status", "type": "badge", "sortable": True},
]
PROBLEM_LABELS = {"classification": "Image classification", "segmentation": "Semantic segmentation"}


class ModelTable(View, w.VBox):
    """Click a row to open the model's details (below, or wherever ``on_open`` says)."""

    def __init__(self, project: Project, *, on_open: Callable[[Model], Any] | None = None) -> None:
        self.project = project
        self.table = DataTable(
            self._fetch,
            COLUMNS,
            title="Models",
            sort={"key": "name", "descending": False},
            actions=[{"key": "new", "label": "New model", "primary": True}] if project.can("developer") else [],
            empty_message="No models yet. Create one with New model.",
        )
        self.form = NewModelForm(project, done=self._form_done)
        self.form.layout.display = "none"
        self.details = w.VBox()
        self._on_open = on_open or self._show_details
        self.notice = Notice()
        self.table.on_row_click(self.guarded(lambda model_id: self._on_open(project.model(model_id))))
        self.table.on_action(self.guarded(self._action))
        self.table.on_poll(self.guarded(project.poll))
        kinds = {"model_created", "model_updated", "model_deleted"}
        self.follow(project, lambda _: self.table.refresh(), kinds=kinds, tables=("models",))
        super().__init__([self.table, self.notice, self.form, self.details])

    def _fetch(self, page, page_size, sort, descending, _filter):
        rows = [
            {
                "_id": m.id,
                "name": m.name,
                "description": m.description,
                "problem_type": PROBLEM_LABELS[m.problem_type],
                "status": {"text": "Deployed", "tone": "green"}
                if m.deployed
                else {"text": "Not Deployed", "tone": "gray"},
            }
            for m in self.project.models()
        ]
        if sort:
            key = (lambda r: r["status"]["text"]) if sort == "status" else (lambda r: str(r[sort]).casefold())
            rows.sort(key=key, reverse=descending)
        return rows[page * page_size : (page + 1) * page_size], len(rows), []

    def _action(self, key: str) -> None:
        if key == "new":
            self.form.layout.display = ""

    def _form_done(self, model: Model | None) -> None:
        self.form.layout.display = "none"
        if model is not None:
            self.table.refresh()

    def _show_details(self, model: Model) -> None:
        from .model_details import ModelDetails

        for old in self.details.children:
            old.close()
        self.details.children = [ModelDetails(self.project, model)]


class NewModelForm(w.VBox):
    """Name, description, problem type and classes (one per line: ``name`` or ``name #rrggbb``)."""

    def __init__(self, project: Project, *, done: Callable[[Model | None], Any]) -> None:
        self.project = project
        self._done = done
        self.name_input = w.Text(description="Name")
        self.description_input = w.Textarea(description="Description", rows=2)
        self.problem_type_input = w.Dropdown(
            description="Problem type", options=[(v, k) for k, v in PROBLEM_LABELS.items()], value="segmentation"
        )
        self.classes_input = w.Textarea(
            description="Classes", rows=4, placeholder="background\nlesion #d62728", value="background\nlesion"
        )
        self.multi_label_input = w.Checkbox(description="Several classes per image (multi-label)", value=False)
        create = w.Button(description="Create", button_style="primary")
        cancel = w.Button(description="Cancel")
        self.notice = Notice()
        create.on_click(lambda _: self.create())
        cancel.on_click(lambda _: done(None))
        super().__init__(
            [
                self.name_input,
                self.description_input,
                self.problem_type_input,
                self.classes_input,
                self.multi_label_input,
                w.HBox([create, cancel]),
                self.notice,
            ],
            layout=w.Layout(border="1px solid #dadce0", padding="8px", margin="6px 0"),
        )

    def create(self) -> Model | None:
        classes = []
        for i, line in enumerate(x.strip() for x in self.classes_input.value.splitlines()):
            if not line:
                continue
            name, _, color = line.rpartition(" ") if line.split()[-1].startswith("#") else (line, "", "")
            classes.append({"name": name.strip(), "color": color or PALETTE[i % len(PALETTE)]})
        try:
            model = self.project.create_model(
                self.name_input.value,
                problem_type=self.problem_type_input.value,
                classes=classes,
                description=self.description_input.value,
                multi_label=self.multi_label_input.value and self.problem_type_input.value == "classification",
            )
        except PatientMLError as e:
            self.notice.error(e)
            return None
        self.notice.clear()
        self.name_input.value = self.description_input.value = ""
        self._done(model)
        return model
