"""RunDetails: one run - what it was, how it did next to the champion, and where it did worst."""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as w
import numpy as np
from PIL import Image

from .. import evaluation, imaging
from ..errors import PatientMLError
from ..project import Project
from ..records import Run, is_color
from . import evaluation_view
from .base import Notice, View, message
from .evaluation_view import metric_text
from .markup import HTML, Markup, escape, html, number, table

__all__ = ["RunDetails", "worst_examples"]

WORST = evaluation.WORST


def worst_examples(run: Run, n: int = WORST) -> list[dict[str, Any]]:
    """The test examples the run did worst on (lowest score first)."""
    scored = [
        e
        for e in run.test_examples
        if isinstance(e, dict)
        and isinstance(e.get("example_id"), str)
        and isinstance(e.get("score"), int | float)
        and not isinstance(e.get("score"), bool)
        and e["score"] == e["score"]  # not NaN
    ]  # a crafted run record may hold anything: what is not a scored example is left out
    return sorted(scored, key=lambda e: (e["score"], e["example_id"]))[:n]


def _summary_lines(run: Run, deployed: bool) -> list[Markup | str]:
    """The run in a few lines: name and status, when, on what, how, progress and errors (escaped)."""
    counts = ", ".join(f"{s} {len(run.snapshot.get(s, []))}" for s in ("train", "val", "test"))
    lines: list[Markup | str] = [
        html(
            "<div style='font-size:15px;font-weight:600'>{} - {}{}</div>",
            run.slug,
            run.status,
            html(" <span style='color:#137333'>Deployed</span>") if deployed else "",
        ),
        html(
            "trigger {}; started {}; ended {}{}",
            run.trigger,
            str(run.started or "-")[:19],
            str(run.ended or "-")[:19],
            _duration(run),
        ),
        html("snapshot: {} submitted labels", counts),
        html("hyperparameters: {}", ", ".join(f"{k}={v}" for k, v in sorted(run.hyperparameters.items()))),
        *_machine_lines(run),
    ]
    p = run.progress if isinstance(run.progress, dict) else {}
    if run.status == "running" and p.get("steps"):
        lines.append(
            html(
                "progress: step {}/{} (epoch {}), loss {:.4f}, at most about {:.0f} s left",
                p.get("step", 0),
                p["steps"],
                p.get("epoch", 0),
                p.get("loss", 0),
                p.get("eta_s", 0),
            )
        )
    if run.error:
        lines.append(html("<span style='color:#c5221f'>{}</span>", run.error))
    if run.traceback:
        lines.append(html("<pre style='font-size:11px;max-height:180px;overflow:auto'>{}</pre>", run.traceback))
    return lines


def _duration(run: Run) -> str:
    """The run's length as ', 12.3 s' (empty without both stamps, or when they are not times)."""
    if not (run.started and run.ended):
        return ""
    from datetime import datetime

    try:
        seconds = (datetime.fromisoformat(str(run.ended)) - datetime.fromisoformat(str(run.started))).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f", {seconds:.1f} s"


def _approvals(run: Run) -> Markup:
    if not run.approvals:
        return escape("")
    return html(
        "<b>Decisions</b><br>{}",
        html("<br>").join(
            html(
                "{} by {} - {} ({})",
                a.get("decision"),
                a.get("actor"),
                a.get("reason") or "",
                str(a.get("time") or "")[:19],
            )
            for a in run.approvals
        ),
    )


def _machine_lines(run) -> list[str]:
    """Where and how the run trained, what the plan derived from the data, and why training ended
    (plain text: the caller escapes it).
    """
    lines = []
    hw = run.hardware
    if hw:
        lines.append(
            f"trained on: {hw.get('device')} ({hw.get('name', '')}), {hw.get('precision')}, "
            f"{hw.get('threads')} threads - {hw.get('reason', '')}"
        )
    plan, fp = run.plan, run.fingerprint
    if plan:
        norm = (plan.get("normalization") or {}).get("scheme", "")
        budget = f"within {number(plan['budget_s'], '.0f')} s" if plan.get("budget_s") else "(no time budget)"
        canvas, patch = plan.get("canvas") or [], plan.get("patch") or []
        size = "x".join(map(str, canvas)) + (
            f" (patches {'x'.join(map(str, patch))})" if patch and patch != canvas else ""
        )
        lines.append(
            f"plan: {size}, normalisation {norm}, batch {plan.get('batch_size')}, "
            f"up to {plan.get('steps')} steps {budget}, "
            f"lr {plan.get('lr')}, width {plan.get('base_channels')}"
        )
    if fp:
        modality = f"{fp['modality']} " if fp.get("modality") else ""
        lines.append(
            f"data: {fp.get('n')} {modality}training images, median "
            f"{'x'.join(map(str, fp.get('shape_median', [])))}, channels {fp.get('channels')}"
        )
    t = run.training
    if t:
        lines.append(
            f"training: {t.get('steps')} steps in {t.get('seconds')} s, best at step "
            f"{t.get('best_step')}; ended by {t.get('stopped')}"
        )
    return lines


