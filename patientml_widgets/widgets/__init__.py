"""The views: anywidget front ends and ipywidgets compositions over a :class:`~patientml_widgets.Project`."""

from .app import PatientMLApp
from .code_trust import CodeTrust
from .data_table import DataTable
from .example_browser import ExampleBrowser
from .label_canvas import LabelCanvas
from .metrics_chart import MetricsChart
from .model_details import ModelDetails
from .model_table import ModelTable
from .readers import AgreementChart, ReaderComparison
from .reading_desk import ReadingDesk
from .run_details import RunDetails
from .runs_table import RunsTable
from .subject_viewer import SubjectViewer

__all__ = [
    "AgreementChart",
    "CodeTrust",
    "DataTable",
    "ExampleBrowser",
    "LabelCanvas",
    "MetricsChart",
    "ModelDetails",
    "ModelTable",
    "PatientMLApp",
    "ReaderComparison",
    "ReadingDesk",
    "RunDetails",
    "RunsTable",
    "SubjectViewer",
]
