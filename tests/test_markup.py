"""HTML from project data: one helper builds it, and the views cannot build it any other way.

The static checks parse ``patientml_widgets/widgets/*.py`` and the front ends in ``static/``;
``test_the_checker_catches_the_old_run_details_bug`` proves the check would have caught the
progress line and confusion matrix cells that were once pasted into RunDetails' HTML raw.
"""

from __future__ import annotations

import ast
import html as _html
import re
from pathlib import Path

import numpy as np
import pytest

from patientml_widgets.widgets import LabelCanvas, RunDetails
from patientml_widgets.widgets.markup import HTML, NO_MATH, Markup, description, escape, html, number

PACKAGE = Path(__file__).resolve().parent.parent / "patientml_widgets"
WIDGETS = PACKAGE / "widgets"
STATIC = PACKAGE / "static"
EVIL = '<img src=x onerror="window.__pwned=1">'

# -- the helper ----------------------------------------------------------------------------


def test_html_escapes_values_and_keeps_its_own_markup():
    out = html("<b>{}</b> {}", EVIL, html("<i>{}</i>", "&"))
    assert out == "<b>&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;</b> <i>&amp;</i>"
    assert isinstance(out, Markup) and escape(out) is out
    assert html("<br>").join(["<a>", html("<b>x</b>")]) == "&lt;a&gt;<br><b>x</b>"
    # whatever is not made by the helper is plain text again
    assert type(out + "<x>") is str and type(out.replace("b", "i")) is str
    with pytest.raises(ValueError):
        html("{!r}", "x")


def test_a_format_spec_formats_numbers_only():
    assert html("{:.2f} {:.0%}", 0.5, 0.25) == "0.50 25%"
    # a crafted record holds text where a number belongs: shown (escaped), never raising or raw
    assert html("loss {:.4f}", EVIL) == "loss " + escape(EVIL)
    assert html("{:.4f}", True) == "True" and html("{:.4f}", None) == "None"
    assert number(None) == "-" and number(3, "+.1f") == "+3.0" and number("3", ".1f") == "3"


def test_the_html_widget_escapes_plain_strings():
    widget = HTML("<b>plain</b>")
    assert widget.value == "&lt;b&gt;plain&lt;/b&gt;"
    widget.value = EVIL
    assert "<img" not in widget.value
    widget.value = html("<b>{}</b>", EVIL)
    assert widget.value.startswith("<b>&lt;img")


TEX = r"$\href{javascript:window.__pwned=1}{x}$ \(\unicode{x263A}\) \begin{matrix}M\end{matrix} <b>&"


def test_the_html_widget_is_skipped_by_mathjax():
    assert set(NO_MATH) <= set(HTML(TEX)._dom_classes) == {"mathjax_ignore", "tex2jax_ignore"}


def test_a_description_is_text_that_mathjax_skips():
    # no TeX to find: given as it is (ipywidgets sets it as text)
    assert description("dice mean <b>") == {"description": "dice mean <b>", "description_allow_html": False}
    # TeX: escaped, $ and backslashes as character references, in a span MathJax skips
    out = description(TEX)
    assert out["description_allow_html"] is True and isinstance(out["description"], Markup)
    shown = out["description"]
    assert shown.startswith('<span class="mathjax_ignore tex2jax_ignore">') and shown.endswith("</span>")
    inner = shown.removeprefix('<span class="mathjax_ignore tex2jax_ignore">').removesuffix("</span>")
    assert "$" not in inner and "\\" not in inner and "<" not in inner
    assert _html.unescape(inner) == TEX  # what the browser shows: the text as written
    assert description("a\\b")["description_allow_html"] is True


# -- the views -----------------------------------------------------------------------------


