"""ReadingDesk: the signed-in user's queue and the labeler, nothing else - the page clinicians see (Voila)."""

from __future__ import annotations

import ipywidgets as w

from ..project import Project
from .base import Notice, View
from .example_browser import ExampleBrowser
from .markup import HTML, html

__all__ = ["ReadingDesk"]


class ReadingDesk(View, w.VBox):
    """Who is signed in, the models that have examples for them to read, and their queue of the chosen one
    (My queue / My submitted): open an example to label it; submit goes on to the next.
    """

    def __init__(self, project: Project, model: str | None = None) -> None:
        self.project = project
        self.notice = Notice()
        role = project.role
        self.header = HTML(
            html("<b>Signed in as {}</b>{}", project.user, html(" ({})", role) if role is not None else "")
        )
        mine = [m for m in project.models() if sum(project.queue_counts(m).values())]
        self.models = w.Dropdown(options=[(m.name, m.id) for m in mine], description="Model")
        if model is not None:
            self.models.value = project.model(model).id
        self.models.observe(self.guarded(lambda _: self._show()), names="value")
        self.browser: ExampleBrowser | None = None
        self.body = w.VBox()
        super().__init__([self.header, self.models, self.body, self.notice])
        if not mine:
            self.models.layout.display = "none"
            self.notice.show(f"Nothing in this project is assigned to {project.user} to read.")
        else:
            self._show()

    def _show(self) -> None:
        if self.browser is not None:
            self.browser.close()
        self.browser = ExampleBrowser(self.project, self.models.value, queue=True, queue_only=True)
        self.body.children = [self.browser]
