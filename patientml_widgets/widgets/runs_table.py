"""RunsTable: a model's training runs, with status, progress, objective and the Deployed badge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import ipywidgets as w

from ..errors import PatientMLError
from ..project import Project
from ..records import Model, Run
from .base import Notice, View
from .data_table import DataTable
from .markup import is_number

__all__ = ["RunsTable"]

COLUMNS: list[dict[str, Any]] = [
    {"key": "status", "label": "", "type": "icon"},
    {"key": "slug", "label": "Run", "sortable": True},
    {"key": "started", "label": "Started", "type": "time", "sortable": True},
    {"key": "duration", "label": "Duration (s)", "type": "number", "sortable": True},
    {"key": "trigger", "label": "Trigger"},
    {"key": "examples", "label": "Train / val / test"},
    {"key": "objective", "label": "Objective (test)", "type": "number", "sortable": True},
    {"key": "deployed", "label": "", "type": "badge"},
]


def _seconds(run: Run) -> float | None:
    if not run.started:
        return None
    end = datetime.fromisoformat(run.ended) if run.ended else datetime.now(datetime.fromisoformat(run.started).tzinfo)
    return round((end - datetime.fromisoformat(run.started)).total_seconds(), 1)


def _row(run: Run, champion: str | None) -> dict[str, Any]:
    progress = run.progress or {}
    status: dict[str, Any] = {"name": run.status}
    if run.status == "running" and progress.get("steps"):
        step, steps = progress.get("step", 0), progress["steps"]
        done = f"{100 * step // steps}% " if is_number(step) and is_number(steps) else ""
        status["text"] = f"{done}(step {step}/{steps})"
    elif run.status in ("failed", "cancelled"):
        status["text"] = run.status
    name, value = run.objective
    counts = " / ".join(str(len(run.snapshot.get(s, []))) for s in ("train", "val", "test"))
    return {
        "_id": run.id,
        "status": status,
        "slug": run.slug,
        "started": run.started or run.created,
        "duration": _seconds(run),
        "trigger": run.trigger,
        "examples": counts,
        "objective": value,
        "objective_name": name,
        "deployed": {"text": "Deployed", "tone": "green"} if run.id == champion else None,
    }


class RunsTable(View, w.VBox):
    """The Runs tab: click a run for its record; "Train now" starts one."""

    def __init__(self, project: Project, model: Model | str) -> None:
        self.project = project
        self._model_key = project.model(model).id
        self.table = DataTable(
            self._fetch,
            COLUMNS,
            title="Runs",
            sort={"key": "started", "descending": True},
            # starting runs is a developer's: others see the runs, not the button
            actions=[{"key": "train", "label": "Train now", "primary": True}] if project.can("developer") else [],
            empty_message="No runs yet. Submit some labels, then Train now."
            if project.can("developer")
            else "No runs yet (a developer of this project starts them).",
        )
        self.details = w.VBox()
        self.notice = Notice()
        self.table.on_row_click(self.guarded(self.show_run))
        self.table.on_action(self.guarded(self._action))
        self.table.on_poll(self.guarded(project.poll))
        self.follow(project, lambda _: self.refresh(), model_id=self._model_key, tables=("runs", "models"))
        super().__init__([self.table, self.notice, self.details])

    def refresh(self) -> None:
        self.table.refresh()  # an open RunDetails follows its run by itself

    def _fetch(self, page, page_size, sort, descending, _filter):
        model = self.project.model(self._model_key)
        rows = [_row(r, model.champion_run_id) for r in self.project.runs(self._model_key)]
        if sort:
            rows.sort(key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0), reverse=descending)
        start = page * page_size
        return rows[start : start + page_size], len(rows), []

    def _action(self, key: str) -> None:
        if key == "train":
            try:
                handle = self.project.train(self._model_key)
            except PatientMLError as e:
                self.notice.error(e)
            else:
                self.notice.show(f"Started {handle.run.slug}.", "green")

    def show_run(self, run_id: str) -> None:
        """Show a run's details under the table."""
        from .run_details import RunDetails

        self._shown = run_id
        for old in self.details.children:
            old.close()
        self.details.children = [RunDetails(self.project, run_id)]
