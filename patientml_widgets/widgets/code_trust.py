"""CodeTrust: the model code a model trains with, whether you trust it, and a button to trust it.

A project folder can contain code (``register_model_code``); it runs only for a user who trusts it.
This panel is the confirm in the UI: it shows the stored source as it would run (every hidden
character written out, see ``records.ModelCode``), who registered it and when, and trusts it on
a click. Models on a built-in network show nothing.
"""

from __future__ import annotations

import ipywidgets as w

from ..project import Project
from ..records import Model
from .base import Notice, View
from .markup import HTML, html

__all__ = ["CodeTrust"]


class CodeTrust(View, w.VBox):
    def __init__(self, project: Project, model: Model | str) -> None:
        self.project = project
        self._model_key = project.model(model).id
        self.summary = HTML()
        self.source = HTML()
        self.trust_button = w.Button(description="Trust this code", button_style="warning", icon="unlock")
        self.trust_button.on_click(lambda _: self.guarded(self.trust)())
        self.notice = Notice()
        super().__init__([])
        self.follow(project, lambda _: self.draw(), model_id=self._model_key, tables=("models", "code"))
        self.draw()

    @property
    def code_name(self) -> str | None:
        """The registered model code the model trains with (None: a built-in network)."""
        return self.project.model(self._model_key).training.get("model_code") or None

    def draw(self) -> None:
        name = self.code_name
        if name is None:
            self.children = []
            return
        code = self.project.model_code(name)
        if code.trusted:
            self.summary.value = html(
                "<span style='color:#137333'>Model code {} (registered by {}) is trusted by you.</span>",
                code.name,
                code.registered_by,
            )
            self.children = [self.summary, self.notice]
            return
        self.summary.value = html(
            "<div style='color:#b3261e;font-weight:600'>This project contains code you have not trusted</div>"
            "<div>Model code {} was registered by {} on {}. Predicting with or training this model runs it "
            "as Python in your kernel, so it does not run until you trust it. Read it first:</div>",
            code.name,
            code.registered_by,
            str(code.registered)[:19],
        )
        self.source.value = html(
            "<pre style='max-height:320px;overflow:auto;font-size:11px;border:1px solid #dadce0;padding:6px'>{}</pre>",
            repr(code),
        )
        self.children = [self.summary, self.source, self.trust_button, self.notice]

    def trust(self) -> None:
        """Trust the model's code as stored now (what the button does)."""
        name = self.code_name
        if name is None:
            return
        self.project.trust_code(name)
        self.draw()
        self.notice.show(f"trusted {name!r}: predictions and training can run it", "green")
