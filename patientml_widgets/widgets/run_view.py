"""The run record, shown plainly (status, metrics, champion, approvals, error) with Deploy."""

from __future__ import annotations

import json

import ipywidgets as w

from ..errors import PatientMLError
from ..project import Project
from ..records import Run
from ._common import escape, message

__all__ = ["run_record_view"]


def _scalars(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if isinstance(v, (int, float))}


def run_record_view(project: Project, run: Run) -> w.VBox:
    model = project.model(run.model_id)
    lines = [
        f"<b>{escape(run.slug)}</b> - {escape(run.status)}"
        + (" - <span style='color:#137333'>Deployed</span>" if model.champion_run_id == run.id else ""),
        f"trigger: {escape(run.trigger)}; started {escape(run.started or '-')}; ended {escape(run.ended or '-')}",
        "examples per split: "
        + escape(", ".join(f"{s} {len(run.snapshot.get(s, []))}" for s in ("train", "val", "test"))),
        f"hyperparameters: <code>{escape(json.dumps(run.hyperparameters))}</code>",
    ]
    for split in ("val", "test"):
        if run.metrics.get(split):
            lines.append(f"{split} metrics: <code>{escape(json.dumps(_scalars(run.metrics[split])))}</code>")
    champion = run.champion or {}
    if champion.get("metrics"):
        lines.append(
            f"champion {escape(champion.get('run_id'))} on the same test examples: "
            f"<code>{escape(json.dumps(_scalars(champion['metrics']['test'])))}</code>"
        )
    elif champion.get("error"):
        lines.append(f"champion not compared: {escape(champion['error'])}")
    for a in run.approvals:
        lines.append(
            f"{escape(a['decision'])} by {escape(a['actor'])}: {escape(a.get('reason', ''))} ({escape(a['time'])})"
        )
    if run.error:
        lines.append(f"<span style='color:#c5221f'>{escape(run.error)}</span>")
    body = w.HTML("<div style='font-size:13px;line-height:1.6'>" + "<br>".join(lines) + "</div>")
    parts: list[w.Widget] = [body]
    if run.traceback:
        parts.append(
            w.HTML(f"<pre style='font-size:11px;max-height:200px;overflow:auto'>{escape(run.traceback)}</pre>")
        )
    notice = w.HTML()
    if run.status == "succeeded" and model.champion_run_id != run.id:
        deploy = w.Button(description="Deploy this run", button_style="primary")

        def on_deploy(_):
            try:
                project.deploy(run.id, reason="deployed from the runs table")
            except PatientMLError as e:
                notice.value = message(str(e), "red").value
            else:
                notice.value = message(f"{run.slug} is deployed.", "green").value
                deploy.disabled = True

        deploy.on_click(on_deploy)
        parts.append(deploy)
    if run.status in ("queued", "running"):
        cancel = w.Button(description="Cancel run", button_style="danger")
        cancel.on_click(lambda _: project.cancel(run.id))
        parts.append(cancel)
    parts.append(notice)
    return w.VBox(parts, layout=w.Layout(border="1px solid #dadce0", padding="8px", margin="6px 0"))
