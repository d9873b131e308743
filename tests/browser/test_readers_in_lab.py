"""The readers' views in a real JupyterLab: the reader comparison is blind until one's own submit, shows each
reading, the outlines and the consensus as images, offers a labeler no settling (with the reason) and lets a
reviewer adjudicate with a click; the agreement chart draws a bar per reader pair.
"""

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import run_all, write_notebook


def box(top, left, size=20):
    m = np.zeros((48, 48), np.uint8)
    m[top : top + size, left : left + size] = 1
    return m


@pytest.mark.slow
def test_reader_comparison_and_agreement_chart_in_lab(lab, page):
    project = pml.Project.open(lab.root / "readers-project", user="olga")
    model = project.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    rng = np.random.default_rng(0)
    project.add_examples(model, [rng.integers(0, 255, (48, 48), dtype=np.uint8) for _ in range(2)])
    for user, role in (("rita", "reviewer"), ("ana", "labeler"), ("ben", "labeler")):
        project.add_member(user, role)
    project.configure_reading(model, readers=2, pool=["ana", "ben"])
    ex = project.examples(model, sort="created")[0]
    pml.Project.open(project.path, create=False, user="ana").submit_label(ex, mask=box(5, 5))
    path = str(project.path)
    opened = f"pml.Project.open({path!r}, create=False, user="
    write_notebook(
        lab.root / "readers.ipynb",
        [
            "import patientml_widgets as pml\nfrom patientml_widgets.widgets import AgreementChart, ReaderComparison",
            f"ben = {opened}'ben')\nReaderComparison(ben, {ex.id!r})",
        ],
    )
    run_all(page, lab, "readers.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    blind = panel.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea")
    blind.get_by_text("Blind reading").wait_for(timeout=60_000)
    assert blind.locator("img").count() == 0 and "ana" not in blind.inner_text()

    pml.Project.open(project.path, create=False, user="ben").submit_label(ex, mask=box(10, 10))
    write_notebook(
        lab.root / "readers2.ipynb",
        [
            "import patientml_widgets as pml\nfrom patientml_widgets.widgets import AgreementChart, ReaderComparison",
            f"ben = {opened}'ben')\nReaderComparison(ben, {ex.id!r})",
            f"rita = {opened}'rita')\nReaderComparison(rita, {ex.id!r})",
            "AgreementChart(rita, 'Lesions')",
        ],
    )
    run_all(page, lab, "readers2.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cells = panel.locator(".jp-CodeCell")
    as_ben, as_rita, chart = (cells.nth(i).locator(".jp-OutputArea") for i in (1, 2, 3))
    as_ben.locator("img").nth(3).wait_for(timeout=60_000)  # ana, ben, the consensus, the outlines
    assert as_ben.locator("img").count() == 4
    for img in as_ben.locator("img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth") == 48  # real pictures, decoded
    text = as_ben.inner_text()
    assert "ana" in text and "consensus of ana, ben" in text and "0.562" in text  # Dice: 2 * 15^2 / 800
    settle = as_ben.locator("button", has_text="Use this reading")
    assert settle.is_disabled() and "needs the reviewer role" in (settle.get_attribute("title") or "")
    use = as_rita.locator("button", has_text="Use this reading")
    use.wait_for(timeout=30_000)
    assert not use.is_disabled()
    as_rita.locator("select").first.select_option("ben")
    use.click()
    as_rita.get_by_text("is the example's label now (adjudicated)").wait_for(timeout=30_000)
    project.poll()
    assert project.label(ex).source == "adjudicated" and project.label(ex).author == "rita"
    assert np.array_equal(project.mask(ex), box(10, 10))
    chart.locator(".bqplot").first.wait_for(timeout=60_000)
    bars = chart.locator("rect.bar")
    bars.first.wait_for(state="attached", timeout=30_000)
    heights = [float(b.get_attribute("height") or 0) for b in bars.all()]
    assert len(heights) == 4 and sum(h > 0 for h in heights) == 2  # ana with ben, ben with ana; none with oneself
    assert "ana / ben" in chart.inner_text()
