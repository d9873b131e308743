"""Labels out, in formats other tools read; and back in (``Project.import_dataset``).

Layouts (every export also writes ``dataset.json``: model, classes, who, when, which label
versions, and the index as JSON):

- ``folder``: ``images/<example>.png`` (8/16-bit gray, 8-bit RGB; TIFF for signed, float or
  16-bit RGB data, so nothing is rescaled), ``masks/<example>.png`` (8-bit class indices) for
  segmentation, and ``index.csv`` with one row per example: image, mask, classes (names joined
  by ``|``), class_indices, subject, split, status, version, author, updated, example_id.
- ``coco``: the images as above and ``annotations.json`` in COCO format, one annotation per
  class present in an image, its pixels as RLE (pycocotools' compact string); background is
  not a category.
- ``nifti`` (volumes): ``images/<example>.nii.gz`` with the volume's values and affine (RAS+
  mm, sform and qform "scanner"), ``masks/<example>.nii.gz`` (uint8 class indices, the same
  affine), and ``index.csv`` as in ``folder``. 2-D images export with ``folder``, volumes with
  ``nifti``: a layout refuses the other kind, saying so.
- ``dicom-seg`` (volumes imported from DICOM): ``segmentations/<example>.dcm``, a BINARY DICOM
  SEG per label that references the source series' instances (for 3D Slicer, OHIF, a PACS),
  and ``index.csv``. A SEG carries the patient and study attributes, as DICOM objects do; it
  holds no image, so the series and its SEG import back together with ``add_folder(...,
  volumes=True)``. Labels with no labelled voxel are listed in ``dataset.json`` as ``empty``.

Only submitted labels are exported unless drafts are asked for. Names in the export are the
project's own example ids, never names from files or headers, and every write is checked to
stay inside the target. Header metadata (patient names, DICOM uids, original file names) is
left out unless ``include_metadata=True``. The export is written to a temporary folder next
to the target and renamed into place, so a crash leaves no half-written export.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .. import imaging
from ..errors import NotFoundError, PatientMLError, ValidationError
from ..imaging.rle import decode_rle, encode_rle, rle_area, rle_bbox
from ..records import Example, Model
from ..session import ModelRef, Session
from ..store import now
from ..store.files import inside, publish, remove_abandoned, scratch_folder
from . import csvfile

__all__ = ["FORMAT", "FORMAT_VERSION", "coco_mask", "export_labels", "export_snapshot", "read_coco", "read_manifest"]

FORMAT = "patientml-dataset"
FORMAT_VERSION = 1
LAYOUTS = ("folder", "coco", "nifti", "dicom-seg")
#: the scratch folder of an export in progress: .<target>.partial-<random>, next to the target
PARTIAL = ".partial-"
INDEX_COLUMNS = (
    "image", "mask", "classes", "class_indices", "subject", "split",
    "status", "version", "author", "updated", "example_id",
)  # fmt: skip
METADATA_KEYS = ("file", "modality", "study_uid", "series_uid", "sop_uid", "series_index", "frame")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def export_labels(
    session: Session,
    model: ModelRef,
    folder: str | os.PathLike,
    *,
    layout: str = "folder",
    include_drafts: bool = False,
    include_subjects: bool = True,
    include_metadata: bool = False,
) -> Path:
    """Write the model's labels (submitted; drafts too if asked) with their images to ``folder``."""
    view = Model.from_record(session.model_record(model))
    statuses = ("labeled", "draft") if include_drafts else ("labeled",)
    rows = []
    for ex in session.examples_by_id(session.example_ids(view.id, status=statuses, sort="source")):
        label = session.label(ex.id)
        if label is None:
            continue
        rows.append(
            (ex, _label_fields(label.version, label.status, label.classes, label.mask_ref, label.author, label.updated))
        )
    extra = {"statuses": ["submitted", "draft"] if include_drafts else ["submitted"]}
    return _write(session, view, rows, Path(folder), layout, include_subjects, include_metadata, extra)


