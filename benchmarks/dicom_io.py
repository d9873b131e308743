"""DICOM import and label export throughput: a synthetic CT study (512 x 512 int16 slices).

Prints slices per second for ``add_folder`` (header scan, decode, rescale, lossless PNG of the
int16 data, thumbnail, commit) and for ``export_labels`` in both layouts, median of 3 runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import table

import patientml_widgets as pml
from patientml_widgets.dicom_demo import write_dicom_sample


def main(slices: int = 40, size: int = 512, repeat: int = 3) -> str:
    work = Path(tempfile.mkdtemp(prefix="pml-bench-dicom-"))
    try:
        masks = write_dicom_sample(work / "scans", patients=2, slices=slices, size=size)
        n = sum(1 for _ in (work / "scans").rglob("*.dcm"))
        imports, folder_exports, coco_exports = [], [], []
        for i in range(repeat):
            project = pml.Project.open(work / f"p{i}")
            model = project.create_model("m", problem_type="segmentation", classes=["background", "lesion"])
            t0 = time.perf_counter()
            report = project.add_folder(model, work / "scans")
            imports.append(time.perf_counter() - t0)
            assert len(report.added) == n and not report.skipped
            with project.batch():
                for ex in report.added:
                    mask = masks.get(ex.source["file"], np.zeros(ex.shape, np.uint8))
                    project.submit_label(ex, mask=mask)
            t0 = time.perf_counter()
            project.export_labels(model, work / f"folder{i}")
            folder_exports.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            project.export_labels(model, work / f"coco{i}", layout="coco")
            coco_exports.append(time.perf_counter() - t0)
        steps = [("add_folder", imports), ("export folder", folder_exports), ("export coco", coco_exports)]
        rows = [[name, n, statistics.median(times), n / statistics.median(times)] for name, times in steps]
        return table(
            f"DICOM in, labels out: {n} images ({size}^2 CT slices and CR), median of {repeat}",
            ["step", "images", "s", "images/s"],
            rows,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    print(main(args.slices, args.size))
