"""MetricsChart and RunDetails in a real JupyterLab: lines for the checked metrics, unchecking removes
one, a run row opens its details, Deploy there turns the model table's badge green."""

import pytest

import patientml_widgets as pml

from .lab import run_all, write_notebook

TINY = {"epochs": 1, "image_size": 32, "base_channels": 4}


LINES = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .bqplot').querySelectorAll('g.curve path.line')"


def _line_count(chart):
    return chart.locator("g.curve path.line").count()  # the plotted lines, not the legend's


@pytest.mark.slow
def test_chart_lines_runs_details_and_deploy(lab, page):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    kind = demo.model("Lesion type")
    demo.configure_training(kind, auto_deploy=False)
    runs = [demo.train(kind, hyperparameters=TINY).wait(timeout=120) for _ in range(2)]
    assert all(r.status == "succeeded" for r in runs) and not demo.model(kind).deployed
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
    before = _line_count(chart)  # balanced accuracy on val and test
    assert before == 2
    panel.locator(".widget-checkbox", has_text="test").first.locator("input").uncheck()
    page.wait_for_function(f"n => {LINES}.length < n", arg=before, timeout=20_000)
    assert _line_count(chart) == 1

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
