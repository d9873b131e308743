"""patientml-widgets: label medical images, train and deploy models, inside Jupyter."""

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    ImageError,
    NotFoundError,
    PatientMLError,
    PermissionDenied,
    SchemaError,
    StoreError,
    ValidationError,
)
from .project import ImportReport, Project
from .records import Change, ClassInfo, Example, Label, Model, Run, Subject

try:
    __version__ = version("patientml-widgets")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Change",
    "ClassInfo",
    "Example",
    "ImageError",
    "ExampleBrowser",
    "ImportReport",
    "Label",
    "LabelCanvas",
    "MetricsChart",
    "Model",
    "ModelDetails",
    "ModelTable",
    "NotFoundError",
    "PatientMLApp",
    "PatientMLError",
    "PermissionDenied",
    "Project",
    "Run",
    "RunDetails",
    "RunsTable",
    "SchemaError",
    "StoreError",
    "Subject",
    "SubjectViewer",
    "ValidationError",
    "__version__",
]


_VIEWS = (
    "ExampleBrowser",
    "LabelCanvas",
    "MetricsChart",
    "ModelDetails",
    "ModelTable",
    "PatientMLApp",
    "RunDetails",
    "RunsTable",
    "SubjectViewer",
)


def __getattr__(name: str):
    """The views load on first use, so the package imports fast and without ipywidgets."""
    if name in _VIEWS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'patientml_widgets' has no attribute {name!r}")
