"""The whole loop in a real JupyterLab: tour notebook -> label -> train from the UI -> deploy ->
the prediction in the labeler -> the metrics chart; screenshots of the main views."""

import os
import shutil
from pathlib import Path

import pytest

import patientml_widgets as pml

from .lab import paint, run_all

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


def _shot(locator, name):
    folder = Path(os.environ.get("PATIENTML_SCREENSHOTS", "build/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(folder / name))


@pytest.mark.slow
def test_label_train_deploy_predict_and_chart_from_the_tour(lab, page):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    seg = demo.model("Skin lesion segmentation")
    # the demo's default run (its plan from the data and this machine); deploying is left to the person
    demo.configure_training(seg, auto_deploy=False)
    shutil.copy(NOTEBOOKS / "01_tour.ipynb", lab.root / "tour.ipynb")
    run_all(page, lab, "tour.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    app = panel.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea")  # the cell with PatientMLApp
    app.locator("tr", has_text="Skin lesion segmentation").click(timeout=90_000)
    _shot(app, "app_examples.png")

    # label an unlabeled example and submit it
    examples = app.locator(".pml-table", has_text="Examples").first
    examples.locator("button[data-filter='unlabeled']").click()
    examples.locator("button[data-filter='unlabeled'][aria-pressed='true']").wait_for(timeout=20_000)
    first_id = examples.locator("tbody tr").first.get_attribute("data-id")
    examples.locator("tbody tr").first.dispatch_event("click")
    canvas = app.locator(".pml-lc")
    canvas.wait_for(timeout=30_000)
    paint(page, canvas, 0.4, 0.4, 0.6, 0.6)
    canvas.locator(".status", has_text="Draft saved").wait_for(timeout=20_000)
    canvas.get_by_role("button", name="Submit").click()
    canvas.locator(".status", has_text="Unlabeled").wait_for(timeout=20_000)  # moved on to the next one
    assert demo.label(first_id).status == "submitted" and 1 in demo.label(first_id).classes
    app.locator("button.widget-button", has_text="Back").first.click()

    # start a training run from the UI and watch it succeed
    app.get_by_role("tab", name="Runs", exact=True).click()
    runs = app.locator(".pml-table", has_text="Train now")
    before = len(demo.runs(seg))
    runs.locator("button[data-action='train']").click()
    runs.locator("tbody tr [data-icon='succeeded']").first.wait_for(timeout=180_000)
    run = demo.runs(seg)[-1]
    assert len(demo.runs(seg)) == before + 1 and run.status == "succeeded"
    assert first_id in {e for e, _ in run.snapshot["train"] + run.snapshot["val"] + run.snapshot["test"]}

    # deploy it from its details
    runs.locator(f"tbody tr[data-id='{run.id}']").dispatch_event("click")
    details = app.locator(".widget-vbox", has_text="On the same test examples").last
    details.get_by_role("button", name="Deploy").first.click(timeout=30_000)
    app.locator(".widget-html", has_text="deploy: recorded").wait_for(timeout=20_000)
    assert demo.model(seg).champion_run_id == run.id
    _shot(details, "run_details.png")

    # another example shows the prediction overlay
    app.get_by_role("tab", name="Examples", exact=True).click()
    examples.locator("tbody tr").first.wait_for(timeout=20_000)
    examples.locator("tbody tr").nth(1).dispatch_event("click")
    canvas.wait_for(timeout=30_000)
    page.wait_for_function(
        """() => {
          const c = document.querySelector('.pml-lc canvas.prediction');
          if (!c || !c.width) return false;
          const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
          return false;
        }""",
        timeout=30_000,
    )
    _shot(canvas, "labeling_with_prediction.png")  # docs/labeling.png, the README's screenshot
    # the prediction looks right: the margin is a thin band around the lesion, not the whole skin
    for example in demo.examples(seg, status="unlabeled", limit=5):
        predicted = demo.predict(seg, example).mask
        margin, lesion, skin = (predicted == 2).mean(), (predicted == 1).mean(), (predicted == 0).mean()
        assert skin > 0.4 and lesion > margin > 0 and margin < 0.15, (example.id, skin, lesion, margin)
    app.locator("button.widget-button", has_text="Back").first.click()

    # the metrics chart shows the run
    app.get_by_role("tab", name="Metrics", exact=True).click()
    chart = app.locator(".bqplot").first
    chart.locator("path.dot").first.wait_for(timeout=30_000)
    assert chart.locator("path.dot").count() >= 1
    _shot(app, "metrics.png")