def test_run_details_shows_a_crafted_run_record_as_text(project, cls):
    run = project.create_run(cls)
    progress = {"steps": EVIL, "step": EVIL, "epoch": '"><script>window.__pwned=1</script>', "loss": EVIL}
    test = {
        "confusion_matrix": [[EVIL, 1, 0], [0, "<b>2</b>", 0], "not a row"],
        "precision": [EVIL, 0.5, 0.25],
        "recall": [0.5, "javascript:alert(1)", 0.0],
    }
    project.session.update_run(
        run.id,
        status="running",
        progress=progress,
        metrics={"test": test},
        error=EVIL,
        traceback=EVIL,
        started=EVIL,
        ended="2020-01-01",
        hyperparameters={EVIL: EVIL},
        approvals=[{"decision": EVIL, "actor": EVIL, "reason": EVIL, "time": EVIL}],
    )
    details = RunDetails(project, run.id)
    shown = details.summary.value + details.per_class.value + details.approvals.value
    assert "<img" not in shown and "<script" not in shown and "<b>2</b>" not in shown
    assert f"progress: step {escape(EVIL)}/{escape(EVIL)}" in details.summary.value
    assert f"<td style='padding:2px 10px'>{escape(EVIL)}</td>" in details.per_class.value
    assert "&lt;b&gt;2&lt;/b&gt;" in details.per_class.value


def test_label_canvas_takes_only_rrggbb_colours():
    image = np.zeros((4, 4), np.uint8)
    for bad in ["red", "#fff", "#123456;background:url(javascript:alert(1))", '" onmouseover="x', 123]:
        with pytest.raises(Exception, match="#rrggbb"):
            LabelCanvas(image, [{"name": "bg"}, {"name": "a", "color": bad}])
    canvas = LabelCanvas(image, [{"name": "bg"}, {"name": "a", "color": "#12AB34"}])
    with pytest.raises(Exception, match="#rrggbb"):
        canvas.classes = [{"index": 0, "name": "bg", "color": "#000000"}, {"index": 1, "name": "a", "color": "red"}]


# -- the static check: every HTML string is the helper's ----------------------------------

#: a tag or a character reference: a string holding one is markup
MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>|&#?[a-zA-Z0-9]+;")
#: what makes markup (functions annotated ``-> Markup`` are added per run)
MAKERS = {"html", "escape"}
#: the classes whose instances show their value as HTML
HTML_CLASSES = {"HTML", "HTMLMath", "Notice"}
HELPER = "widgets.markup"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _markup_makers(trees: dict[str, ast.Module]) -> set[str]:
    makers = set(MAKERS)
    for tree in trees.values():
        for node in ast.walk(tree):
            function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None
            if function and ast.unparse(node.returns).strip("'\"") == "Markup":
                makers.add(node.name)
    return makers


def _is_markup(node: ast.AST | None, makers: set[str]) -> bool:
    """Whether ``node`` is (statically) made by the helper."""
    if node is None:
        return True
    if isinstance(node, ast.IfExp):
        return _is_markup(node.body, makers) and _is_markup(node.orelse, makers)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr == "join":
            return _is_markup(node.func.value, makers)
        return _name(node.func) in makers
    return False


def _html_attributes(trees: dict[str, ast.Module]) -> set[str]:
    """Names and attributes assigned an HTML widget (``self.summary = HTML()``)."""
    found = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and _name(node.value.func) in HTML_CLASSES
            ):
                found.update(n for n in map(_name, node.targets) if n)
    return found


def _is_ipywidget(func: ast.AST) -> bool:
    """``w.Checkbox``, ``ipywidgets.Label``: a class taken from ipywidgets' module."""
    return isinstance(func, ast.Attribute) and _name(func.value) in {"w", "ipywidgets", "widgets"}


