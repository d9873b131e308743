"""patientml-widgets: label medical images, train and deploy models, inside Jupyter."""

from importlib.metadata import PackageNotFoundError, version

from .errors import ImageError, NotFoundError, PatientMLError, SchemaError, StoreError, ValidationError
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
    "ImportReport",
    "Label",
    "LabelCanvas",
    "Model",
    "NotFoundError",
    "PatientMLError",
    "Project",
    "Run",
    "SchemaError",
    "StoreError",
    "Subject",
    "ValidationError",
    "__version__",
]


def __getattr__(name: str):
    """The widgets load on first use, so the package imports fast and without ipywidgets."""
    if name == "LabelCanvas":
        from .widgets import LabelCanvas

        return LabelCanvas
    raise AttributeError(f"module 'patientml_widgets' has no attribute {name!r}")
