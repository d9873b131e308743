"""Images in: read, check and encode images (outside the lock), then commit them with their labels.

``plan.py`` decides what a folder, zip, CSV index or COCO file holds; this module executes a
plan through the session layer, in chunks (``add_folder``) or as one commit
(``add_examples``, ``import_dataset``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import imaging
from ..arguments import choice, mapping, sequence
from ..errors import ImageError, NotFoundError, ValidationError
from ..records import SPLITS, Example, Model, class_indices, clean_name
from ..session import ModelRef, Session
from ..store import blob_ref
from ..store.files import scratch_folder
from ..store.store import IMPORT_PREFIX
from . import dicom_seg, export, plan

__all__ = ["IMPORT_CHUNK_BYTES", "ImportReport", "Importer"]

#: an import commits early when its pending images reach this many encoded bytes (memory stays bounded)
IMPORT_CHUNK_BYTES = 256 * 2**20


@dataclass
class ImportReport:
    """What :meth:`Project.add_folder` imported, and what it skipped and why."""

    added: list[Example] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    labels: int = 0
    #: files (or frames) skipped because this model already has them from the same file
    already: int = 0
    #: the model :meth:`Project.import_dataset` created
    model: Model | None = None

    def __str__(self) -> str:
        lines = [f"added {len(self.added)} examples ({self.labels} with labels), skipped {len(self.skipped)} files"]
        if self.already:
            lines[0] += f", {self.already} already imported"
        lines += [f"  skipped {shown_name(name)}: {why}" for name, why in self.skipped]
        lines += [f"  warning: {text}" for text in self.warnings]
        return "\n".join(lines)


def shown_name(name: str, limit: int = 100) -> str:
    """A file name from elsewhere as a report shows it: control characters escaped, a long name shortened."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return text if len(text) <= limit else f"{text[: limit - 30]}...{text[-27:]} ({len(name)} characters)"