def markup_findings(trees: dict[str, ast.Module]) -> list[str]:
    """Every place in ``trees`` (module name -> parsed source) that builds HTML without the helper."""
    makers, html_names = _markup_makers(trees), _html_attributes(trees)
    findings = []
    for module, tree in trees.items():
        if module == HELPER:
            continue
        allowed = _docstrings(tree)
        html_classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)} & HTML_CLASSES
        for node in ast.walk(tree):
            where = f"{module}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and _name(node.func) == "html":
                if not (node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    findings.append(f"{where} html() template is not a string literal")
                else:
                    allowed.add(id(node.args[0]))
            if isinstance(node, ast.Call) and _name(node.func) == "Markup":
                findings.append(f"{where} makes Markup by hand")
            if isinstance(node, ast.Call) and _name(node.func) in HTML_CLASSES:
                if isinstance(node.func, ast.Attribute):  # w.HTML, ipywidgets.HTML: the unescaping widget
                    findings.append(f"{where} uses {ast.unparse(node.func)} (use markup.HTML)")
                value = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "value"), None)
                if not _is_markup(value, makers):
                    findings.append(f"{where} {ast.unparse(node.func)}(...) is given {ast.unparse(value)[:60]}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "ipywidgets"
                and {a.name for a in node.names} & HTML_CLASSES
            ):
                findings.append(f"{where} imports ipywidgets' HTML (use markup.HTML)")
            if isinstance(node, ast.Call) and _is_ipywidget(node.func):
                # MathJax typesets a Label's value and every description: text from data goes through
                # markup.description(); a Label is not used (markup.HTML shows text)
                if _name(node.func) == "Label":
                    findings.append(f"{where} uses {ast.unparse(node.func)} (MathJax typesets it: use markup.HTML)")
                for k in node.keywords:
                    if k.arg == "description" and not (
                        isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
                    ):
                        findings.append(f"{where} description={ast.unparse(k.value)[:60]} (use **description(...))")
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Attribute) and t.attr == "description" for t in node.targets)
                and not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
            ):
                findings.append(f"{where} a description is given {ast.unparse(node.value)[:60]} (use description())")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "ipywidgets"
                and "Label" in {a.name for a in node.names}
            ):
                findings.append(f"{where} imports ipywidgets' Label (MathJax typesets it: use markup.HTML)")
            if (
                isinstance(node, ast.keyword)
                and node.arg == "description_allow_html"
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                findings.append(f"{where} lets a description be HTML")
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if not (isinstance(target, ast.Attribute) and target.attr == "value"):
                        continue
                    owner = target.value
                    on_html = _name(owner) in html_names or (_name(owner) == "self" and bool(html_classes))
                    if isinstance(node, ast.AugAssign) or (on_html and not _is_markup(node.value, makers)):
                        findings.append(f"{where} {ast.unparse(target)} is given {ast.unparse(node.value)[:60]}")
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if id(node) not in allowed and MARKUP.search(text):
                findings.append(f"{module}:{node.lineno} markup outside html(): {node.value[:60]!r}")
    return findings


def widget_modules() -> dict[str, ast.Module]:
    return {f"widgets.{p.stem}": ast.parse(p.read_text(), str(p)) for p in sorted(WIDGETS.glob("*.py"))}


def test_every_html_string_in_the_views_is_made_by_the_helper():
    assert markup_findings(widget_modules()) == []


def test_only_the_views_touch_ipywidgets():
    outside = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if WIDGETS not in p.parents and re.search(r"^\s*(import|from) (ipywidgets|anywidget)\b", p.read_text(), re.M)
    ]
    assert outside == []


OLD_RUN_DETAILS = """
import ipywidgets as w
from .base import escape

def _summary_lines(run):
    lines = [f"<div style='font-weight:600'>{escape(run.slug)}</div>"]
    p = run.progress
    lines.append(f"progress: step {p.get('step', 0)}/{p['steps']}, loss {p.get('loss', 0):.4f}")
    return lines

def _table(rows):
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{body}</table>"

class RunDetails(w.VBox):
    def __init__(self, run):
        self.summary = w.HTML()
        self.per_class = w.HTML()
        self.summary.value = "<br>".join(_summary_lines(run))
        self.per_class.value = _table([[str(v) for v in row] for row in run.metrics["test"]["confusion_matrix"]])
"""


