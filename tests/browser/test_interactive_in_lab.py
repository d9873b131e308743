"""The Smart tool in a real JupyterLab: click, see the proposal, add a negative click, accept (Enter),
undo, redo, submit; the store holds the object and how the label was made.
"""

import os
from pathlib import Path

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import run_all, write_notebook

COUNT_OPAQUE = (
    "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
    " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"
)


def _opaque_at(widget, layer: str, x: int, y: int) -> bool:
    """Whether the ``layer`` canvas shows anything at image pixel (x, y)."""
    return widget.locator(f"canvas.{layer}").evaluate(
        f"c => c.getContext('2d').getImageData({x}, {y}, 1, 1).data[3] > 0"
    )


def _click(page, widget, x, y, *, shift=False):
    """Click image pixel (x, y) where the image is on screen (Shift held: a negative prompt)."""
    image = widget.locator("canvas.image")
    box, width = image.bounding_box(), image.evaluate("c => c.width")
    scale = box["width"] / width
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale)
    if shift:
        page.keyboard.up("Shift")


@pytest.mark.slow
def test_click_refine_accept_undo_submit(lab, page, tmp_path):
    shots = Path(os.environ.get("PATIENTML_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    project = pml.Project.open(lab.root / "smart", user="reader")
    seg = project.create_model("Nodules", problem_type="segmentation", classes=["background", "nodule"])
    yy, xx = np.mgrid[:96, :96]
    image = np.full((96, 96), 400, np.uint16)
    image[(yy - 48) ** 2 + (xx - 36) ** 2 <= 14**2] = 3000  # the nodule
    image[40:56, 50:80] = 2800  # a bright neighbour touching it
    ex = project.add_example(seg, image, subject="p1")
    write_notebook(
        lab.root / "smart.ipynb",
        [
            "import patientml_widgets as pml\n"
            f"project = pml.Project.open({str(project.path)!r}, create=False)\n"
            f"canvas = pml.LabelCanvas.for_example(project, {ex.id!r})\n"
            "canvas"
        ],
    )
    run_all(page, lab, "smart.ipynb")
    widget = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .pml-lc")
    widget.wait_for(timeout=60_000)
    assert (
        widget.locator("select[title='The engine the Smart tool asks'] option")
        .first.text_content()
        .startswith("Classical")
    )
    widget.get_by_role("button", name="✦ Smart").click()
    hint = widget.locator(".hint")
    proposals = "() => document.querySelector('.pml-lc').pmlStats.proposals.length"

    # one click on the nodule: a proposal over it (a layer of its own, not the label)
    _click(page, widget, 36, 48)
    page.wait_for_function(f"{proposals} >= 1", timeout=20_000)
    hint.filter(has_text="Enter accepts").wait_for(timeout=5_000)
    assert _opaque_at(widget, "proposal", 36, 48) and widget.locator("canvas.labels").evaluate(COUNT_OPAQUE) == 0
    assert widget.locator("svg.marks circle[data-positive='true']").count() == 1

    # Shift+click the neighbour: the proposal is refined without it
    _click(page, widget, 72, 48, shift=True)
    page.wait_for_function(f"{proposals} >= 2", timeout=20_000)
    assert widget.locator("svg.marks circle[data-positive='false']").count() == 1
    assert _opaque_at(widget, "proposal", 36, 48) and not _opaque_at(widget, "proposal", 72, 48)
    widget.screenshot(path=str(shots / "label_canvas_smart_proposal.png"))

    # Enter accepts: the label shows the nodule, the proposal and its prompts are gone
    page.keyboard.press("Enter")
    widget.locator(".status", has_text="Draft saved").wait_for(timeout=20_000)
    page.wait_for_timeout(200)  # the next animation frame paints the label layer
    assert _opaque_at(widget, "labels", 36, 48) and not _opaque_at(widget, "proposal", 36, 48)
    assert widget.locator("svg.marks circle").count() == 0
    version = project.label(ex).version

    # undo takes the accepted proposal back in one step; redo brings it again
    page.keyboard.press("Control+z")
    page.wait_for_function(
        f"() => document.querySelector('.pml-lc .status').textContent.includes('version {version + 1}')", timeout=20_000
    )
    assert int(project.mask(ex).sum()) == 0
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function(
        f"() => document.querySelector('.pml-lc .status').textContent.includes('version {version + 2}')", timeout=20_000
    )
    widget.get_by_role("button", name="Submit").click()
    widget.locator(".status", has_text="Submitted").wait_for(timeout=20_000)

    label, mask = project.label(ex), project.mask(ex)
    nodule = (yy - 48) ** 2 + (xx - 36) ** 2 <= 14**2
    assert label.status == "submitted" and mask[nodule].mean() > 0.75 and mask[44:52, 60:80].sum() == 0
    made = label.made_with
    assert made["engines"]["classical"]["accepted"] == 1 and made["accepted"][0]["negative"] == 1
    assert made["clicks"] == 2 and made["tools"]["undo"] == 1 and label.time_spent > 0
