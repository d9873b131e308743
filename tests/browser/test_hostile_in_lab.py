"""A project folder from elsewhere, in a real JupyterLab: every view shows hostile strings as text.

Script payloads go into every field a view shows - model names and descriptions, class names,
a class colour (written into the record past the API's check), subjects, example sources, and
run records (slug, status, trigger, progress, error, traceback, metric names and values,
confusion matrix cells, hyperparameters, decisions, history) - through the lowest layer that
reaches the view, as a crafted folder would. All views render in one notebook; nothing may run
(``window.__pwned`` stays unset, no dialog opens, no element carries an event attribute), and
the payloads are visible as text where the fields are shown.

The payloads carry TeX too (``$\\href{javascript:...}{..}$``, ``\\(\\unicode..\\style..\\class..\\)``, an
environment): JupyterLab's MathJax typesets ipywidgets' Label values and descriptions (a metric's
checkbox here), so user text must reach the page in a form MathJax skips. A control cell (an
ipywidgets Label of ``$x^2$``) proves the typesetter is live; no other MathJax output may exist,
no ``a[href^=javascript:]`` anywhere, and the TeX is shown as written, dollar signs and all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import patientml_widgets as pml

from .lab import run_all, running_lab, write_notebook

TEX = r"$\href{javascript:window.__pwned=1}{tex}$ \(\unicode{x263A}\style{color:red}{R}\class{pwn}{C}\)"
TEX += r" \begin{matrix}M\end{matrix}"  # an environment
IMG = '<img src=x onerror="window.__pwned=1"> ' + TEX
SCRIPT = '"><script>window.__pwned=1</script>'
JS = "javascript:window.__pwned=1"
EVIL = f"{IMG} {SCRIPT} {JS}"
BAD_COLOR = "#123456;background-image:url(javascript:window.__pwned=1)"


def hostile_project(path) -> dict[str, str]:
    """The crafted project; returns the ids the notebook needs."""
    proj = pml.Project.open(path, user=f"{SCRIPT} {JS}")  # a user name is a name: at most 200 characters
    session = proj.session
    seg = proj.create_model(f"seg {IMG}", problem_type="segmentation", classes=["background", IMG, SCRIPT],
                            description=f"{SCRIPT} {JS}")  # fmt: skip
    kind = proj.create_model(f"cls {SCRIPT}", problem_type="classification", classes=[IMG, SCRIPT, JS],
                             description=IMG)  # fmt: skip
    proj.add_subject(f"patient {IMG}", name=f"name {SCRIPT}")
    # stored model code (the Lab runs as another user, who has not trusted it: ModelDetails shows it)
    proj.register_model_code(f"net {SCRIPT}", f"# {IMG}\ndef build(c, n):\n    return None\n")
    proj.configure_training(seg, model_code=f"net {SCRIPT}")
    image = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    ex = proj.add_example(seg, image, subject=f"patient {IMG}", split="train", source={"file": f"{SCRIPT}.png"})
    cls_ex = proj.add_example(kind, image, subject=f"patient {IMG}", split="test", source={"file": IMG})
    # DICOM header strings as an import stores them (a crafted file's Modality and SeriesDescription)
    dicom = {"series_uid": "1.2.3", "modality": IMG, "series_description": SCRIPT, "series_size": 2, "series_index": 0}
    proj.add_example(seg, image, subject=f"patient {IMG}", split="train", source={"file": "x.dcm", **dicom})
    # past the API: a class colour no #rrggbb check let through (a crafted folder's models table)
    with session.write():
        record = dict(session.model_record(kind.id))
        record["classes"] = [{**c, "color": BAD_COLOR} for c in record["classes"]]
        session.store.put("models", kind.id, record)
    metric = {IMG: 0.5, "dice_mean": 0.75, "confusion_matrix": [[IMG, 1, 0], [0, SCRIPT, 0], [0, 0, JS]]}
    metric |= {"precision": [IMG, 0.5, 0.5], "recall": [0.5, SCRIPT, 0.5], "balanced_accuracy": 0.5}
    runs = {}
    kinds = (("run_running", kind, "running"), ("run_done", kind, "succeeded"), ("run_seg", seg, EVIL))
    for name, model, status in kinds:
        run = proj.create_run(model, trigger=SCRIPT, hyperparameters={IMG: SCRIPT})
        session.update_run(
            run.id,
            slug=f"run {IMG}" if name != "run_done" else f"done {SCRIPT}",
            status=status,
            started="2024-01-01T00:00:00",
            ended=None if status == "running" else "2024-01-01T00:01:00",
            progress={"steps": IMG, "step": SCRIPT, "epoch": JS, "loss": 0.25, "eta_s": 3},
            error=f"error {IMG}",
            traceback=f"traceback {SCRIPT}",
            metrics={"test": metric, "val": {IMG: 0.4, "dice_mean": 0.7}},
            spec={"objective": IMG},
            history=[{"step": 1, "val": {IMG: 0.4}, "train": {"loss": 0.3}}, {"step": 2, "val": {IMG: 0.6}}],
            approvals=[{"decision": IMG, "actor": SCRIPT, "reason": JS, "time": IMG}],
            hardware={"device": IMG, "name": SCRIPT, "precision": JS, "threads": IMG, "reason": SCRIPT},
            test_examples=[],
        )
        runs[name] = run.id
        log = Path(path) / "logs" / f"{run.id}.log"  # the worker's log, as a crafted folder may hold it
        log.parent.mkdir(exist_ok=True)
        log.write_text(f"log {EVIL}\n")
    return {"seg": seg.id, "kind": kind.id, "ex": ex.id, "cls_ex": cls_ex.id, "subject": f"patient {IMG}", **runs}


CELLS = [
    # 0: which package the kernel imports (the worktree under test, not another install)
    "import json, numpy as np, patientml_widgets as pml\n"
    "from patientml_widgets.widgets import *\n"
    "print('PACKAGE', pml.__file__)\n"
    "proj = pml.Project.open({path!r}, create=False)\nids = json.loads({ids!r})",
    "ModelTable(proj)",  # 1
    "ExampleBrowser(proj, ids['seg'])",  # 2
    "LabelCanvas.for_example(proj, ids['ex'])",  # 3
    # 4: standalone, hostile class names; then colours past the trait, sent straight to the front end
    "c = LabelCanvas(np.zeros((16, 16), np.uint8), ['background', {IMG!r}, {SCRIPT!r}])\n"
    "bad = [dict(k, color={BAD!r}) for k in c.classes]\n"
    "c.comm.send({{'method': 'update', 'state': {{'classes': bad}}, 'buffer_paths': []}})\nc",
    "RunsTable(proj, ids['kind'])",  # 5
    "d = RunDetails(proj, ids['run_running'])\nd.log_view.selected_index = 0  # the log, open\nd",  # 6
    "RunDetails(proj, ids['run_done'])",  # 7
    "MetricsChart(proj, ids['kind'])",  # 8
    "ModelDetails(proj, ids['seg'])",  # 9
    "app = PatientMLApp(proj)\napp.open_model(proj.model(ids['seg']))\napp",  # 10
    "SubjectViewer(proj, ids['subject'])",  # 11
    # 12: the model whose colours were crafted: the canvas opens it in the palette's colours (d0d38f7)
    "b = ExampleBrowser(proj, ids['kind'])\nb.guarded(b.open_example)(ids['cls_ex'])\nb",
    "RunDetails(proj, ids['run_seg'])",  # 13
    "import ipywidgets\nipywidgets.Label('control $x^2$')",  # 14: MathJax is live here (typesets a Label)
]
#: what MathJax 3 (and 2) leave in the page for typeset math
MATH = "mjx-container, mjx-math, .MathJax, .MathJax_Preview, .MathJax_Display, script[type^='math/tex']"


@pytest.mark.slow
def test_hostile_project_renders_as_text_in_every_view(tmp_path, browser):
    ids = hostile_project(tmp_path / "hostile")
    cells = [c.format(path=str(tmp_path / "hostile"), ids=json.dumps(ids), IMG=IMG, SCRIPT=SCRIPT, BAD=BAD_COLOR)
             for c in CELLS]  # fmt: skip
    package = str(pml.__file__)
    env = {"PYTHONPATH": str(Path(pml.__file__).parent.parent), "PATIENTML_DATA_DIR": str(tmp_path / "reader")}
    with running_lab(tmp_path / "lab", env) as lab:
        write_notebook(lab.root / "hostile.ipynb", cells)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            run_all(page, lab, "hostile.ipynb")
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            outputs = panel.locator(".jp-Cell .jp-OutputArea")
            last = outputs.nth(13)
            last.locator(".widget-html", has_text="traceback").first.wait_for(timeout=60_000)
            panel.locator(".pml-lc .class").first.wait_for(timeout=30_000)
            page.wait_for_function(
                "n => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt')"
                ".length === n && ![...document.querySelectorAll('.jp-InputPrompt')].some(p => "
                "p.textContent.includes('*'))",
                arg=len(CELLS),
                timeout=60_000,
            )
            control = outputs.nth(14)
            control.scroll_into_view_if_needed()
            control.locator("mjx-container").first.wait_for(timeout=30_000)  # MathJax loaded and typesetting
            page.wait_for_timeout(1500)  # let late renders (bqplot, tables' first page, typesetting) land
            text = []
            for i in range(len(CELLS)):  # offscreen cells are not laid out (content-visibility): scroll to each
                outputs.nth(i).scroll_into_view_if_needed()
                page.wait_for_timeout(100)
                text.append(outputs.nth(i).inner_text())

            # the kernel runs the package under test
            assert f"PACKAGE {package}" in text[0]
            # nothing ran, nothing became an element
            assert page.evaluate("() => window.__pwned") is None
            assert dialogs == []
            hostile = page.evaluate(
                "() => [...document.querySelectorAll('.jp-OutputArea *')].filter(e => e.tagName === 'SCRIPT'"
                " || (e.tagName === 'IMG' && e.getAttribute('src') === 'x')"
                " || [...e.attributes].some(a => a.name.startsWith('on')"
                " || (/href|src|action/i.test(a.name) && /^\\s*javascript:/i.test(a.value))))"
                ".map(e => e.outerHTML.slice(0, 200))"
            )
            assert hostile == []
            # TeX: no link from \href, no MathJax output but the control's, no \class applied
            assert page.locator('a[href^="javascript:" i]').count() == 0
            math = page.evaluate(
                "([sel, control]) => [...document.querySelectorAll(sel)].filter(e => !control.contains(e)).map(e =>"
                " e.tagName + ' in: ' + (e.closest('.widget-checkbox, .widget-label, label') || e.parentElement)"
                ".textContent.slice(0, 100))",
                [MATH, control.element_handle()],
            )
            assert math == [], f"MathJax typeset user text: {math}"
            assert page.locator(".pwn").count() == 0

            # ...and the payloads are there, as text, where the fields are shown
            def shows(i: int, *needles: str) -> None:
                seen = " ".join(text[i].split())  # as laid out: runs of spaces are one
                missing = [n for n in needles if " ".join(n.split()) not in seen]
                assert not missing, f"cell {i} does not show {missing} in:\n{text[i][:3000]}"

            shows(1, f"seg {IMG}", f"{SCRIPT} {JS}", f"cls {SCRIPT}")  # model names, descriptions
            shows(2, f"patient {IMG}", f"{SCRIPT}.png", f"{IMG} {SCRIPT} 1/2")  # subject, source, DICOM header
            shows(3, IMG, SCRIPT)  # class names in the palette
            shows(4, IMG, SCRIPT)
            shows(5, f"run {IMG}", f"done {SCRIPT}", SCRIPT)  # slugs, trigger
            shows(6, f"run {IMG}", f"progress: step {SCRIPT}/{IMG} (epoch {JS}), loss 0.2500", f"error {IMG}")
            shows(6, f"traceback {SCRIPT}", f"{IMG}={SCRIPT}", f"{IMG} by {SCRIPT} - {JS}", f"trained on: {IMG}")
            shows(6, IMG, SCRIPT, JS)  # the confusion matrix and per-class cells
            shows(6, f"log {EVIL}")  # the worker's log text
            shows(7, f"done {SCRIPT}")
            shows(8, IMG.replace("_", " "))  # a metric named with a payload (checkbox)
            shows(9, f"seg {IMG}", f"{SCRIPT} {JS}")
            shows(9, "This project contains code you have not trusted", f"net {SCRIPT}", f"# {IMG}", "Trust this code")
            shows(10, f"seg {IMG}")
            shows(11, f"name {SCRIPT}", f"seg {IMG}")
            shows(12, IMG, SCRIPT)  # its class names, as text
            shows(13, EVIL)  # a status that is a payload

            # the front end takes no colour it was sent past the trait
            swatches = outputs.nth(4).locator(".swatch")
            assert swatches.count() == 3
            for k in range(3):
                assert swatches.nth(k).evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(128, 128, 128)"
                assert "javascript" not in (swatches.nth(k).get_attribute("style") or "")
            # the stored crafted colours were replaced by the palette's (records.ClassInfo.from_record)
            crafted = outputs.nth(12).locator(".swatch")
            assert crafted.count() == 3
            for k, rgb in enumerate(["rgb(31, 119, 180)", "rgb(214, 39, 40)", "rgb(44, 160, 44)"]):
                assert crafted.nth(k).evaluate("e => getComputedStyle(e).backgroundColor") == rgb
                assert "javascript" not in (crafted.nth(k).get_attribute("style") or "")
            # the chart's tooltips (bqplot) are text too
            dot = outputs.nth(8).locator(".scatter .dot, .dot").first
            assert dot.count()
            dot.hover(force=True)
            page.wait_for_function(
                "t => [...document.querySelectorAll('div[class*=tooltip]')].some(e => e.offsetParent !== null "
                "&& getComputedStyle(e).opacity !== '0' && e.textContent.includes(t))",
                arg=f"done {SCRIPT}: 0.5000",
                timeout=5_000,
            )
            assert page.evaluate("() => window.__pwned") is None and dialogs == []
        finally:
            page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
            context.close()