def test_the_checker_catches_the_old_run_details_bug():
    found = markup_findings({"widgets.run_details": ast.parse(OLD_RUN_DETAILS)})
    text = "\n".join(found)
    assert "uses w.HTML" in text
    assert "self.summary.value is given '<br>'.join" in text  # the progress line joined into HTML raw
    assert "self.per_class.value is given _table(" in text  # the matrix cells pasted into <td> raw
    assert "markup outside html(): '<td>'" in text and "markup outside html(): '<br>'" in text
    # text from data as a description or a Label (MathJax typesets both)
    tex = (
        "import ipywidgets as w\nfrom .markup import description\n"
        "def f(name):\n    box = w.Checkbox(description=name)\n    box.description = name\n"
        "    ok = w.Checkbox(indent=False, **description(name))\n"
        "    return w.Label(name), w.Button(description='Back')\n"
    )
    assert sorted(f.split(" ", 1)[1] for f in markup_findings({"widgets.m": ast.parse(tex)})) == [
        "a description is given name (use description())",
        "description=name (use **description(...))",
        "uses w.Label (MathJax typesets it: use markup.HTML)",
    ]
    # and the fixed pattern passes
    fixed = (
        "from .markup import HTML, html\n"
        "def f(run) -> 'Markup':\n    return html('<b>{}</b>', run.slug)\n"
        "class V:\n    def __init__(self, run):\n        self.summary = HTML()\n"
        "        self.summary.value = html('<br>').join([f(run), 'progress: step ' + str(run.progress)])\n"
    )
    assert markup_findings({"widgets.v": ast.parse(fixed)}) == []


# -- the front ends: no user data reaches markup or style text ---------------------------------

#: assigning markup is allowed only from a constant (an UPPER_CASE name, optionally indexed)
CONSTANT_MARKUP = re.compile(r"\.innerHTML\s*=\s*[A-Z][A-Z0-9_]*(\[[A-Za-z_]\w*\])?\s*;")
FORBIDDEN_JS = [
    (re.compile(r"\bouterHTML\b"), "outerHTML"),
    (re.compile(r"\binsertAdjacentHTML\b"), "insertAdjacentHTML"),
    (re.compile(r"\bdocument\.write"), "document.write"),
    (re.compile(r"\bcreateContextualFragment\b|\bDOMParser\b"), "HTML parsing"),
    (re.compile(r"\beval\s*\(|\bnew Function\b"), "eval"),
    (re.compile(r"\.cssText\b|setAttribute\(\s*[\"']style[\"']"), "style text"),
    (re.compile(r"\bstyle:\s*`"), "a style attribute built from a template"),
    (re.compile(r"setAttribute\(\s*[\"'](href|src|on\w+)[\"']"), "a URL or handler attribute"),
]
#: a colour in an element's style comes from safeColor()
STYLE_COLOR = re.compile(r"\.style\.(background\w*|color|borderColor|fill)\s*=(?!\s*safeColor\()")


def js_findings(name: str, source: str) -> list[str]:
    findings = []
    for number_, line in enumerate(source.splitlines(), 1):
        code = line.split("//", 1)[0] if not line.lstrip().startswith("*") else ""
        if "innerHTML" in code and not CONSTANT_MARKUP.search(code):
            findings.append(f"{name}:{number_} innerHTML from something other than a constant")
        findings += [f"{name}:{number_} {what}" for pattern, what in FORBIDDEN_JS if pattern.search(code)]
        if STYLE_COLOR.search(code):
            findings.append(f"{name}:{number_} a colour set without safeColor()")
    return findings


def test_the_front_ends_put_no_data_into_markup_or_style_text():
    found = [f for p in sorted(STATIC.glob("*.js")) for f in js_findings(p.name, p.read_text())]
    assert found == []


def test_the_js_check_sees_what_it_looks_for():
    bad = (
        "el.innerHTML = `<b>${name}</b>`;\n"
        'h("span", { style: `background:${c.color}` });\n'
        "box.style.background = c.color;\n"
        "el.insertAdjacentHTML('beforeend', x);\n"
    )
    assert [f.split(" ", 1)[0] for f in js_findings("x.js", bad)] == ["x.js:1", "x.js:2", "x.js:3", "x.js:4"]
    ok = "span.innerHTML = ICON_SVG;\nsvg.innerHTML = ICONS[name];\nspan.style.backgroundColor = safeColor(c);\n"
    assert js_findings("x.js", ok) == []
