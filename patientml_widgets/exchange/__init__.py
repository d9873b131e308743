"""Files in and out: plan a folder, zip, CSV index or COCO import (``plan``), execute it through the
session layer (``ingest``), and export labels and run snapshots for other tools (``export``).
"""

from .export import export_labels, export_snapshot, read_coco, read_manifest
from .ingest import Importer, ImportReport
from .plan import Entry, Plan, extract_zip, plan_coco, plan_folder

__all__ = [
    "Entry",
    "ImportReport",
    "Importer",
    "Plan",
    "export_labels",
    "export_snapshot",
    "extract_zip",
    "plan_coco",
    "plan_folder",
    "read_coco",
    "read_manifest",
]
