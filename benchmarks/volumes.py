"""A 512 x 512 x 300 int16 CT volume: import, the volume canvas in a real JupyterLab, interpolation.

Figures (the targets of the volume issue in brackets):

- import of the DICOM series, 300 files (<= 15 s), median of repeats into fresh projects;
- ``LabelCanvas.for_example`` in Python: the volume and its label map decoded;
- first slice on screen: from the start of the cell that opens the canvas to the browser's first
  painted image (<= 1.5 s);
- slice change, from the key press to the slice on screen: p50 / p95 when the browser had
  prefetched it (<= 50 ms) and for a cold jump of the slider (<= 150 ms);
- stroke end -> Python mask current: pointer-up (compression included) to the kernel's ack (<= 30 ms);
- the browser's slice cache after scrolling the whole volume, against the volume's bytes (<= 2x);
- interpolation over a 30-slice gap, in the browser: the click to the button that undoes it (<= 1 s).

The series is a synthetic phantom (body, organs, bone, noise), written once per run with
``dicom_demo.write_series``; speed does not depend on the anatomy. ``--quick``: a 256 x 256 x 120 volume.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "browser"))

from _util import table
from lab import CHROMIUM_ARGS, chromium_path, run_all, running_lab, write_notebook

import patientml_widgets as pml
from patientml_widgets.dicom_demo import write_series


def phantom(depth: int, size: int) -> np.ndarray:
    """Hounsfield units: air, a body ellipse of soft tissue, a liver, a bone ring, noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    out = np.empty((depth, size, size), np.int16)
    for z in range(depth):
        hu = np.where((xx / 0.42) ** 2 + (yy / 0.34) ** 2 < 1, 40.0, -1000.0)
        hu[((xx + 0.12) / 0.18) ** 2 + (yy / (0.12 + 0.05 * np.sin(z / 30))) ** 2 < 1] = 60.0
        hu[np.abs(np.hypot(xx, yy + 0.2) - 0.07) < 0.015] = 700.0
        out[z] = np.clip(hu + rng.normal(0, 15, hu.shape), -1024, 3071).astype(np.int16)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def measure_import(series: Path, base: Path, repeats: int) -> tuple[float, pml.Project, pml.Example]:
    times = []
    project = example = None
    for r in range(repeats):
        project = pml.Project.open(base / f"import-{r}")
        seg = project.create_model("Liver", problem_type="segmentation", classes=["background", "liver"])
        t0 = time.perf_counter()
        example = project.add_volume(seg, series)
        times.append(time.perf_counter() - t0)
    assert project is not None and example is not None
    return statistics.median(times), project, example


