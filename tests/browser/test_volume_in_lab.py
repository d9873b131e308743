"""A CT volume in LabelCanvas, in a real JupyterLab: scroll, paint, switch plane, interpolate, submit."""

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import run_all, write_notebook


def _stroke(page, box, y, x0, x1):
    page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y * box["height"], steps=10)
    page.mouse.up()


def _painted_pixels(widget) -> int:
    """Coloured pixels on the label layer of the slice on screen."""
    return widget.locator("canvas.labels").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"
    )


@pytest.mark.slow
def test_scroll_paint_switch_plane_interpolate_submit(lab, page):
    project = pml.Project.open(lab.root / "volumes", user="reader")
    seg = project.create_model("Liver", problem_type="segmentation", classes=["background", "liver"])
    _, yy, xx = np.mgrid[0:12, 0:48, 0:64]
    ct = np.where((yy - 24) ** 2 + (xx - 32) ** 2 < 18**2, 60, -1000).astype(np.int16)
    ex = project.add_volume(seg, ct, spacing=(3.0, 1.0, 1.0), subject="p1")
    write_notebook(
        lab.root / "volume.ipynb",
        [
            "import patientml_widgets as pml\n"
            f"project = pml.Project.open({str(project.path)!r}, create=False)\n"
            f"canvas = pml.LabelCanvas.for_example(project, {ex.id!r})\n"
            "canvas"
        ],
    )
    run_all(page, lab, "volume.ipynb")
    widget = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .pml-lc")
    widget.wait_for(timeout=60_000)
    where = widget.locator(".where")
    where.filter(has_text="Slice 7 / 12").wait_for(timeout=30_000)  # the middle axial slice first
    view = widget.locator(".view")
    box = view.bounding_box()

    # scroll two slices with the keys, paint across the middle, scroll two more and paint again
    view.click(position={"x": 2, "y": 2}, button="middle")  # focus without painting
    page.keyboard.press("PageDown")
    page.keyboard.press("PageDown")
    where.filter(has_text="Slice 9 / 12").wait_for(timeout=10_000)
    _stroke(page, box, 0.5, 0.35, 0.65)
    page.wait_for_function("() => document.querySelector('.pml-lc canvas.labels') !== null")
    for _ in range(3):
        page.keyboard.press("PageDown")
    where.filter(has_text="Slice 12 / 12").wait_for(timeout=10_000)
    _stroke(page, box, 0.5, 0.35, 0.65)
    widget.get_by_role("button", name="Save draft").click()
    widget.locator(".status", has_text="Draft saved").wait_for(timeout=20_000)
    assert project.label(ex).slices == (8, 11)  # the store holds the 3-D mask, two slices painted

    # the coronal plane through the crosshair shows both strokes as lines
    widget.get_by_role("button", name="Coronal").click()
    where.filter(has_text="/ 48").wait_for(timeout=10_000)
    page.wait_for_function(
        "() => { const c = document.querySelector('.pml-lc canvas.labels'); return c && c.height === 12; }"
    )
    page.wait_for_timeout(300)  # the next animation frame paints the overlay
    assert _painted_pixels(widget) > 20

    # back to axial: interpolate the slices between, undoably, then submit
    widget.get_by_role("button", name="Axial").click()
    where.filter(has_text="/ 12").wait_for(timeout=10_000)
    widget.get_by_role("button", name="Interpolate").click()
    widget.get_by_role("button", name="Undo interpolation").wait_for(timeout=20_000)
    widget.get_by_role("button", name="Submit").click()
    widget.locator(".status", has_text="Submitted").wait_for(timeout=20_000)
    label = project.label(ex)
    assert label.status == "submitted" and label.slices == (8, 9, 10, 11)
    mask = project.mask(ex)
    assert mask.shape == (12, 48, 64) and mask[9].sum() > 0 and mask[:8].sum() == 0
