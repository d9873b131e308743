"""ModelDetails: a model's Examples (default), Runs and Metrics tabs (and, for a model on stored
code you have not trusted, the code and a button to trust it).
"""

from __future__ import annotations

import ipywidgets as w

from ..project import Project
from ..records import Model
from .base import Notice, View
from .code_trust import CodeTrust
from .example_browser import ExampleBrowser
from .markup import HTML, html
from .metrics_chart import MetricsChart
from .runs_table import RunsTable

__all__ = ["ModelDetails"]


class ModelDetails(View, w.VBox):
    def __init__(self, project: Project, model: Model | str) -> None:
        self.project = project
        self._model = project.model(model)
        self.header = HTML()
        self.code = CodeTrust(project, self._model)
        self.examples = ExampleBrowser(project, self._model)
        self.runs = RunsTable(project, self._model)
        self.metrics = MetricsChart(project, self._model)
        self.tabs = w.Tab(children=[self.examples, self.runs, self.metrics])
        for i, title in enumerate(["Examples", "Runs", "Metrics"]):
            self.tabs.set_title(i, title)
        self.tabs.selected_index = 0
        self._draw_header()
        self.notice = Notice()
        kinds = {"model_updated"}
        self.follow(project, lambda _: self._draw_header(), model_id=self._model.id, kinds=kinds, tables=("models",))
        super().__init__([self.header, self.code, self.tabs, self.notice])

    def _draw_header(self) -> None:
        m = self.project.model(self._model.id)
        badge = (
            html("<span style='background:#e6f4ea;color:#137333;border-radius:10px;padding:1px 8px'>Deployed</span>")
            if m.deployed
            else html(
                "<span style='background:#f1f3f4;color:#5f6368;border-radius:10px;padding:1px 8px'>Not Deployed</span>"
            )
        )
        self.header.value = html(
            "<div style='font-size:15px;font-weight:600'>{} {}</div><div style='color:#5f6368'>{}</div>",
            m.name,
            badge,
            m.description,
        )