def measure_browser(project: pml.Project, example: pml.Example, base: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    depth = example.depth or 0
    with running_lab(base / "lab") as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        write_notebook(
            lab.root / "volume.ipynb",
            [
                "import time\nt0 = time.time() * 1000\nimport patientml_widgets as pml\n"
                f"project = pml.Project.open({str(project.path)!r}, create=False)\n"
                f"canvas = pml.LabelCanvas.for_example(project, {example.id!r})\n"
                "print('T0', t0)\ncanvas"
            ],
        )
        run_all(page, lab, "volume.ipynb")
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        widget = panel.locator(".pml-lc")
        widget.wait_for(timeout=120_000)
        t0 = float(panel.locator(".jp-OutputArea-output", has_text="T0").inner_text().split("T0", 1)[1])
        first = widget.evaluate("r => r.pmlStats.shownAt") - t0
        widget.locator(".where").filter(has_text="Slice").wait_for()
        page.wait_for_timeout(1500)  # the first slice's label and its neighbours arrive
        view = widget.locator(".view")
        view.click(position={"x": 2, "y": 2}, button="middle")
        widget.evaluate("r => { r.pmlStats.slices.length = 0; r.pmlStats.roundTrips.length = 0; }")
        for _ in range(40):  # scrolling at a reading pace: each next slice was prefetched
            page.keyboard.press("PageDown")
            page.wait_for_timeout(120)
        cold = []
        for i in range(15):  # slider jumps far away: nothing prefetched there
            target = (i * 97 + 13) % depth
            before = widget.evaluate("r => r.pmlStats.slices.length")
            widget.locator(".slider input").evaluate(
                "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }", target
            )
            page.wait_for_function(
                "n => document.querySelector('.pml-lc').pmlStats.slices.length > n", arg=before, timeout=30_000
            )
            page.wait_for_timeout(400)  # its neighbours arrive; the next jump is far from them
            cold.append(widget.evaluate("r => r.pmlStats.slices[r.pmlStats.slices.length - 1]"))
        slices = widget.evaluate("r => r.pmlStats.slices")
        warm = [s["ms"] for s in slices if s["cached"]]
        cold_ms = [s["ms"] for s in cold if not s["cached"]]
        # strokes on one slice, then one 30 slices further, then interpolate between them
        box = view.bounding_box()
        for i in range(10):
            y = box["y"] + box["height"] * (0.3 + 0.04 * i)
            page.mouse.move(box["x"] + box["width"] * 0.35, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, y + 10, steps=20)
            page.mouse.up()
            page.wait_for_function(
                "n => document.querySelector('.pml-lc').pmlStats.roundTrips.length >= n", arg=i + 1, timeout=30_000
            )
        trips = widget.evaluate("r => r.pmlStats.roundTrips")
        for _ in range(30):
            page.keyboard.press("PageDown")
        page.wait_for_timeout(1500)
        page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.4)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=20)
        page.mouse.up()
        page.wait_for_timeout(500)
        t = time.perf_counter()
        widget.get_by_role("button", name="Interpolate").click()
        widget.get_by_role("button", name="Undo interpolation").wait_for(timeout=60_000)
        interpolation = time.perf_counter() - t
        for _ in range(depth):  # the whole volume through the cache
            page.keyboard.press("PageUp")
        page.wait_for_timeout(2000)
        cache = widget.evaluate("r => ({ bytes: r.pmlVolume.cache.bytes, limit: r.pmlVolume.cache.limit })")
        browser.close()
    volume_bytes = depth * example.height * example.width * 2
    return {
        "first": first / 1000,
        "warm50": percentile(warm, 0.5),
        "warm95": percentile(warm, 0.95),
        "cold50": percentile(cold_ms, 0.5) if cold_ms else float("nan"),
        "cold95": percentile(cold_ms, 0.95) if cold_ms else float("nan"),
        "stroke50": percentile(trips, 0.5),
        "stroke95": percentile(trips, 0.95),
        "cache": cache["bytes"] / volume_bytes,
        "cache_limit": cache["limit"] / volume_bytes,
        "interpolation": interpolation,
        "n_warm": len(warm),
        "n_cold": len(cold_ms),
    }


def ms(p50: float, p95: float) -> str:
    return f"{p50:.1f} / {p95:.1f} ms"


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 256 x 256 x 120 volume, one import")
    args = parser.parse_args()
    depth, size, repeats = (120, 256, 1) if args.quick else (300, 512, 3)
    base = Path(tempfile.mkdtemp(prefix="pml-volume-bench-"))
    try:
        write_series(base / "series", phantom(depth, size), spacing=(1.0, 0.7, 0.7))
        seconds, project, example = measure_import(base / "series", base, repeats)
        pml.LabelCanvas(np.zeros((2, 2), np.uint8), ["background", "x"])  # the widget modules, imported once
        t = time.perf_counter()
        pml.LabelCanvas.for_example(project, example)
        canvas_open = time.perf_counter() - t
        rows = [
            ("volume", f"{size} x {size} x {depth} int16 ({depth * size * size * 2 / 1e6:.0f} MB)", ""),
            ("import of the DICOM series", f"{seconds:.1f} s", "<= 15 s"),
            ("LabelCanvas.for_example (Python, widgets imported)", f"{canvas_open:.2f} s", ""),
        ]
        if chromium_path() is None:
            rows.append(("browser figures", "skipped: no chromium", ""))
        else:
            b = measure_browser(project, example, base)
            cache = f"{b['cache']:.2f}x / {b['cache_limit']:.2f}x the volume"
            rows += [
                ("first slice on screen after the cell starts", f"{b['first']:.2f} s", "<= 1.5 s"),
                (f"slice change, prefetched (p50 / p95, n={b['n_warm']})", ms(b["warm50"], b["warm95"]), "<= 50 ms"),
                (f"slice change, cold (p50 / p95, n={b['n_cold']})", ms(b["cold50"], b["cold95"]), "<= 150 ms"),
                ("stroke end -> Python mask current (p50 / p95)", ms(b["stroke50"], b["stroke95"]), "<= 30 ms"),
                ("slice cache after the whole volume / its limit", cache, "<= 2x"),
                ("interpolation over 30 slices, click to done", f"{b['interpolation']:.2f} s", "<= 1 s"),
            ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return table("A CT volume on this machine", ["figure", "measured", "target"], [list(r) for r in rows])


if __name__ == "__main__":
    print(main())