class RunDetails(View, w.VBox):
    """Status, hyperparameters, snapshot, error and log; challenger vs champion; per-class metrics;
    the worst test examples with the run's prediction; Deploy / Approve / Reject.
    """

    def __init__(self, project: Project, run: Run | str, *, open_example=None) -> None:
        self.project = project
        self.run_id = run if isinstance(run, str) else run.id
        self._open_example = open_example
        self.summary = HTML()
        self.comparison = HTML()
        self.subgroups = HTML()
        self.calibration = w.HBox()
        self.thresholds = HTML()
        self.per_class = HTML()
        self.approvals = HTML()
        self.notice = Notice()
        self.reason = w.Text(placeholder="reason (needed to reject)", layout=w.Layout(width="320px"))
        self.deploy_button = w.Button(description="Deploy", button_style="primary")
        self.approve_button = w.Button(description="Approve")
        self.reject_button = w.Button(description="Reject", button_style="danger")
        self.deploy_button.on_click(self.guarded(lambda _: self._decide("deploy")))
        self.approve_button.on_click(self.guarded(lambda _: self._decide("approve")))
        self.reject_button.on_click(self.guarded(lambda _: self._decide("reject")))
        self.worst = w.VBox()
        self.log_view = w.Accordion(children=[HTML()])
        self.log_view.set_title(0, "Log")
        self.log_view.selected_index = None
        self.card_view = w.Accordion(children=[HTML()])
        self.card_view.set_title(0, "Model card")
        self.card_view.selected_index = None
        self.follow(project, self._changed, kinds={"run_updated", "model_updated"}, tables=("runs", "models"))
        self.draw()
        actions = w.HBox([self.deploy_button, self.approve_button, self.reason, self.reject_button])
        super().__init__(
            [
                self.summary,
                self.comparison,
                self.subgroups,
                w.HBox(
                    [self.per_class, self.calibration],
                    layout=w.Layout(flex_flow="row wrap", justify_content="flex-start"),
                ),
                self.thresholds,
                self.approvals,
                actions,
                self.notice,
                self.worst,
                self.card_view,
                self.log_view,
            ],
            layout=w.Layout(border="1px solid #dadce0", padding="8px", margin="6px 0"),
        )

    def _changed(self, change) -> None:
        if change.kind == "external" or change.run_id in (None, self.run_id):
            self.draw()

    def draw(self) -> None:
        project, run = self.project, self.project.run(self.run_id)
        model = project.model(run.model_id)
        deployed = model.champion_run_id == run.id
        self.summary.value = html("<br>").join(_summary_lines(run, deployed))
        champion = (run.champion or {}).get("run_id")
        self.comparison.value = evaluation_view.comparison(run, project.run(champion).slug if champion else "champion")
        self.subgroups.value = evaluation_view.subgroups(run)
        if not self.calibration.children:
            figure = evaluation_view.calibration_figure(run)
            self.calibration.children = [figure] if figure is not None else []
        self.thresholds.value = evaluation_view.thresholds(run)
        self.card_view.children[0].value = evaluation_view.model_card(run)
        self.card_view.layout.display = None if run.model_card else "none"
        self.per_class.value = _per_class(run, [c.name for c in model.classes])
        self.approvals.value = _approvals(run)
        finished, allowed = run.status == "succeeded", project.can("developer")
        self.deploy_button.disabled = not finished or deployed or not allowed
        self.approve_button.disabled = self.reject_button.disabled = not finished or not allowed
        why = "" if allowed else f"deciding about runs needs the developer role ({project.user} is a {project.role})"
        for button in (self.deploy_button, self.approve_button, self.reject_button):
            button.tooltip = why
        self.log_view.children[0].value = html(
            "<pre style='font-size:11px;max-height:240px;overflow:auto'>{}</pre>", project.run_log(run)[-20000:]
        )
        if finished and not self.worst.children:
            self._draw_worst(run)

    def _decide(self, decision: str) -> None:
        try:
            if decision == "deploy":
                self.project.deploy(self.run_id, reason=self.reason.value or "deployed from the run details")
            elif decision == "approve":
                self.project.approve(self.run_id, self.reason.value)
            else:
                self.project.reject(self.run_id, self.reason.value)
        except PatientMLError as e:
            self.notice.error(e)
            return
        self.notice.show(f"{decision}: recorded", "green")
        self.reason.value = ""
        self.draw()

    def _draw_worst(self, run: Run) -> None:
        items = worst_examples(run)
        if not items:
            return
        model = self.project.model(run.model_id)
        colors = {c.index: c.color for c in model.classes}
        names = {c.index: c.name for c in model.classes}
        cards = []
        for item in items:
            try:
                example = self.project.example(item["example_id"])
                image = self.project.image(example)
                mask, probabilities = self._prediction(run, example.id, image)
            except PatientMLError:
                continue
            except Exception as e:  # no torch here, or the weights are gone: say so
                self.worst.children = [message(f"Worst examples need the run's weights: {e}", "gray")]
                return
            display = imaging.apply_window(
                image, example.source.get("window"), invert=bool(example.source.get("invert"))
            )
            thumb, caption = _overlay(display, mask, probabilities, run, names, colors, item["score"])
            button = w.Button(description="Label", layout=w.Layout(width="96px"))
            button.on_click(lambda _, example_id=item["example_id"]: self.open_example(example_id))
            label = HTML(html("<span style='font-size:11px'>{}</span>", caption))
            cards.append(w.VBox([w.Image(value=thumb, format="jpeg", width=96, height=96), label, button]))
        self.worst.children = [HTML(html("<b>Worst test examples</b> (the run's prediction overlaid)")), w.HBox(cards)]

    def _prediction(self, run: Run, example_id: str, image: np.ndarray) -> tuple[np.ndarray | None, list[float]]:
        """The run's prediction of an example: stored by the worker (no network to load), or computed now."""
        session = self.project.session
        stored = session.prediction_record(run.id, example_id)
        if stored is not None and (stored.get("mask_ref") or run.spec.get("problem_type") != "segmentation"):
            mask = session.mask_blob(stored["mask_ref"]) if stored.get("mask_ref") else None
            return mask, list(stored.get("probabilities") or [])
        predictor = self.project.predictor(run.id)
        proba = predictor.predict(image)
        if proba.ndim == 3:
            return np.asarray(predictor.class_indices)[proba.argmax(0)], []
        return None, [float(p) for p in proba]

    def open_example(self, example_id: str) -> None:
        """Open a worst example in the labeling view (from an error to its fix)."""
        from .label_canvas import LabelCanvas

        if self._open_example is not None:
            self._open_example(example_id)
            return
        back = w.Button(description="Back to the run", icon="arrow-left")
        canvas = LabelCanvas.for_example(self.project, example_id)
        parts = self.children  # type: ignore[has-type]  # ipywidgets' trait has no static type
        back.on_click(lambda _: self._back(canvas, parts))
        self.children = [back, canvas]

    def _back(self, canvas, parts) -> None:
        canvas.close()
        self.children = parts
        self.draw()


