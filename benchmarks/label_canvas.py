"""LabelCanvas in headless Chromium inside a real JupyterLab.

- brush frame time at 2048^2: the work of one animation frame (stamping the interpolated
  discs of the pointer events since the last frame + repainting the dirty box), p50 / p95;
- stroke end -> Python mask current at 1024^2: from pointer-up (compression included) to
  the kernel's acknowledgement that it decoded and stored the mask (an upper bound);
- bytes on the wire per stroke (the compressed label map).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "browser"))

from _util import table
from lab import CHROMIUM_ARGS, chromium_path, run_all, running_lab, write_notebook


def _percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def _measure(page, lab, size: int, strokes: int, brush: int):
    name = f"canvas{size}.ipynb"
    write_notebook(
        lab.root / name,
        [
            "import numpy as np, patientml_widgets as pml\n"
            f"yy, xx = np.mgrid[0:{size}, 0:{size}]\n"
            f"image = ((np.sin(xx / 37) + np.cos(yy / 23)) * 60 + 128).astype(np.uint8)\n"
            "canvas = pml.LabelCanvas(image, ['background', 'lesion', 'margin'])\n"
            f"canvas.brush_size = {brush}\n"
            "canvas"
        ],
    )
    run_all(page, lab, name)
    widget = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .pml-lc")
    widget.wait_for(timeout=120_000)
    page.wait_for_timeout(500)
    widget.evaluate(
        "r => { r.pmlStats.frames.length = 0; r.pmlStats.wireBytes.length = 0; r.pmlStats.roundTrips.length = 0; }"
    )
    box = widget.locator(".view").bounding_box()
    for i in range(strokes):
        y = box["y"] + box["height"] * (0.1 + 0.8 * i / strokes)
        page.mouse.move(box["x"] + box["width"] * 0.15, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.85, y + 25, steps=40)
        page.mouse.up()
        page.wait_for_function(
            "n => document.querySelector('.pml-lc').pmlStats.roundTrips.length >= n", arg=i + 1, timeout=30_000
        )
    stats = widget.evaluate("r => r.pmlStats")
    page.goto("about:blank")
    return stats


def main() -> str:
    if chromium_path() is None:
        return "label canvas benchmark skipped: no chromium (apt-get install chromium)\n"
    from playwright.sync_api import sync_playwright

    base = Path(tempfile.mkdtemp(prefix="pml-canvas-bench-"))
    try:
        with running_lab(base) as lab, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            big = _measure(page, lab, 2048, 15, 40)
            mid = _measure(page, lab, 1024, 25, 20)
            browser.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    p50, p95 = _percentile(big["frames"], 0.5), _percentile(big["frames"], 0.95)
    rows = [
        ["brush frame work, 2048^2, p50 / p95 (ms)", f"{p50:.2f} / {p95:.2f}", len(big["frames"])],
        ["stroke end -> Python mask current, 2048^2, median (ms)", statistics.median(big["roundTrips"]), 15],
        ["stroke end -> Python mask current, 1024^2, median (ms)", statistics.median(mid["roundTrips"]), 25],
        ["bytes on the wire per stroke, 1024^2, median", f"{statistics.median(mid['wireBytes']):,.0f}", 25],
        ["bytes on the wire per stroke, 2048^2, median", f"{statistics.median(big['wireBytes']):,.0f}", 15],
    ]
    return table("LabelCanvas in headless Chromium (JupyterLab, loopback)", ["measure", "value", "samples"], rows)


if __name__ == "__main__":
    print(main())
