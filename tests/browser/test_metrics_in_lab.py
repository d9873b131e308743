"""MetricsChart and RunDetails in a real JupyterLab: lines for the checked metrics with integer run ticks,
error bars and a legend off the data, unchecking removes one, a run row opens its details, Deploy there
turns the model table's badge green. $PATIENTML_SCREENSHOTS (as for the other browser tests) gets screenshots
of both charts."""

import contextlib
import os
from pathlib import Path

import pytest

import patientml_widgets as pml

from .lab import run_all, write_notebook

TINY = {"epochs": 1, "image_size": 32, "base_channels": 4}

#: the across-runs chart's paths: vertical ones are error bars, the others the plotted lines
FIGURE = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .bqplot')"
PATHS = f"[...{FIGURE}.querySelectorAll('g.curve path.line')]"
LINES = f"{PATHS}.filter(p => p.getBBox().width > 0)"
BARS = f"{PATHS}.filter(p => p.getBBox().width === 0 && p.getBBox().height > 0)"


def _line_count(page):
    return page.evaluate(f"() => {LINES}.length")


def _apart(a, b):
    """Two bounding boxes that do not overlap."""
    return (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def _check_layout(figure, legend):
    """Integer x ticks that do not collide, and the legend's entries apart from each other and from the figure."""
    ticks = figure.locator("g.axis").first.locator("g.tick text")  # the x axis comes first
    labels = ticks.all_text_contents()
    assert labels and all(t.isdigit() for t in labels) and len(set(labels)) == len(labels)
    boxes = [ticks.nth(k).bounding_box() for k in range(len(labels))]
    assert all(_apart(a, b) for k, a in enumerate(boxes) for b in boxes[k + 1 :])
    entries = [legend.locator("span").nth(k).bounding_box() for k in range(legend.locator("span").count())]
    assert entries and all(_apart(a, b) for k, a in enumerate(entries) for b in entries[k + 1 :])
    plot_area = figure.locator("rect.plotarea_background").bounding_box()
    assert all(_apart(e, plot_area) and _apart(e, figure.bounding_box()) for e in entries)
    return labels


def _save(locator, name):
    """A screenshot into $PATIENTML_SCREENSHOTS (unset: none); a folder that cannot be written fails nothing."""
    folder = os.environ.get("PATIENTML_SCREENSHOTS")
    if folder:
        png = locator.screenshot()
        with contextlib.suppress(OSError):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_bytes(png)


@pytest.mark.slow
def test_chart_lines_runs_details_and_deploy(lab, page):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    kind = demo.model("Lesion type")
    demo.configure_training(kind, auto_deploy=False)
    runs = [demo.train(kind, hyperparameters=TINY).wait(timeout=120) for _ in range(2)]
    assert all(r.status == "succeeded" for r in runs) and not demo.model(kind).deployed
    for r in runs:  # 95% intervals of the test metric, as the evaluation records them
        value = r.metrics["test"]["balanced_accuracy"]
        interval = {"value": value, "low": max(0.0, value - 0.1), "high": min(1.0, value + 0.1)}
        demo.session.update_run(r.id, evaluation={"metrics": {"balanced_accuracy": interval}})
    write_notebook(
        lab.root / "metrics.ipynb",
        [f"import patientml_widgets as pml\npml.PatientMLApp(pml.Project.open({str(demo.path)!r}, create=False))"],
    )
    run_all(page, lab, "metrics.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    models = panel.locator(".pml-table").first
    models.locator("tr", has_text="Lesion type").click(timeout=60_000)
    panel.get_by_role("tab", name="Metrics", exact=True).click(timeout=30_000)

    chart = panel.locator(".bqplot").first
    chart.wait_for(timeout=30_000)
    page.wait_for_function(f"() => {LINES}.length >= 2", timeout=30_000)
    before = _line_count(page)  # balanced accuracy on val and test
    assert before == 2
    page.wait_for_function(f"() => {BARS}.length === 2", timeout=20_000)  # a bar per run's test value
    tabs = panel.locator(".widget-tab", has=page.locator(".bqplot")).last  # the chart's own tabs, inside the app's
    assert _check_layout(chart, tabs.locator(".pml-legend").first) == ["1", "2"]
    assert "95% bootstrap intervals" in tabs.locator(".pml-legend").first.inner_text()
    toggles = tabs.locator(".widget-toggle-button")
    assert toggles.all_inner_texts() == ["Run number", "Start time"]
    assert toggles.evaluate_all("bs => bs.every(b => b.scrollWidth <= b.clientWidth)")  # no label cut to "Run nu..."
    assert _apart(toggles.first.bounding_box(), chart.locator("rect.plotarea_background").bounding_box())
    _save(tabs, "metrics_across_runs.png")

    tabs.get_by_role("tab", name="Learning curves").click()
    curves = tabs.locator(".bqplot", has_text="Learning curves")
    curves.locator("g.curve path.line").first.wait_for(timeout=20_000)
    _check_layout(curves, tabs.locator(".pml-legend").last)
    _save(tabs, "learning_curves.png")
    tabs.get_by_role("tab", name="Across runs").click()

    panel.locator(".widget-checkbox", has_text="test").first.locator("input").uncheck()
    page.wait_for_function(f"n => {LINES}.length < n", arg=before, timeout=20_000)
    assert _line_count(page) == 1 and page.evaluate(f"() => {BARS}.length") == 0

    panel.get_by_role("tab", name="Runs", exact=True).click()
    runs_table = panel.locator(".pml-table", has_text="Train now")
    runs_table.locator("tbody tr", has_text="run-1").click(timeout=30_000)
    details = panel.locator(".widget-vbox", has_text="On the same test examples").last
    details.wait_for(timeout=30_000)
    details.get_by_role("button", name="Deploy").first.click()
    panel.locator(".widget-html", has_text="deploy: recorded").wait_for(timeout=20_000)
    assert demo.model(kind).champion_run_id == runs[0].id

    panel.locator("button.widget-button", has_text="Machine Learning").first.click()
    row = panel.locator(".pml-table").first.locator("tr", has_text="Lesion type")
    row.locator("span.badge", has_text="Deployed").wait_for(timeout=20_000)
    assert row.locator("span.badge").inner_text() == "Deployed"