def _per_class(run: Run, names: list[str]) -> Markup:
    test = run.metrics.get("test", {}) if isinstance(run.metrics, dict) else {}
    if not isinstance(test, dict):
        return escape("")

    def column(key: str) -> list[Any]:
        values = test.get(key)
        return list(values) if isinstance(values, (list, tuple)) else []

    if "confusion_matrix" in test:
        cm = [row for row in column("confusion_matrix") if isinstance(row, (list, tuple))]
        matrix = table(
            ["truth \\ predicted", *names],
            [[names[i] if i < len(names) else f"class {i}", *map(number, row)] for i, row in enumerate(cm)],
        )
        pr = table(
            ["class", "precision", "recall"],
            [[n, metric_text(p), metric_text(r)] for n, p, r in zip(names, column("precision"), column("recall"))],
        )
        return html("<b>Confusion matrix (test)</b>{}<b>Per class</b>{}", matrix, pr)
    if "dice" in test:
        return html(
            "<b>Per class (test)</b>{}",
            table(
                ["class", "Dice", "IoU"],
                [[n, metric_text(d), metric_text(i)] for n, d, i in zip(names, column("dice"), column("iou"))],
            ),
        )
    if "precision" in test:
        return html(
            "<b>Per class (test)</b>{}",
            table(
                ["class", "precision", "recall"],
                [[n, metric_text(p), metric_text(r)] for n, p, r in zip(names, column("precision"), column("recall"))],
            ),
        )
    return escape("")


def _overlay(rgb, mask, probabilities, run: Run, names, colors, score) -> tuple[bytes, str]:
    """The 8-bit ``rgb`` display image with the prediction drawn over it (a mask of class indices, or the
    classes' probabilities in the run's order), and its caption.
    """
    rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb.copy()
    if mask is not None and mask.shape == rgb.shape[:2]:
        for index, color in colors.items():
            if index == 0:
                continue
            where = mask == index
            rgb[where] = (0.55 * rgb[where] + 0.45 * np.array(_rgb(color))).astype(np.uint8)
        caption = f"Dice {number(score, '.2f')}"
    else:
        indices = [c.get("index") for c in run.classes]
        top = int(np.argmax(probabilities)) if probabilities else 0
        name = names.get(indices[top], "?") if top < len(indices) else "?"
        share = probabilities[top] if probabilities else 0.0
        caption = f"predicted {name} ({share:.0%}); score {number(score, '.2f')}"
    im = Image.fromarray(rgb)
    im.thumbnail((96, 96))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue(), caption


def _rgb(color: str) -> tuple[int, int, int]:
    value = int(color[1:], 16) if is_color(color) else 0x808080
    return (value >> 16) & 255, (value >> 8) & 255, value & 255
