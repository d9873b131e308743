"""A CT slice imported from DICOM, labeled in a real JupyterLab: the header window and CT presets."""

import json

import pytest

import patientml_widgets as pml
from patientml_widgets.dicom_demo import write_dicom_sample

from .lab import run_all, write_notebook

PIXEL = """e => {
  const c = e.querySelector('canvas.image');
  const d = c.getContext('2d').getImageData(Math.floor(c.width * %f), Math.floor(c.height / 2), 1, 1).data;
  return d[0];
}"""


@pytest.mark.slow
def test_ct_slice_opens_in_its_header_window_and_switches_to_a_ct_preset(lab, page):
    write_dicom_sample(lab.root / "scans", patients=1, slices=4, size=64)
    project = pml.Project.open(lab.root / "ct_project", user="tester")
    model = project.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    project.add_folder(model, lab.root / "scans")
    ct = [e for e in project.examples(model, sort="source") if e.source.get("modality") == "CT"][2]
    write_notebook(
        lab.root / "ct.ipynb",
        [
            "import json\nimport patientml_widgets as pml\n"
            f"project = pml.Project.open({str(project.path)!r}, create=False)\n"
            f"canvas = pml.LabelCanvas.for_example(project, {ct.id!r})\ncanvas",
            "print('WINDOW', json.dumps(canvas.window))",
        ],
    )
    run_all(page, lab, "ct.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    widget = panel.locator(".pml-lc")
    widget.wait_for(timeout=60_000)
    menu = widget.locator("select[title='Window / level']")
    options = menu.locator("option").all_inner_texts()
    assert options[:3] == ["Auto", "Full range", "From the image"] and "CT lung" in options
    assert menu.input_value() == "From the image"
    # soft tissue (40 HU) is mid-grey in the header's 40/400 window; air outside the body is black
    tissue = widget.evaluate(PIXEL % 0.5)
    assert 90 < tissue < 170 and widget.evaluate(PIXEL % 0.02) == 0
    menu.select_option("CT lung")
    page.wait_for_function(
        "() => document.querySelector('.pml-lc canvas.image').getContext('2d')"
        ".getImageData(Math.floor(document.querySelector('.pml-lc canvas.image').width / 2), 32, 1, 1).data[0] > 200"
    )  # in the lung window (-600/1500) soft tissue is bright
    cell = panel.locator(".jp-CodeCell").nth(1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output", has_text="WINDOW")
    output.wait_for(timeout=30_000)
    assert json.loads(output.inner_text().split("WINDOW", 1)[1]) == {"center": -600, "width": 1500}
