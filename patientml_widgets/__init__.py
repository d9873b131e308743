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