def export_snapshot(session: Session, run_id: str, folder: str | os.PathLike, *, include_subjects: bool = True) -> Path:
    """Write exactly what a run trained and was tested on: the label versions its snapshot froze."""
    run = session.run_record(run_id)
    model = Model.from_record(session.model_record(run["model_id"]))
    rows = []
    missing = []
    for split in ("train", "val", "test"):
        for example_id, version in run["snapshot"].get(split, []):
            event = session.label_at(example_id, version)
            try:
                ex = session.example(example_id)
            except NotFoundError:
                ex = None
            if ex is None or event is None:
                missing.append(example_id)
                continue
            fields = _label_fields(
                version, event["status"], event["classes"], event["mask_ref"], event["actor"], event["time"]
            )
            rows.append((ex, fields))
    info = {k: run[k] for k in ("id", "slug", "hyperparameters", "status")}
    layout = "nifti" if any(ex.is_volume for ex, _ in rows) else "folder"
    return _write(
        session, model, rows, Path(folder), layout, include_subjects, False, {"run": info, "missing": missing}
    )


def _label_fields(version, status, classes, mask_ref, author, updated) -> dict[str, Any]:
    return {
        "version": int(version),
        "status": str(status),
        "classes": [int(c) for c in classes],
        "mask_ref": mask_ref,
        "author": str(author),
        "updated": str(updated),
    }


def _write(
    session: Session,
    model: Model,
    rows: list[tuple[Example, dict[str, Any]]],
    target: Path,
    layout: str,
    include_subjects: bool,
    include_metadata: bool,
    extra: dict[str, Any],
) -> Path:
    _check_export(model, target, layout)
    _check_kinds([ex for ex, _ in rows], layout)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target.parent, ".", PARTIAL)  # partials of exports here that were killed
    with scratch_folder(target.parent, f".{target.name}{PARTIAL}") as work:
        if layout == "dicom-seg":
            index, empty = _write_segmentations(work, session, model, rows, include_subjects, include_metadata)
            coco_images: list[dict[str, Any]] = []
            annotations: list[dict[str, Any]] = []
            extra = {**extra, "empty": empty}
        else:
            index, coco_images, annotations = _write_examples(
                work, session, model, rows, layout, include_subjects, include_metadata
            )
        manifest = _manifest(session, model, layout, index, extra)
        if layout in ("folder", "nifti", "dicom-seg"):
            _put(work, "index.csv", _csv(index))
        else:
            _put(work, "annotations.json", _coco_file(model, manifest["exported"], coco_images, annotations))
        _put(work, "dataset.json", json.dumps(manifest, indent=1).encode())
        _fsync_tree(work)
        if target.exists():
            target.rmdir()  # empty (checked above)
        publish(work, target)
    return target


