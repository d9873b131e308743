r"""The one way the views build HTML: every string of markup the package shows is made here.

A project folder can come from anywhere, so every value read from it (a model's name, a run's
progress, a metric's name, a confusion matrix cell...) is text, never markup:

- :func:`html` fills a *literal* template: each value is escaped (unless it is :class:`Markup`
  made here), and a format spec (``{:.4f}``) formats numbers only - a record holding a string
  where a number belongs shows that string, escaped, instead of raising or being pasted in raw;
- :func:`escape` makes one value safe text; ``Markup.join`` escapes every item it joins;
- :func:`number` formats a number from a record as text (for text that is escaped later);
- :class:`HTML` is the only HTML widget the views use: a value that is not :class:`Markup`
  is escaped, so plain text can never become markup by mistake;
- :func:`description` gives the keyword arguments that show a value as a widget's description.

TeX is text too. JupyterLab's MathJax typesets what ipywidgets shows in a ``Label`` and in every
``description`` (ipywidgets' ``typeset()``), so a metric named ``$\href{...}{x}$`` would become
math (a link, a styled or ``\unicode`` glyph) instead of its name. ipywidgets' ``HTML`` is not
typeset; :class:`HTML` still carries MathJax's ignore classes (:data:`NO_MATH`) for a host that
typesets whole output areas, and :func:`description` puts text MathJax could read as TeX in a span
with those classes. The views use no ``Label``; tests/test_markup.py holds them to these rules.

``tests/test_markup.py`` parses the views and fails on markup built any other way.
"""

from __future__ import annotations

import html as _html
import numbers
import string
from collections.abc import Iterable
from typing import Any

import ipywidgets as w
import traitlets as t

__all__ = ["HTML", "NO_MATH", "Markup", "description", "escape", "html", "is_number", "number", "table"]


class Markup(str):
    """A string of HTML known to be safe: made only by :func:`html`, :func:`escape` and :meth:`join`.

    Any other operation on it (``+``, ``%``, slicing, ``.replace``...) gives a plain ``str``,
    which :class:`HTML` shows as text.
    """

    __slots__ = ()

    def join(self, items: Iterable[Any]) -> Markup:
        """The items (escaped unless they are Markup) joined by this markup."""
        return Markup(str.join(self, (escape(item) for item in items)))


def escape(value: Any) -> Markup:
    """``value`` as text in HTML (``<``, ``>``, ``&`` and quotes escaped); Markup is kept as it is."""
    if isinstance(value, Markup):
        return value
    return Markup(_html.escape(str(value), quote=True))


def is_number(value: Any) -> bool:
    """A real number (bools are not numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(value: Any, spec: str = "", missing: str = "-") -> str:
    """A number from a record as text: ``format(value, spec)`` for a number, ``missing`` for None,
    and ``str(value)`` for anything else (a crafted record may hold text where a number belongs).
    The result is plain text: it still goes through :func:`html` or :func:`escape`.
    """
    if value is None:
        return missing
    if is_number(value):
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup) and not format_spec:
            return value
        return escape(number(value, format_spec, missing="None") if format_spec else value)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            raise ValueError("html() templates take no conversions (!r, !s, !a): format the value first")
        return value


_FORMATTER = _Formatter()


def html(template: str, *args: Any, **kwargs: Any) -> Markup:
    """Fill the literal ``template`` (``str.format`` syntax) with escaped values.

    ``{}`` shows a value as text (Markup is inserted as it is); ``{:.4f}`` formats a number and
    shows anything else as text. The template itself is trusted: never pass data as the template.
    """
    return Markup(_FORMATTER.vformat(template, args, kwargs))


#: the classes MathJax leaves alone: ``mathjax_ignore`` (MathJax 3's ``ignoreHtmlClass``, JupyterLab 4)
#: and ``tex2jax_ignore`` (MathJax 2, ipywidgets' fallback where no typesetter is given)
NO_MATH = ("mathjax_ignore", "tex2jax_ignore")
#: what can open TeX for MathJax (``$``, ``\(``, ``\[``, ``\begin``, ``\ref``) or for ipywidgets'
#: ``inline_sanitize`` (which takes ``$...$`` out before sanitizing and re-escapes it)
_TEX = ("$", "\\")


class HTML(w.HTML):
    """An ipywidgets HTML whose value is :class:`Markup`; any other string is escaped first.

    Its element carries :data:`NO_MATH`: a host that typesets the output area skips it.
    """

    @t.validate("value")
    def _safe_value(self, proposal: dict[str, Any]) -> str:
        return escape(proposal["value"])

    def __init__(self, value: Any = "", **kwargs: Any) -> None:
        super().__init__(value=escape(value), **kwargs)
        for name in NO_MATH:
            self.add_class(name)


def table(header: list[Any], rows: list[list[Any]]) -> Markup:
    """A table of text cells (each escaped unless it is Markup)."""
    head = escape("").join(html("<th style='text-align:left;padding:2px 10px'>{}</th>", h) for h in header)
    body = escape("").join(
        html("<tr>{}</tr>", escape("").join(html("<td style='padding:2px 10px'>{}</td>", c) for c in row))
        for row in rows
    )
    return html("<table style='border-collapse:collapse;font-size:13px'><tr>{}</tr>{}</table>", head, body)


def description(value: Any) -> dict[str, Any]:
    """The keyword arguments that show ``value`` as an ipywidgets description, as written.

    ipywidgets typesets descriptions with MathJax. Text that holds no ``$`` or backslash has no
    TeX to find and is given as it is; other text is escaped, its ``$`` and backslashes written
    as character references, in a span carrying :data:`NO_MATH` (``description_allow_html``).
    """
    text = str(value)
    if not any(c in text for c in _TEX):
        return {"description": text, "description_allow_html": False}
    inner = escape(text).replace("$", "&#36;").replace("\\", "&#92;")
    return {"description": html('<span class="{}">{}</span>', " ".join(NO_MATH), Markup(inner)),
            "description_allow_html": True}  # fmt: skip
