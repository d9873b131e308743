"""LabelCanvas in a real JupyterLab: draw, erase, undo, fill, zoom, submit; check Python and the store."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import run_all, write_notebook


def _notebook(lab, name, cells):
    write_notebook(lab.root / name, cells)


def _stroke(page, box, points):
    page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
    page.mouse.up()


@pytest.mark.slow
def test_draw_erase_undo_fill_zoom_submit(lab, page, tmp_path):
    shots = Path(os.environ.get("PATIENTML_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    seg = demo.model("Skin lesion segmentation")
    ex = demo.examples(seg, status="unlabeled", sort="id", limit=1)[0]
    _notebook(
        lab,
        "canvas.ipynb",
        [
            "import json\nimport numpy as np\nimport patientml_widgets as pml\n"
            f"project = pml.Project.open({str(demo.path)!r}, create=False)\n"
            f"canvas = pml.LabelCanvas.for_example(project, {ex.id!r})\n"
            "canvas",
            "print('MASK', json.dumps({int(k): int(v) for k, v in zip(*np.unique(canvas.mask, return_counts=True))}))",
        ],
    )
    run_all(page, lab, "canvas.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    widget = panel.locator(".pml-lc")
    widget.wait_for(timeout=60_000)
    status = widget.locator(".status")
    view = widget.locator(".view")
    box = view.bounding_box()
    # the image is fitted into the view: paint inside its middle
    _stroke(page, box, [(0.4, 0.4), (0.6, 0.45), (0.6, 0.6)])
    status.filter(has_text="Draft saved").wait_for(timeout=20_000)
    draft = demo.label(ex)
    assert draft.status == "draft" and 1 in draft.classes
    painted = int((demo.mask(ex) == 1).sum())
    assert painted > 50

    # erase across part of the stroke, then undo the erase with Ctrl+Z
    widget.get_by_role("button", name="⌫ Eraser").click()
    _stroke(page, box, [(0.35, 0.42), (0.65, 0.42)])
    page.wait_for_function(
        f"() => document.querySelector('.pml-lc .status').textContent.includes('version {draft.version + 1}')"
    )
    assert int((demo.mask(ex) == 1).sum()) < painted
    widget.locator(".view").click(position={"x": 2, "y": 2}, button="middle")  # focus without painting
    page.keyboard.press("Control+z")
    page.wait_for_function(
        f"() => document.querySelector('.pml-lc .status').textContent.includes('version {draft.version + 2}')"
    )
    assert int((demo.mask(ex) == 1).sum()) == painted

    # flood fill the background with "margin" (key 3), check, and undo it
    page.keyboard.press("3")
    widget.get_by_role("button", name="◍ Fill").click()
    view.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.2})
    page.wait_for_function(
        f"() => document.querySelector('.pml-lc .status').textContent.includes('version {draft.version + 3}')"
    )
    assert int((demo.mask(ex) == 2).sum()) > 128 * 128 // 2
    page.keyboard.press("Control+z")
    page.wait_for_function(
        f"() => document.querySelector('.pml-lc .status').textContent.includes('version {draft.version + 4}')"
    )
    assert int((demo.mask(ex) == 2).sum()) == 0

    # zoom in with the button: the stage's scale grows
    before = widget.locator(".stage").evaluate("e => e.style.transform")
    widget.get_by_role("button", name="Zoom in").click()
    after = widget.locator(".stage").evaluate("e => e.style.transform")
    assert before != after

    # submit: the store holds the submitted mask, and Python's mask is the same
    widget.get_by_role("button", name="Submit").click()
    status.filter(has_text="Submitted").wait_for(timeout=20_000)
    label = demo.label(ex)
    assert label.status == "submitted"
    stored = demo.mask(ex)
    assert int((stored == 1).sum()) == painted
    cell = panel.locator(".jp-CodeCell").nth(1)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output", has_text="MASK")
    output.wait_for(timeout=30_000)
    counts = json.loads(output.inner_text().split("MASK", 1)[1])
    assert counts == {str(k): int(v) for k, v in zip(*np.unique(stored, return_counts=True))}
    widget.screenshot(path=str(shots / "label_canvas.png"))  # kept as a test artifact


@pytest.mark.slow
def test_classification_canvas_click_a_class_and_submit(lab, page):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    kind = demo.model("Lesion type")
    ex = demo.examples(kind, status="unlabeled", sort="id", limit=1)[0]
    _notebook(
        lab,
        "classify.ipynb",
        [
            "import patientml_widgets as pml\n"
            f"project = pml.Project.open({str(demo.path)!r}, create=False)\n"
            f"pml.LabelCanvas.for_example(project, {ex.id!r})",
        ],
    )
    run_all(page, lab, "classify.ipynb")
    widget = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .pml-lc")
    widget.wait_for(timeout=60_000)
    option = widget.locator(".class", has_text="seborrheic keratosis")
    option.click()
    page.wait_for_function(
        "() => document.querySelector('.pml-lc .class[data-index=\"2\"]').getAttribute('aria-pressed') === 'true'"
    )
    widget.get_by_role("button", name="Submit").click()
    widget.locator(".status", has_text="Submitted").wait_for(timeout=20_000)
    label = demo.label(ex)
    assert label.status == "submitted" and label.classes == (2,)