class Importer:
    """Adds images to a session's models: arrays, files, folders, zips and exports."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- single images -----------------------------------------------------------------

    def add_examples(
        self,
        model: ModelRef,
        images: Sequence[Any],
        *,
        subjects: Sequence[str | None] | None = None,
        splits: Sequence[str | None] | None = None,
        sources: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[Example]:
        """Add many images in one commit: all of them, or (on any bad image) none."""
        model_id = self.session.model_record(model)["id"]
        n = len(images)
        subjects = sequence(subjects, "subjects") if subjects is not None else [None] * n
        splits = sequence(splits, "splits") if splits is not None else [None] * n
        sources = sequence(sources, "sources") if sources is not None else [None] * n
        if not (len(subjects) == len(splits) == len(sources) == n):
            raise ValidationError("images, subjects, splits and sources must have the same length")
        splits = [s if s is None else choice(s, SPLITS, "split") for s in splits]
        sources = [s if s is None else mapping(s, "source") for s in sources]
        items = [
            self._item(image, i, n, subject, split, source)
            for i, (image, subject, split, source) in enumerate(zip(images, subjects, splits, sources, strict=True))
        ]
        return self.session.insert_examples(model_id, items)

    def _item(self, image: Any, i: int, n: int, subject, split, source) -> dict[str, Any]:
        if isinstance(image, (str, os.PathLike)) and "\x00" in str(image):
            raise ImageError(f"{str(image)!r} is not a file path (it holds a NUL character)")
        if isinstance(image, (str, os.PathLike)) and imaging.is_dicom(Path(image)):
            (item,) = self.dicom_items(Path(image), Path(image).name, single=True)
            item.update(split=split, source={**item["source"], **(source or {})})
            item["subject"] = subject if subject is not None else item["subject"]
        else:
            name = str(image) if isinstance(image, (str, os.PathLike)) else (f"image {i}" if n > 1 else None)
            item = {"fields": self.prepare_image(image, name, source), "subject": subject, "split": split}
            item["source"] = dict(source or {})
            if isinstance(image, (str, os.PathLike)):
                item["source"].setdefault("file", Path(image).name)
        if item["subject"] is not None:
            item["subject"] = clean_name(item["subject"], "subject id")
        return item

    def prepare_image(self, image: Any, name: str | None, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read, check and encode an image (outside the lock); its blobs are written when the examples commit."""
        arr = imaging.read_image(image, max_pixels=self.session.max_image_pixels, name=name)
        data, ext = imaging.encode_image(arr)
        source = source or {}
        thumbnail = imaging.make_thumbnail(arr, window=source.get("window"), invert=bool(source.get("invert")))
        return {
            "width": int(arr.shape[1]),
            "height": int(arr.shape[0]),
            "channels": 1 if arr.ndim == 2 else int(arr.shape[2]),
            "dtype": str(arr.dtype),
            "image_ref": blob_ref(data, ext),
            "thumbnail_ref": blob_ref(thumbnail, "jpg"),
            "blobs": ((data, ext), (thumbnail, "jpg")),
        }

    def dicom_items(
        self, path: Path, rel: str, *, single: bool = False, entry: plan.Entry | None = None
    ) -> list[dict[str, Any]]:
        """One import item per frame of a DICOM file (ImageError if it cannot be read)."""
        header = entry.dicom if entry is not None else imaging.read_dicom_header(path, name=rel)
        assert header is not None
        frames = header.frames
        if single and frames != 1:
            raise ValidationError(f"{rel} has {frames} frames; add_folder(model, path) adds one example per frame")
        limit = self.session.max_image_pixels or imaging.DEFAULT_MAX_PIXELS
        items = []
        for array, frame_source in imaging.read_dicom_frames(path, max_pixels=limit, name=rel):
            frame = frame_source.get("frame", 0)
            name = f"{rel} frame {frame + 1}" if frames > 1 else rel
            source = {"file": rel, **frame_source}
            if entry is not None and header.series_uid:
                source.update(series_index=entry.series_start + frame, series_size=entry.series_size)
            items.append(
                {
                    "fields": self.prepare_image(array, name, source),
                    "source": source,
                    "subject": entry.subject if entry is not None else (header.patient_id or None),
                    "split": entry.split if entry is not None else None,
                    "subject_info": dicom_subject_info(header),
                }
            )
        return items

    # -- volumes -------------------------------------------------------------------------

    def add_volume(
        self,
        model: ModelRef,
        volume: Any,
        *,
        spacing: Sequence[float] | None = None,
        affine: Any = None,
        subject: str | None = None,
        split: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> Example:
        """One volume: a 3-D array (Z, Y, X), a NIfTI file, or a folder holding one DICOM series."""
        model_id = self.session.model_record(model)["id"]
        split = None if split is None else choice(split, SPLITS, "split")
        source = {} if source is None else mapping(source, "source")
        if isinstance(volume, (str, os.PathLike)):
            if spacing is not None or affine is not None:
                raise ValidationError(
                    "a file or a series carries its own geometry; spacing= and affine= are for arrays"
                )
            path = Path(volume)
            if "\x00" in str(volume):
                raise ImageError(f"{str(volume)!r} is not a file path (it holds a NUL character)")
            if not path.exists():
                raise NotFoundError(f"no file or folder {path}")
            item = self._volume_path_item(path, subject, split)
        else:
            vol = imaging.volume_from_array(
                volume, spacing=spacing, affine=affine, max_pixels=self.session.max_image_pixels
            )
            item = {"fields": self.prepare_volume(vol, source), "source": {}, "subject": subject, "split": split}
        item["source"] = {**item["source"], **source}
        if subject is not None:
            item["subject"] = subject
        if item["subject"] is not None:
            item["subject"] = clean_name(item["subject"], "subject id")
        return self.session.insert_examples(model_id, [item])[0]

    def _volume_path_item(self, path: Path, subject: str | None, split: str | None) -> dict[str, Any]:
        if path.is_file() and not imaging.is_nifti(path):
            raise ValidationError(
                f"{path.name}: a volume is a NIfTI file (.nii, .nii.gz) or a folder holding one DICOM series"
            )
        planned = plan.plan_folder(path, volumes=True, subject_from="dicom" if subject is None else "none")
        found = [(v.rel, v) for v in planned.volumes] + [(e.rel, e) for e in planned.entries if e.nifti]
        if len(found) != 1:
            reasons = "; ".join(f"{shown_name(name)}: {why}" for name, why in planned.skipped[:3])
            what = f"{len(found)} volumes" if found else "no volume"
            hint = " (add_folder(model, path, volumes=True) imports each)" if len(found) > 1 else ""
            raise ValidationError(f"{path} holds {what}{hint}" + (f"; skipped {reasons}" if reasons else ""))
        ((rel, found_item),) = found
        if isinstance(found_item, plan.SeriesVolume):
            item = self.series_item(found_item)
        else:
            item = self.nifti_item(found_item.path, rel)
        if split is not None:
            item["split"] = split
        return item

    def prepare_volume(self, vol: imaging.Volume, source: dict[str, Any]) -> dict[str, Any]:
        """A checked volume's stored fields and blobs (a multi-page TIFF, and its middle slice as the thumbnail)."""
        arr = vol.array
        data = imaging.encode_volume(arr)
        middle = arr[len(arr) // 2]
        thumbnail = imaging.make_thumbnail(middle, window=source.get("window"), invert=bool(source.get("invert")))
        return {
            "width": int(arr.shape[2]),
            "height": int(arr.shape[1]),
            "depth": int(arr.shape[0]),
            "channels": 1,
            "dtype": str(arr.dtype),
            "spacing": [round(v, 6) for v in vol.spacing],
            "affine": [[float(v) for v in row] for row in vol.affine],
            "image_ref": blob_ref(data, "tif"),
            "thumbnail_ref": blob_ref(thumbnail, "jpg"),
            "blobs": ((data, "tif"), (thumbnail, "jpg")),
        }

    def nifti_item(self, path: Path, rel: str, entry: plan.Entry | None = None) -> dict[str, Any]:
        vol = imaging.read_nifti(path, max_pixels=self.session.max_image_pixels, name=rel)
        source = {"file": rel, **(entry.display if entry is not None else {})}
        return {
            "fields": self.prepare_volume(vol, source),
            "source": source,
            "subject": entry.subject if entry is not None else None,
            "split": entry.split if entry is not None else None,
        }

    def series_item(self, series: plan.SeriesVolume) -> dict[str, Any]:
        """A DICOM series stacked into one volume item: every slice decoded, rescaled and checked."""
        headers = [e.dicom for e in series.entries if e.dicom is not None]
        first = headers[0]
        limit = self.session.max_image_pixels or imaging.DEFAULT_MAX_PIXELS
        depth = len(series.frames) if series.frames is not None else len(headers)
        imaging.check_volume_size((depth, first.rows or 0, first.columns or 0), 2, series.rel, limit)
        planes, sources = [], []
        for e in series.entries:
            frames = list(imaging.read_dicom_frames(e.path, max_pixels=limit, name=e.rel))
            chosen = [frames[i] for i in series.frames] if series.frames is not None else frames[:1]
            for array, frame_source in chosen:
                if array.ndim != 2:
                    raise ImageError(f"{e.rel} is a colour image; a volume is stacked from gray slices")
                planes.append(imaging.stored_values(array, e.rel))
                sources.append(frame_source)
        stacked = imaging.stored_values(np.stack(planes), series.rel)
        del planes
        vol = imaging.Volume(np.ascontiguousarray(stacked), np.asarray(series.affine, float))
        common = sources[len(sources) // 2]
        source: dict[str, Any] = {
            "file": series.rel,
            **{k: common[k] for k in ("modality", "study_uid", "series_uid", "series_description", "photometric",
                                      "window", "windows", "invert") if k in common},
        }  # fmt: skip
        if series.frames is None:  # a DICOM SEG references single-frame slices (multi-frame: NIfTI export)
            source["dicom"] = series_reference(headers)
        return {
            "fields": self.prepare_volume(vol, source),
            "source": source,
            "subject": series.subject,
            "split": series.split,
            "subject_info": dicom_subject_info(first),
        }

    # -- folders, zips, exports ------------------------------------------------------------

    def add_folder(
        self,
        model: ModelRef,
        folder: str | os.PathLike,
        *,
        index: str | os.PathLike | None = None,
        subject_from: plan.SubjectRule = "auto",
        split_from: str = "auto",
        recursive: bool = True,
        volumes: bool = False,
        chunk: int = 64,
        progress: Callable[[int, int], Any] | None = None,
    ) -> ImportReport:
        """Import a folder, one file or a .zip archive, ``chunk`` examples per commit (see ``Project.add_folder``)."""
        root = Path(folder)
        if not root.exists():
            raise NotFoundError(f"no folder or file {root}")
        model_id = self.session.model_record(model)["id"]
        if root.is_file() and root.suffix.lower() == ".zip":
            return self._import_zip(model_id, root, index, subject_from, split_from, volumes, chunk, progress)
        planned = plan.plan_folder(
            root, index=index, subject_from=subject_from, split_from=split_from, recursive=recursive, volumes=volumes
        )
        return self.run_plan(model_id, planned, chunk, progress)

    def _import_zip(
        self, model_id: str, archive: Path, index, subject_from, split_from, volumes, chunk, progress
    ) -> ImportReport:
        """Unpack into a scratch folder inside the project (patient data goes nowhere else), import, remove it.

        A killed import leaves the folder unlocked; the project's next open or write removes it.
        """
        with scratch_folder(self.session.path, IMPORT_PREFIX) as scratch:
            skipped = plan.extract_zip(archive, scratch)
            planned = plan.plan_folder(
                scratch, index=index, subject_from=subject_from, split_from=split_from, volumes=volumes
            )
            planned.skipped[:0] = skipped
            return self.run_plan(model_id, planned, chunk, progress)

    def run_plan(self, model_id: str, planned: plan.Plan, chunk: int = 64, progress=None) -> ImportReport:
        """Import a plan's files, committing every ``chunk`` examples (or ``IMPORT_CHUNK_BYTES``).

        What this model already has from the same file (and frame) is counted, not added again.
        """
        model_view = Model.from_record(self.session.model_record(model_id))
        report = ImportReport(skipped=list(planned.skipped), warnings=list(planned.warnings))
        known = {import_key(r["image_ref"], r["source"]) for r in self.session.read().records("examples")
                 if r["model_id"] == model_id}  # fmt: skip
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        decoded: dict[Path, list] = {}
        work: list[plan.Entry | plan.SeriesVolume] = [*planned.entries, *planned.volumes]
        for done, entry in enumerate(work, start=1):
            try:
                if isinstance(entry, plan.SeriesVolume):
                    items = [self.series_item(entry)]
                else:
                    items = self.entry_items(entry, model_view, decoded)
            except (ImageError, ValidationError) as e:
                report.skipped.append((entry.rel, str(e)))
                items = []
            for item in items:
                key = import_key(item["fields"]["image_ref"], item["source"])
                if key in known:
                    report.already += 1  # a rerun (after an interruption, say) adds only what is new
                    continue
                known.add(key)
                pending.append(item)
                pending_bytes += sum(len(data) for data, _ in item["fields"]["blobs"])
            if len(pending) >= chunk or pending_bytes >= IMPORT_CHUNK_BYTES:
                self._commit(model_id, pending, report)
                pending, pending_bytes = [], 0
            if progress is not None:
                progress(done, len(work))
        if pending:
            self._commit(model_id, pending, report)
        for rel, path in planned.segmentations:
            try:
                self._import_segmentation(model_view, path, rel, report)
            except (ImageError, ValidationError) as e:
                report.skipped.append((rel, str(e)))
        return report

    def _import_segmentation(self, model: Model, path: Path, rel: str, report: ImportReport) -> None:
        """A DICOM SEG as the submitted label of the model's volume of the series it segments."""
        if model.problem_type != "segmentation":
            raise ValidationError("a DICOM SEG is a segmentation; this model classifies")
        series = dicom_seg.referenced_series(path, name=rel)
        found = [
            r
            for r in self.session.read().records("examples")
            if r["model_id"] == model.id and (r["source"].get("dicom") or {}).get("series_uid") == series
        ]
        if not found:
            raise ValidationError(
                f"a DICOM SEG of the series {series}, which is not among this model's volumes; import the series "
                "with it (add_folder(..., volumes=True))"
            )
        record = max(found, key=lambda r: r["created"])
        example = Example.from_record(record)
        meta = record["source"]["dicom"]
        shape = (record["depth"], record["height"], record["width"])
        mask, segments = dicom_seg.read_dicom_seg(
            path, meta["sop_uids"], shape, positions=meta["positions"], orientation=meta["orientation"]
        )
        mask = seg_classes(mask, segments, model, rel)
        live = self.session.label_record(example.id)
        if live is not None and live["status"] != "deleted":
            if live.get("mask_ref") and np.array_equal(self.session.mask_blob(live["mask_ref"]), mask):
                report.already += 1
                return
            raise ValidationError(
                f"its volume ({example.id}) already has a label (version {live['version']}); delete that label to "
                "import this SEG"
            )
        self.session.write_label(example.id, "submitted", mask=mask, source="import")
        report.labels += 1

    def _commit(self, model_id: str, items: list[dict[str, Any]], report: ImportReport) -> None:
        report.added += self.session.insert_examples(model_id, items)
        report.labels += sum(1 for item in items if item.get("label"))

    def import_dataset(self, folder: str | os.PathLike, *, name: str | None = None) -> ImportReport:
        """Create a model from an export (either layout) or a COCO folder, with its labels, in one commit."""
        root = Path(folder)
        if not root.is_dir():
            raise NotFoundError(f"no folder {root}")
        spec, layout = dataset_spec(root, name)
        if layout == "dicom-seg":
            raise ValidationError(
                f"{root} is a DICOM SEG export: it holds the labels, not the images; import the series with their "
                "SEG files: add_folder(model, folder, volumes=True)"
            )
        if any(m["name"].casefold() == spec["name"].casefold() for m in self.session.model_records()):
            raise ValidationError(
                f"this project already has a model named {spec['name']!r}; "
                "import_dataset(folder, name=...) imports under another name"
            )
        # plan before creating the model: an unreadable export leaves the project as it was
        if layout in ("folder", "nifti"):
            planned = plan.plan_folder(root, index="index.csv", volumes=layout == "nifti")
        else:
            planned = plan.plan_coco(root, *export.read_coco(root))
        with self.session.write():  # one commit: the model with all its examples and labels, or nothing
            model = self.session.create_model(**spec)
            report = self.run_plan(model.id, planned)
        report.model = Model.from_record(self.session.model_record(model.id))
        return report

    def entry_items(self, entry: plan.Entry, model: Model, decoded: dict[Path, list] | None = None):
        """The import items of one planned file; ``decoded`` keeps the last DICOM file's frames
        (index rows that label frames of one file one by one decode it once).
        """
        if entry.nifti:
            items = [self.nifti_item(entry.path, entry.rel, entry)]
        elif entry.dicom is not None:
            decoded = {} if decoded is None else decoded
            if entry.path not in decoded:
                decoded.clear()
                decoded[entry.path] = self.dicom_items(entry.path, entry.rel, entry=entry)
            items = [dict(item) for item in decoded[entry.path]]
            if entry.frame is not None:
                items = [item for item in items if item["source"].get("frame", 0) == entry.frame]
                if not items:
                    raise ValidationError(f"{entry.rel} has no frame {entry.frame} (it has {entry.dicom.frames})")
        else:
            source = {"file": entry.rel, **entry.display}
            fields = self.prepare_image(entry.path, entry.rel, source)
            items = [{"fields": fields, "source": source, "subject": entry.subject, "split": entry.split}]
        if entry.subject is not None:
            for item in items:
                item["subject"] = clean_name(entry.subject, "subject id")
        if entry.label:
            if len(items) != 1:
                raise ValidationError(
                    f"a label is given for a file of {len(items)} frames; give each frame its row (a frame column)"
                )
            items[0]["label"] = import_label(entry, model, items[0]["fields"])
        return items


def dataset_spec(root: Path, name: str | None) -> tuple[dict[str, Any], str]:
    """The model an export (``dataset.json``) or a plain COCO folder describes, and its layout."""
    if (root / "dataset.json").exists():
        manifest = export.read_manifest(root)
        info = manifest.get("model") or {}
        keys = ("index", "name", "color", "description")
        spec = {
            "name": name or str(info.get("name") or root.name),
            "problem_type": str(info.get("problem_type")),
            "classes": [{k: c[k] for k in keys if k in c} for c in manifest["classes"]],
            "description": str(info.get("description") or ""),
            "multi_label": bool(info.get("multi_label")),
        }
        return spec, manifest["layout"]
    categories, _ = export.read_coco(root)
    classes = [{"index": 0, "name": "background"}]
    classes += [{"index": int(c["id"]), "name": str(c["name"])} for c in categories]
    return {"name": name or root.name, "problem_type": "segmentation", "classes": classes}, "coco"


def import_key(image_ref: str, source: dict[str, Any]) -> tuple[Any, ...]:
    """The same pixels from the same file (and frame) are the same example: imports can be rerun."""
    return (image_ref, source.get("file"), source.get("frame"))


def series_reference(headers: Sequence[imaging.DicomHeader]) -> dict[str, Any]:
    """What a DICOM SEG of a volume must reference, kept with the volume (its files may move or go)."""
    first = headers[0]
    return {
        "sop_class_uid": first.sop_class_uid,
        "frame_of_reference_uid": first.frame_of_reference_uid,
        "study_uid": first.study_uid,
        "series_uid": first.series_uid,
        "sop_uids": [h.sop_uid for h in headers],
        "positions": [list(h.image_position or ()) for h in headers],
        "orientation": list(first.orientation or ()),
        "pixel_spacing": list(first.pixel_spacing or ()),
        "slice_thickness": first.slice_thickness,
        "modality": first.modality,
        "series_number": first.series_number,
        **first.equipment,
        "patient": {k: v for k, v in first.identity.items() if k.startswith("Patient")},
        "study": {k: v for k, v in first.identity.items() if not k.startswith("Patient")},
    }


def dicom_subject_info(header: imaging.DicomHeader) -> dict[str, Any]:
    """What a DICOM header says about its patient: PatientID as an external id; the name, sex, age and birth
    date as metadata (the sex and age bins are subgroups a model's evaluation compares).
    """
    info: dict[str, Any] = {"external_ids": {}, "metadata": {}}
    if header.patient_id:
        info["external_ids"]["PatientID"] = header.patient_id
    if header.patient_name:
        info["metadata"]["PatientName"] = header.patient_name
    for keyword in ("PatientSex", "PatientAge", "PatientBirthDate"):
        if header.identity.get(keyword):
            info["metadata"][keyword] = header.identity[keyword]
    return info


def import_label(entry: plan.Entry, model: Model, fields: dict[str, Any]) -> dict[str, Any]:
    """An index row's label, checked against the image and the model before anything is written."""
    spec = dict(entry.label or {})
    shape: tuple[int, ...] = (fields["height"], fields["width"])
    if fields.get("depth") is not None:
        shape = (fields["depth"], *shape)
    if model.problem_type == "segmentation":
        if "coco" in spec:
            spec["mask"] = export.coco_mask(spec.pop("coco"))
        if "mask" not in spec:
            raise ValidationError(f"{entry.rel}: a segmentation label needs a mask column")
        mask = spec["mask"]
        if len(shape) == 3:
            mask = volume_mask(Path(mask), fields)
        elif not isinstance(mask, np.ndarray):
            mask = imaging.read_mask_file(mask, name=Path(mask).name, max_pixels=shape[0] * shape[1])
        spec["mask"] = imaging.validate_mask(mask, shape, [c.index for c in model.classes])
        spec.pop("classes", None)
    else:
        if "classes" not in spec:
            raise ValidationError(f"{entry.rel}: a classification label needs a classes column")
        names = set(model.class_names)
        refs = [
            int(c) if isinstance(c, str) and c.isascii() and c.isdigit() and c not in names else c
            for c in spec["classes"]
        ]
        spec["classes"] = class_indices(model, refs)
        spec.pop("mask", None)
    return spec


def volume_mask(path: Path, fields: dict[str, Any]) -> np.ndarray:
    """A volume's label from a NIfTI file of class indices, on the same voxels as the volume."""
    if not imaging.is_nifti(path):
        raise ValidationError(f"{path.name}: the label of a volume is a NIfTI file of class indices (.nii, .nii.gz)")
    mask = imaging.read_nifti(path, name=path.name)
    if mask.array.dtype.kind not in "iu":
        raise ValidationError(f"{path.name} holds {mask.array.dtype} values; a mask holds integer class indices")
    shape = (fields["depth"], fields["height"], fields["width"])
    if mask.array.shape != shape:
        raise ValidationError(
            f"{path.name} has {mask.array.shape} voxels; its volume has {shape} (slices, rows, columns)"
        )
    if not np.allclose(mask.affine, fields["affine"], atol=1e-3):
        raise ValidationError(
            f"{path.name} lies elsewhere in space than its volume (their affines differ); resample the mask onto "
            "the volume's voxels first"
        )
    return mask.array


def seg_classes(mask: np.ndarray, segments: list[dict[str, Any]], model: Model, rel: str) -> np.ndarray:
    """A SEG's array as the model's class indices: our own class markers, else segment labels as class names."""
    known = {c.index for c in model.classes}
    if segments and all(s["index"] is not None for s in segments):
        unknown = sorted({s["index"] for s in segments} - known)
        if unknown:
            raise ValidationError(f"{rel} holds class indices {unknown} that this model does not have")
        return mask
    by_name = {c.name.casefold(): c.index for c in model.classes}
    lut = np.zeros(256, np.uint8)
    missing = []
    for s in segments:
        index = by_name.get(str(s["label"]).strip().casefold())
        if index is None or index == 0:
            missing.append(str(s["label"]))
        else:
            lut[s["number"]] = index
    if missing:
        raise ValidationError(
            f"{rel} has segments {missing} that name none of the model's classes ({[c.name for c in model.classes]}); "
            "rename them or add the classes"
        )
    return lut[mask]
