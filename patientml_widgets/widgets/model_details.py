"""ModelDetails: a model's Examples (default), Runs and Metrics tabs."""

from __future__ import annotations

import ipywidgets as w

from ..project import Project
from ..records import Model
from ._common import View, escape
from .data_table import DataTable
from .example_browser import ExampleBrowser
from .runs_table import RunsTable

__all__ = ["ModelDetails"]


class ModelDetails(View, w.VBox):
    def __init__(self, project: Project, model: Model | str) -> None:
        self.project = project
        self._model = project.model(model)
        self.header = w.HTML()
        self.examples = ExampleBrowser(project, self._model)
        self.runs = RunsTable(project, self._model)
        self.metrics = _metrics_table(self, project, self._model.id)
        self.tabs = w.Tab(children=[self.examples, self.runs, self.metrics])
        for i, title in enumerate(["Examples", "Runs", "Metrics"]):
            self.tabs.set_title(i, title)
        self.tabs.selected_index = 0
        self._draw_header()
        self.follow(project, lambda _: self._draw_header(), model_id=self._model.id, kinds={"model_updated"})
        super().__init__([self.header, self.tabs])

    def _draw_header(self) -> None:
        m = self.project.model(self._model.id)
        badge = (
            "<span style='background:#e6f4ea;color:#137333;border-radius:10px;padding:1px 8px'>Deployed</span>"
            if m.deployed
            else "<span style='background:#f1f3f4;color:#5f6368;border-radius:10px;padding:1px 8px'>Not Deployed</span>"
        )
        self.header.value = (
            f"<div style='font-size:15px;font-weight:600'>{escape(m.name)} {badge}</div>"
            f"<div style='color:#5f6368'>{escape(m.description)}</div>"
        )


def _metrics_table(view: View, project: Project, model_id: str) -> DataTable:
    """Test metrics across the model's finished runs (the chart comes with MetricsChart)."""
    model = project.model(model_id)
    names = ["dice_mean", "iou_mean", "pixel_accuracy", "loss"] if model.problem_type == "segmentation" else [
        "balanced_accuracy", "accuracy", "f1_macro", "auroc", "loss"]  # fmt: skip
    columns = [{"key": "slug", "label": "Run"}, {"key": "ended", "label": "Ended", "type": "time"}]
    columns += [{"key": n, "label": n.replace("_", " "), "type": "number", "sortable": True} for n in names]

    def fetch(page, page_size, sort, descending, _filter):
        rows = []
        for run in project.runs(model_id):
            if run.status != "succeeded":
                continue
            test = run.metrics.get("test", {})
            rows.append({"_id": run.id, "slug": run.slug, "ended": run.ended, **{n: test.get(n) for n in names}})
        if sort:
            rows.sort(key=lambda r: (r[sort] is None, r[sort] or 0), reverse=descending)
        return rows[page * page_size : (page + 1) * page_size], len(rows), []

    table = DataTable(fetch, columns, title="Test metrics per run", empty_message="No finished runs yet.")
    table.on_poll(project.poll)
    view.follow(project, lambda _: table.refresh(), model_id=model_id, kinds={"run_updated", "run_created"})
    return table
