"""The platform views in a real JupyterLab: model table -> tabs -> Draft filter -> label -> submit;
an XSS probe shows as text; the subject viewer labels an image."""

import pytest

import patientml_widgets as pml

from .lab import paint, run_all, write_notebook

EVIL = '<img src=x onerror="window.__pwned = 1">'


@pytest.mark.slow
def test_model_row_tabs_draft_filter_label_submit_and_xss(lab, page):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    if EVIL not in [m.name for m in demo.models()]:
        demo.create_model(EVIL, problem_type="classification", classes=["a", "b"], description=EVIL)
    seg = demo.model("Skin lesion segmentation")
    write_notebook(
        lab.root / "app.ipynb",
        [f"import patientml_widgets as pml\npml.PatientMLApp(pml.Project.open({str(demo.path)!r}, create=False))"],
    )
    run_all(page, lab, "app.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    models = panel.locator(".pml-table").first
    models.locator("tbody tr").first.wait_for(timeout=60_000)
    # the XSS probe is text, and nothing ran
    assert models.locator("td", has_text=EVIL).count() == 2  # name and description, verbatim
    assert panel.locator("img[src='x']").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert models.locator(".badge", has_text="Not Deployed").count() >= 2

    models.locator("tr", has_text="Skin lesion segmentation").click()
    tabs = panel.locator(".lm-TabBar-tab, .p-TabBar-tab")
    tabs.filter(has_text="Examples").first.wait_for(timeout=30_000)
    assert [t.strip() for t in tabs.all_inner_texts()][:3] == ["Examples", "Runs", "Metrics"]

    examples = panel.locator(".pml-table", has_text="Examples").first
    drafts = demo.status_counts(seg)["draft"]
    examples.locator("button[data-filter='draft']").click()
    page.wait_for_function(
        "n => [...document.querySelectorAll('.pml-table tbody')].some(b => b.children.length === n "
        "&& [...b.querySelectorAll('[data-icon]')].every(i => i.dataset.icon === 'circle'))",
        arg=drafts,
        timeout=30_000,
    )
    assert examples.locator("button[data-filter='draft']").inner_text() == f"Draft ({drafts})"
    draft_id = examples.locator("tbody tr").first.get_attribute("data-id")
    examples.locator("tbody tr").first.click()

    canvas = panel.locator(".pml-lc")
    canvas.wait_for(timeout=30_000)
    paint(page, canvas, 0.3, 0.1, 0.4, 0.15, steps=6)  # on skin, off the lesion
    canvas.locator(".status", has_text="Draft saved").wait_for(timeout=20_000)
    canvas.get_by_role("button", name="Submit").click()
    # the view moves on to the next example in the current order...
    panel.locator(".pml-lc .status", has_text="Draft label").wait_for(timeout=20_000)
    # ...and the store holds the submitted label
    assert demo.label(draft_id).status == "submitted"
    panel.locator("button.widget-button", has_text="Back").first.click()
    examples.locator("button[data-filter='labeled']").click()
    examples.locator("button[data-filter='labeled'][aria-pressed='true']").wait_for(timeout=10_000)
    examples.locator("th", has_text="Label Last Updated").click()
    examples.locator("th", has_text="Label Last Updated").click()  # newest first
    row = examples.locator(f"tbody tr[data-id='{draft_id}']")
    row.wait_for(timeout=20_000)
    assert row.locator("[data-icon='check-circle']").count() == 1


@pytest.mark.slow
def test_subject_viewer_labels_an_image(lab, page):
    demo = pml.Project.open(lab.env["PATIENTML_DEMO_DIR"], create=False)
    kind = demo.model("Lesion type")
    ex = demo.examples(kind, status="unlabeled", subject="patient-005", limit=1)[0]
    write_notebook(
        lab.root / "subject.ipynb",
        [
            "import patientml_widgets as pml\n"
            f"pml.SubjectViewer(pml.Project.open({str(demo.path)!r}, create=False), 'patient-005')"
        ],
    )
    run_all(page, lab, "subject.ipynb")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(f".pml-table tbody tr[data-id='{ex.id}']").click(timeout=60_000)
    canvas = panel.locator(".pml-lc")
    canvas.wait_for(timeout=30_000)
    canvas.locator(".class", has_text="atypical lesion").click()
    canvas.get_by_role("button", name="Submit").click()
    canvas.locator(".status", has_text="Submitted").wait_for(timeout=20_000)
    assert demo.label(ex).classes == (1,) and demo.label(ex).status == "submitted"
