"""PatientMLApp: the whole Machine Learning tab in one cell - models -> details -> labeling."""

from __future__ import annotations

import ipywidgets as w

from ..project import Project
from ..records import Model
from .base import View
from .markup import HTML, html
from .model_details import ModelDetails
from .model_table import ModelTable

__all__ = ["PatientMLApp"]


class PatientMLApp(View, w.VBox):
    def __init__(self, project: Project) -> None:
        self.project = project
        self.models = ModelTable(project, on_open=self.open_model)
        self.crumbs = w.HBox()
        self.details: ModelDetails | None = None
        self.home()
        super().__init__([self.crumbs, self.models])

    def home(self) -> None:
        """Back to the model table."""
        details = getattr(self, "details", None)
        if details is not None:
            details.close()
        self.details = None
        self.crumbs.children = [HTML(html("<b>Machine Learning</b>"))]
        if hasattr(self, "children") and self.children:  # type: ignore[has-type]  # not yet while building
            self.children = [self.crumbs, self.models]
            self.models.table.refresh()

    def open_model(self, model: Model) -> None:
        """Open a model's details (Examples, Runs, Metrics)."""
        self.details = ModelDetails(self.project, model)
        back = w.Button(description="Machine Learning", icon="arrow-left", tooltip="Back to the models")
        back.on_click(lambda _: self.home())
        self.crumbs.children = [back, HTML(html("&nbsp;&rsaquo;&nbsp;<b>{}</b>", model.name))]
        self.children = [self.crumbs, self.details]