def _check_export(model: Model, target: Path, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValidationError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if layout == "coco" and model.problem_type != "segmentation":
        raise ValidationError("COCO export is for segmentation models; classification labels export as index.csv")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValidationError(f"{target} exists and is not an empty folder; export into a new folder")


def _check_kinds(examples: list[Example], layout: str) -> None:
    """2-D images export as ``folder`` or ``coco``, volumes as ``nifti``: refuse a mix before writing."""
    volumes = sum(1 for ex in examples if ex.is_volume)
    images = len(examples) - volumes
    if layout in ("nifti", "dicom-seg") and images:
        raise ValidationError(
            f"layout={layout!r} exports volumes; {images} of these labels are of 2-D images (use 'folder')"
        )
    if layout not in ("nifti", "dicom-seg") and volumes:
        raise ValidationError(f"{volumes} of these labels are of volumes; export them with layout='nifti'")
    if layout == "dicom-seg":
        other = sum(1 for ex in examples if not isinstance(ex.source.get("dicom"), dict))
        if other:
            raise ValidationError(
                f"{other} of these volumes did not come from a series of single-frame DICOM slices (NIfTI files, "
                "arrays or multi-frame files), so a DICOM SEG has nothing to reference; export them with layout='nifti'"
            )


def _write_examples(
    work: Path,
    session: Session,
    model: Model,
    rows: list[tuple[Example, dict[str, Any]]],
    layout: str,
    include_subjects: bool,
    include_metadata: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Each example's image (and mask) into ``work``: the index entries, and the COCO images and annotations."""
    names = {c.index: c.name for c in model.classes}
    index: list[dict[str, Any]] = []
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for number, (ex, label) in enumerate(rows, start=1):
        if ex.is_volume:
            image_name = _write_nifti(work, f"images/{_safe(ex.id)}.nii.gz", session.image(ex.id), ex)
        else:
            image_name = _write_image(work, session.image(ex.id), ex.id)
        entry = _index_entry(ex, label, image_name, names, include_subjects, include_metadata)
        if model.problem_type == "segmentation":
            mask = session.mask_blob(label["mask_ref"])
            if layout == "nifti":
                entry["mask"] = _write_nifti(work, f"masks/{_safe(ex.id)}.nii.gz", mask, ex)
            elif layout == "folder":
                entry["mask"] = f"masks/{_safe(ex.id)}.png"
                _put(work, entry["mask"], imaging.encode_mask_png(mask))
            else:
                coco_images.append(_coco_image(number, image_name, ex, entry["subject"], label))
                annotations += _coco_annotations(mask, number, len(annotations))
        index.append(entry)
    return index, coco_images, annotations


def _write_segmentations(
    work: Path,
    session: Session,
    model: Model,
    rows: list[tuple[Example, dict[str, Any]]],
    include_subjects: bool,
    include_metadata: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each volume's label as ``segmentations/<example>.dcm``; labels without a labelled voxel are left out."""
    from .dicom_seg import write_dicom_seg

    names = {c.index: c.name for c in model.classes}
    index: list[dict[str, Any]] = []
    empty: list[str] = []
    for ex, label in rows:
        mask = session.mask_blob(label["mask_ref"])
        if not mask.any():
            empty.append(ex.id)
            continue
        name = f"segmentations/{_safe(ex.id)}.dcm"
        path = inside(work, name)
        assert path is not None
        write_dicom_seg(path, mask, ex.source["dicom"], model.classes, content_creator=label["author"])
        entry = _index_entry(ex, label, "", names, include_subjects, include_metadata)
        entry["mask"] = name
        index.append(entry)
    return index, empty


def _index_entry(
    ex: Example,
    label: dict[str, Any],
    image_name: str,
    names: dict[int, str],
    include_subjects: bool,
    include_metadata: bool,
) -> dict[str, Any]:
    """One example's row of the index (its mask's name is filled in when the mask is written)."""
    entry = {
        "image": image_name,
        "mask": "",
        "classes": "|".join(names.get(c, str(c)) for c in label["classes"]),
        "class_indices": "|".join(str(c) for c in label["classes"]),
        "subject": (ex.subject_id or "") if include_subjects else "",
        "split": ex.split,
        "status": label["status"],
        "version": label["version"],
        "author": label["author"],
        "updated": label["updated"],
        "example_id": ex.id,
    }
    entry.update(_display(ex.source))
    if include_metadata:
        entry.update({f"source_{k}": ex.source[k] for k in METADATA_KEYS if k in ex.source})
    return entry


def _coco_image(number: int, image_name: str, ex: Example, subject: str, label: dict[str, Any]) -> dict[str, Any]:
    return {"id": number, "file_name": image_name, "width": ex.width, "height": ex.height,
            "example_id": ex.id, "split": ex.split, "subject": subject,
            "version": label["version"], "status": label["status"]}  # fmt: skip


def _manifest(
    session: Session, model: Model, layout: str, index: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """What ``dataset.json`` holds: the model, its classes, who exported when, and the index."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "layout": layout,
        "model": {
            "name": model.name,
            "description": model.description,
            "problem_type": model.problem_type,
            "multi_label": model.multi_label,
            "id": model.id,
        },
        "classes": [
            {"index": c.index, "name": c.name, "color": c.color, "description": c.description} for c in model.classes
        ],
        "retired_class_indices": _retired(model),
        "exported": now(),
        "exported_by": session.user,
        "label_versions": {e["example_id"]: e["version"] for e in index},
        **extra,
        "examples": index,
    }


def _coco_file(model: Model, exported: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> bytes:
    """``annotations.json``: the images, their annotations, and the classes but the background as categories."""
    categories = [{"id": c.index, "name": c.name, "supercategory": ""} for c in model.classes if c.index != 0]
    coco = {
        "info": {"description": f"{model.name} labels", "date_created": exported, "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return json.dumps(coco).encode()


def _display(source: dict[str, Any]) -> dict[str, Any]:
    """How the image is shown (modality, window, inversion): no patient data, and labelers need it."""
    out: dict[str, Any] = {}
    if source.get("modality"):
        out["modality"] = source["modality"]
    window = source.get("window")
    if isinstance(window, dict) and "center" in window and "width" in window:
        out.update(window_center=window["center"], window_width=window["width"])
    if source.get("invert"):
        out["invert"] = 1
    return out


def _retired(model: Model) -> list[int]:
    used = {c.index for c in model.classes}
    top = max(used, default=0)
    return [i for i in range(top) if i not in used]


def _coco_annotations(mask: np.ndarray, image_id: int, start: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index in imaging.present_classes(mask):
        if index == 0:
            continue
        binary = mask == index
        out.append(
            {
                "id": start + len(out) + 1,
                "image_id": image_id,
                "category_id": int(index),
                "segmentation": encode_rle(binary),
                "area": rle_area(binary),
                "bbox": rle_bbox(binary),
                "iscrowd": 0,
            }
        )
    return out


def _write_image(work: Path, arr: np.ndarray, example_id: str) -> str:
    if arr.dtype == np.uint8 or (arr.dtype == np.uint16 and arr.ndim == 2):
        data, name = imaging.encode_image(arr)[0], f"images/{_safe(example_id)}.png"
    else:
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
        data, name = buf.getvalue(), f"images/{_safe(example_id)}.tif"
    _put(work, name, data)
    return name


def _write_nifti(work: Path, relative: str, arr: np.ndarray, ex: Example) -> str:
    path = inside(work, relative)
    if path is None:
        raise ValidationError(f"refusing to write {relative!r} outside the export folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    imaging.write_nifti(path, arr, np.asarray(ex.affine, float))
    return relative


def _safe(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValidationError(f"{name!r} is not a safe file name")
    return name


def _put(root: Path, relative: str, data: bytes) -> None:
    path = inside(root, relative)
    if path is None:
        raise ValidationError(f"refusing to write {relative!r} outside the export folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb+") as f:
                os.fsync(f.fileno())


def _csv(rows: Iterable[dict[str, Any]]) -> bytes:
    """``index.csv``: the index columns, then any others in name order (see ``csvfile`` for the cells)."""
    rows = list(rows)
    columns = list(INDEX_COLUMNS) + sorted({k for r in rows for k in r} - set(INDEX_COLUMNS))
    return csvfile.write_csv(columns, rows)


# -- reading exports back ----------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The ``dataset.json`` of an export, checked (ValidationError says what is wrong)."""
    path = folder / "dataset.json"
    if not path.is_file():
        raise NotFoundError(f"{folder} has no dataset.json (not a patientml-widgets export)")
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValidationError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValidationError(
            f"{path} is format version {str(manifest.get('version'))[:20]}; this release reads {FORMAT_VERSION}"
        )
    if manifest.get("layout") not in LAYOUTS or not isinstance(manifest.get("classes"), list):
        raise ValidationError(f"{path} has no layout or classes")
    if not all(isinstance(c, dict) for c in manifest["classes"]):
        raise ValidationError(f"{path}: each class is an object with index and name; export the model again")
    if not isinstance(manifest.get("model") or {}, dict):
        raise ValidationError(f"{path}: 'model' is an object with name and problem_type; export the model again")
    return manifest


def _read_json(path: Path) -> Any:
    """A JSON file, or ValidationError saying why not."""
    try:
        return json.loads(path.read_bytes())
    except OSError as e:
        raise ValidationError(f"cannot read {path} ({e.strerror or e}); check that it is a readable file") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, too deep, too many digits
        raise ValidationError(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None


#: the errors that malformed COCO data raises where it is taken apart (a wrong type, a missing key, ...)
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError)


def read_coco(folder: Path, annotations: str = "annotations.json") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """COCO images, each with its checked annotations (painted later, one image at a time: :func:`coco_mask`).

    Returns ``(categories, images)`` where each image is ``{"file_name", "width", "height",
    "annotations", ...}``. A file that is not COCO as this reads it is a ValidationError naming
    the part that is wrong. Nothing is painted here, so a file claiming many large images costs
    no memory until an image that exists is imported.
    """
    path = folder / annotations
    if not path.exists():
        raise NotFoundError(f"no {annotations} in {folder}")
    coco = _read_json(path)
    hint = (
        "COCO has images [{id, file_name, width, height}], categories [{id, name}] and annotations "
        "[{image_id, category_id, segmentation}]; fix the file and import again"
    )
    part = "the file"
    try:
        if not isinstance(coco, dict):
            raise TypeError("it is not a JSON object")
        part = "images"
        images = {}
        for im in coco["images"]:
            im = dict(im)
            images[_number(im["id"])] = im
        part = "categories"
        categories = [dict(c) for c in coco["categories"]]
        for c in categories:
            c["id"], c["name"] = _number(c["id"]), str(c["name"])
        anns = coco.get("annotations") or []
        if not isinstance(anns, list):
            raise TypeError("annotations are a list")
        for im in images.values():
            part = f"image {im['id']}"
            height, width = _number(im["height"]), _number(im["width"])
            if height < 1 or width < 1 or height * width > imaging.DEFAULT_MAX_PIXELS:
                raise ValidationError(f"{path}: image {im['id']} claims {width} x {height} pixels; refused")
            im["height"], im["width"], im["annotations"] = height, width, []
        for number, ann in enumerate(anns):
            part = f"annotation {number}"
            target = images.get(_number(ann.get("image_id", -1)))
            if target is None:
                raise ValidationError(f"{path}: annotation {str(ann.get('id'))[:40]} refers to no image; {hint}")
            category = _number(ann["category_id"])
            if not 0 < category < 256:
                raise ValidationError(f"{path}: category ids must be 1-255 (0 is the background), not {category}")
            target["annotations"].append({"category": category, "segmentation": ann["segmentation"], "number": number})
    except PatientMLError:
        raise
    except _MALFORMED as e:
        raise ValidationError(
            f"{path} is not a COCO file ({part}: {type(e).__name__}: {str(e)[:200]}); {hint}"
        ) from None
    return categories, list(images.values())


def coco_mask(image: dict[str, Any], where: str = "annotations.json") -> np.ndarray:
    """The class-index mask an image's COCO annotations paint (RLE or polygons; later ones paint over
    earlier ones where they overlap); ValidationError naming the annotation that is malformed.
    """
    mask = np.zeros((image["height"], image["width"]), np.uint8)
    for ann in image["annotations"]:
        try:
            mask[_annotation_pixels(ann["segmentation"], mask.shape)] = ann["category"]
        except PatientMLError:
            raise
        except _MALFORMED as e:
            raise ValidationError(
                f"its annotation {ann['number']} in {where} cannot be painted ({type(e).__name__}: {str(e)[:200]}); "
                "a segmentation is an RLE {size, counts} or a list of polygons [x1, y1, x2, y2, ...]"
            ) from None
    return mask


def _number(value: Any) -> int:
    """A whole number from JSON (an integer, a float without fraction, digits); TypeError/ValueError otherwise."""
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit() and len(value) < 20:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{str(value)[:40]!r} is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value} is not a whole number")
    return int(value)


def _annotation_pixels(segmentation: Any, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(segmentation, dict):
        pixels = decode_rle(segmentation)
        if pixels.shape != shape:
            raise ValidationError(f"an RLE of {pixels.shape} belongs to an image of {shape}")
        return pixels
    from PIL import Image, ImageDraw

    if not isinstance(segmentation, list):
        raise TypeError("a segmentation is an RLE object or a list of polygons")
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in segmentation:
        if not isinstance(polygon, list):
            raise TypeError("a polygon is a list of numbers x1, y1, x2, y2, ...")
        points = [(_coordinate(polygon[i]), _coordinate(polygon[i + 1])) for i in range(0, len(polygon) - 1, 2)]
        if len(points) >= 3:
            draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def _coordinate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"a polygon coordinate is a finite number, not {str(value)[:40]!r}")
    return float(value)
