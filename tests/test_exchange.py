"""Labels out and back in: folder/CSV and COCO exports, run snapshots, folder imports with an index."""

import csv
import json
import os

import numpy as np
import pytest
from helpers import image
from PIL import Image

import patientml_widgets as pml
from patientml_widgets.dicom_demo import write_dicom_sample
from patientml_widgets.errors import NotFoundError, ValidationError
from patientml_widgets.exchange import export as exports
from patientml_widgets.imaging.rle import decode_rle, encode_rle
from patientml_widgets.store.check import check


def read_index(folder):
    with open(folder / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def labelled(project, model):
    """{(split, subject, image bytes): (status, classes, mask bytes, author)} - what must survive a round trip."""
    out = {}
    for ex in project.examples(model):
        label = project.label(ex)
        if label is None:
            continue
        mask = project.mask(ex)
        key = (ex.split, ex.subject_id, project.image(ex).tobytes(), str(project.image(ex).dtype))
        out[key] = (label.status, label.classes, None if mask is None else mask.tobytes(), label.author)
    return out


@pytest.fixture
def seg_project(project, seg, tmp_path):
    """Segmentation labels on 8-bit RGB, 16-bit, int16 CT and float images, with a retired class."""
    project.add_class(seg, "cyst")
    project.remove_class(seg, "margin")  # index 2 retired: the export must keep indices as they are
    write_dicom_sample(tmp_path / "dicom", patients=2, slices=3, size=24)
    project.add_folder(seg, tmp_path / "dicom")
    project.add_examples(seg, [image(24, 24, 1), image(24, 24, 2, np.uint16), image(24, 24, 3).astype(np.float32)],
                         subjects=["=HYPERLINK(1)", "p2", None])  # fmt: skip
    rng = np.random.default_rng(0)
    for i, ex in enumerate(project.examples(seg, sort="source")):
        mask = rng.choice(np.array([0, 1, 3], np.uint8), size=ex.shape)
        if i % 4 == 3:
            project.save_label(ex, mask=mask)  # a draft
        elif i % 4 != 2:
            project.submit_label(ex, mask=mask, author="-dr. who" if i % 2 else "ann")
    return project, project.model(seg.id)


def test_folder_export_round_trips_exactly(seg_project, tmp_path):
    project, seg = seg_project
    out = project.export_labels(seg, tmp_path / "out")
    rows = read_index(out)
    assert {r["status"] for r in rows} == {"submitted"}  # drafts only when asked
    assert len(rows) == sum(1 for e in project.examples(seg) if e.status == "labeled")
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["model"]["name"] == seg.name and manifest["retired_class_indices"] == [2]
    assert [c["index"] for c in manifest["classes"]] == [0, 1, 3]
    assert manifest["label_versions"] == {r["example_id"]: int(r["version"]) for r in rows}
    for r in rows:  # plain tools read it: PIL for masks, the mask indices are the class indices
        mask = np.asarray(Image.open(out / r["mask"]))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 3}
        assert np.array_equal(mask, project.mask(r["example_id"]))
    assert any(r["image"].endswith(".tif") for r in rows)  # int16 CT and float32 are not squeezed into PNG
    other = pml.Project.open(tmp_path / "other", user="importer")
    report = other.import_dataset(out)
    assert not report.skipped and report.labels == len(rows)
    copy = report.model
    assert [(c.index, c.name, c.color) for c in copy.classes] == [(c.index, c.name, c.color) for c in seg.classes]
    submitted = {k: v for k, v in labelled(project, seg).items() if v[0] == "submitted"}
    assert labelled(other, copy) == submitted
    assert other.add_class(copy, "new").classes[-1].index == 4  # the retired index 2 stays retired
    with pytest.raises(ValidationError, match="already has a model named"):
        other.import_dataset(out)  # the name is taken: say how to import it again
    assert other.import_dataset(out, name="second copy").labels == len(rows)


def test_drafts_on_request_and_coco_round_trip_checked_with_pycocotools(seg_project, tmp_path):
    project, seg = seg_project
    out = project.export_labels(seg, tmp_path / "coco", layout="coco", include_drafts=True)
    coco = json.loads((out / "annotations.json").read_text())
    assert {c["id"] for c in coco["categories"]} == {1, 3}  # no background category
    pycocotools = pytest.importorskip("pycocotools.coco")
    api = pycocotools.COCO(str(out / "annotations.json"))
    for im in coco["images"]:
        painted = np.zeros((im["height"], im["width"]), np.uint8)
        for ann in api.loadAnns(api.getAnnIds(imgIds=[im["id"]])):
            painted[api.annToMask(ann).astype(bool)] = ann["category_id"]
        assert np.array_equal(painted, project.mask(im["example_id"]))
    other = pml.Project.open(tmp_path / "other")
    report = other.import_dataset(out)
    assert labelled_masks(other, report.model) == labelled_masks(project, seg)
    assert {e.status for e in other.examples(report.model)} == {"labeled", "draft"}


def labelled_masks(project, model):
    return {
        (e.subject_id, e.split, project.image(e).tobytes(), project.label(e).status): project.mask(e).tobytes()
        for e in project.examples(model)
        if project.label(e) is not None
    }


def test_rle_matches_pycocotools_and_reads_uncompressed_counts():
    mask_util = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = rng.random((h, w)) < rng.random()
        ours = encode_rle(m)
        assert ours["counts"] == mask_util.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        assert np.array_equal(decode_rle(ours), m)
    assert np.array_equal(decode_rle({"size": [2, 2], "counts": [1, 2, 1]}), np.array([[0, 1], [1, 0]], bool))
    with pytest.raises(ValidationError, match="add up"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValidationError, match="refused"):
        decode_rle({"size": [10**6, 10**6], "counts": [10**12]})  # never allocated


def test_classification_csv_round_trip(project, tmp_path):
    single = project.create_model("kind", problem_type="classification", classes=["a", "b|c", "-d"])
    multi = project.create_model("findings", problem_type="classification", classes=["x", "y", "z"], multi_label=True)
    for i in range(6):
        for model in (single, multi):
            ex = project.add_example(model, image(12, 12, i), subject=f"s{i % 3}")
            if model is single:
                project.submit_label(ex, classes=[["a", "b|c", "-d"][i % 3]])
            else:
                project.submit_label(ex, classes=[["x"], ["y", "z"], []][i % 3])
    other = pml.Project.open(tmp_path / "other")
    for model in (single, multi):
        out = project.export_labels(model, tmp_path / model.name)
        rows = read_index(out)
        assert "mask" in rows[0] and rows[0]["mask"] == "" and all(r["classes"] is not None for r in rows)
        report = other.import_dataset(out)
        assert report.labels == 6
        assert labelled(other, report.model) == labelled(project, model)


def test_snapshot_export_holds_the_frozen_versions(project, seg, tmp_path):
    examples = project.add_examples(seg, [image(16, 16, i) for i in range(4)], splits=["train", "train", "val", "test"])
    first = np.zeros((16, 16), np.uint8)
    first[2:6, 2:6] = 1
    for ex in examples:
        project.submit_label(ex, mask=first)
    run = project.create_run(seg)
    project.submit_label(examples[0], mask=np.zeros((16, 16), np.uint8))  # after the snapshot
    out = project.export_snapshot(run, tmp_path / "snap")
    rows = read_index(out)
    assert sorted(r["split"] for r in rows) == ["test", "train", "train", "val"]
    assert all(r["version"] == "1" for r in rows)
    for r in rows:
        assert np.array_equal(np.asarray(Image.open(out / r["mask"])), first)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["run"]["id"] == run.id and manifest["missing"] == []


def test_export_is_all_or_nothing_and_never_overwrites(seg_project, tmp_path, monkeypatch):
    project, seg = seg_project
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not an empty folder"):
        project.export_labels(seg, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    calls = []

    def failing(work, arr, example_id):
        calls.append(example_id)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(work, arr, example_id)

    original = exports._write_image
    monkeypatch.setattr(exports, "_write_image", failing)
    with pytest.raises(OSError, match="disk full"):
        project.export_labels(seg, tmp_path / "half")
    assert not (tmp_path / "half").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    with pytest.raises(ValidationError, match="COCO export is for segmentation"):
        cls = project.create_model("c", problem_type="classification", classes=["a", "b"])
        project.export_labels(cls, tmp_path / "c", layout="coco")


def test_exports_carry_no_patient_names_or_dicom_identifiers_by_default(seg_project, tmp_path):
    project, seg = seg_project
    uids = {e.source["series_uid"] for e in project.examples(seg) if "series_uid" in e.source}

    def exported_bytes(folder):
        return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())

    plain = exported_bytes(project.export_labels(seg, tmp_path / "plain"))
    assert b"Phantom^" not in plain and not any(uid.encode() in plain for uid in uids)
    assert b"PHANTOM-001" in plain  # subject ids travel (patient-level splits downstream) ...
    anonymous = exported_bytes(project.export_labels(seg, tmp_path / "anon", include_subjects=False))
    assert b"PHANTOM-001" not in anonymous  # ... unless left out
    detailed = exported_bytes(project.export_labels(seg, tmp_path / "meta", include_metadata=True))
    assert any(uid.encode() in detailed for uid in uids) and b"Phantom^" not in detailed


def test_csv_cells_that_spreadsheets_would_run_are_quoted(seg_project, tmp_path):
    project, seg = seg_project
    out = project.export_labels(seg, tmp_path / "out")
    text = (out / "index.csv").read_text()
    assert "'=HYPERLINK(1)" in text and "'-dr. who" in text
    assert ",=HYPERLINK" not in text and ",-dr. who" not in text


def test_folder_layout_gives_split_and_subject(project, seg, tmp_path):
    for split, subject in [("train", "anna"), ("train", "ben"), ("validation", "cara"), ("test", "dan")]:
        folder = tmp_path / "data" / split / subject
        folder.mkdir(parents=True)
        Image.fromarray(image(8, 8, len(subject))).save(folder / "a.png")
    (tmp_path / "data" / ".ipynb_checkpoints").mkdir()
    Image.fromarray(image(8, 8)).save(tmp_path / "data" / ".ipynb_checkpoints" / "a.png")
    report = project.add_folder(seg, tmp_path / "data")
    got = sorted((e.subject_id, e.split) for e in report.added)
    assert got == [("anna", "train"), ("ben", "train"), ("cara", "val"), ("dan", "test")]
    hashed = project.add_folder(seg, tmp_path / "data", split_from="hash", subject_from="none")
    assert all(e.subject_id is None for e in hashed.added)


def test_index_csv_brings_subjects_splits_and_labels_and_refuses_escapes(project, seg, tmp_path):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    Image.fromarray(image(8, 8)).save(secret)
    os.symlink(secret, data / "img" / "link.png")
    good_mask = np.zeros((8, 8), np.uint8)
    good_mask[:4] = 1
    palette = Image.fromarray(good_mask, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(data / "img" / "m_palette.png")
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(data / "img" / "m_unknown.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data / "img" / "m_rgb.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(data / "img" / "m_small.png")
    for i in range(6):
        Image.fromarray(image(8, 8, i)).save(data / "img" / f"{i}.png")
    rows = [
        "image,subject,split,mask,status",
        "img/0.png,p1,train,img/m_palette.png,",
        "img/1.png,p1,test,,",
        "img/2.png,p2,val,img/m_unknown.png,",
        "img/3.png,p2,val,img/m_rgb.png,",
        "img/4.png,p3,train,img/m_small.png,",
        "img/5.png,p3,train,img/m_palette.png,draft",
        "../secret.png,p4,train,,",
        "/etc/hostname,p4,train,,",
        "img/link.png,p4,train,,",
        "img/0.png,p5,holdout,,",
        "img/missing.png,p5,train,,",
    ]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    report = project.add_folder(seg, data, index="labels.csv")
    added = {e.source["file"]: e for e in report.added}
    assert sorted(added) == ["img/0.png", "img/1.png", "img/5.png"]
    assert added["img/0.png"].split == "train" and added["img/1.png"].split == "test"
    assert np.array_equal(project.mask(added["img/0.png"]), good_mask)
    assert project.label(added["img/0.png"]).status == "submitted" and project.label(added["img/1.png"]) is None
    assert project.label(added["img/5.png"]).status == "draft"
    reasons = dict(report.skipped)
    assert "does not have" in reasons["img/2.png"] and "colour" in reasons["img/3.png"]
    assert "shape" in reasons["img/4.png"]
    for escaped in ("../secret.png", "/etc/hostname", "img/link.png"):
        assert "leaves the import folder" in reasons[escaped]
    assert "holdout" in reasons["img/0.png"] and reasons["img/missing.png"] == "no such file"
    assert any("more than one split" in w and "p1" in w for w in report.warnings)
    with pytest.raises(ValidationError, match="image column"):
        (data / "bad.csv").write_text("name,subject\nx,y\n")
        project.add_folder(seg, data, index="bad.csv")


def test_import_dataset_refuses_what_it_cannot_read(project, tmp_path):
    with pytest.raises(NotFoundError):
        project.import_dataset(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dataset.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        project.import_dataset(tmp_path / "bad")
    (tmp_path / "bad" / "dataset.json").write_text(json.dumps({"format": "patientml-dataset", "version": 99}))
    with pytest.raises(ValidationError, match="version 99"):
        project.import_dataset(tmp_path / "bad")
    (tmp_path / "bad" / "dataset.json").write_text(
        json.dumps({"format": "patientml-dataset", "version": 1, "layout": "folder", "classes": []})
    )
    with pytest.raises(ValidationError, match="no index file"):
        project.import_dataset(tmp_path / "bad")  # planned before the model is made: nothing is left behind
    (tmp_path / "huge").mkdir()
    huge = {"images": [{"id": 1, "file_name": "a.png", "width": 10**6, "height": 10**6}], "annotations": [],
            "categories": [{"id": 1, "name": "x"}]}  # fmt: skip
    (tmp_path / "huge" / "annotations.json").write_text(json.dumps(huge))
    with pytest.raises(ValidationError, match="refused"):
        project.import_dataset(tmp_path / "huge")
    (tmp_path / "huge" / "annotations.json").write_text('{"images": 5}')
    with pytest.raises(ValidationError, match="not a COCO file"):
        project.import_dataset(tmp_path / "huge")
    assert project.models() == []


def test_zip_archives_import_in_place_and_hostile_members_are_refused(project, seg, tmp_path, monkeypatch):
    import zipfile

    from patientml_widgets.exchange import plan as imports

    archive = tmp_path / "study.zip"
    buf = __import__("io").BytesIO()
    Image.fromarray(image(8, 8)).save(buf, format="PNG")
    png = buf.getvalue()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/anna/a.png", png)
        zf.writestr("test/ben/b.png", png[:-40])  # truncated: skipped with a reason
        zf.writestr("../escape.png", png)
        zf.writestr("/abs.png", png)
        zf.writestr("C:/win.png", png)
        link = zipfile.ZipInfo("anna/link.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    before = set(tmp_path.rglob("*"))
    report = project.add_folder(seg, archive)
    assert [(e.subject_id, e.split, e.source["file"]) for e in report.added] == [("anna", "train", "train/anna/a.png")]
    reasons = dict(report.skipped)
    for name in ("../escape.png", "/abs.png", "C:/win.png"):
        assert "leaves" in reasons[name], reasons
    assert "link" in reasons["anna/link.png"]
    assert "test/ben/b.png" in reasons
    assert not (tmp_path / "escape.png").exists() and not [p for p in project.path.iterdir() if ".import-" in p.name]
    assert all(p.is_relative_to(project.path) for p in set(tmp_path.rglob("*")) - before)
    assert project.add_folder(seg, archive).already == 1
    stale = project.path / ".import-dead"
    stale.mkdir()
    os.utime(stale, (0, 0))  # left by a killed import (never locked): cleaned when the project next opens
    pml.Project.open(project.path)
    assert not stale.exists()
    monkeypatch.setattr(imports, "MAX_ARCHIVE_BYTES", 10)
    with pytest.raises(ValidationError, match="would unpack to"):
        project.add_folder(seg, archive)
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValidationError, match="not a readable zip"):
        project.add_folder(seg, tmp_path / "bad.zip")


# -- hostile and malformed input: one regression test per finding of "safe with files from elsewhere" --


AWKWARD = [
    "line\rbreak", "crlf\r\nin", "\ttab first", "\rcr first", "=1+1", "+x", "-dr. who", "@sum", "'quoted",
    "''=twice", "'=guarded", "  padded both  ", " lead", "trail ", 'say "hi", then', "ünïcødé ✓", "\n", "'",
]  # fmt: skip


def test_csv_cells_round_trip_exactly_and_formulas_are_guarded(project, tmp_path):
    from patientml_widgets.exchange import csvfile

    # any text in any cell: line breaks always inside quotes, every formula start guarded
    text = csvfile.write_csv(["author"], [{"author": a} for a in AWKWARD]).decode()
    assert '"line\rbreak"' in text and '"crlf\r\nin"' in text
    for guarded in ("'\ttab first", "'\rcr first", "'=1+1", "'+x", "'-dr. who", "'@sum", "''quoted", "'''=twice"):
        assert f'"{guarded}"' in text, guarded  # the guard, and quotes around it
    assert ",=1+1" not in text and ",\t" not in text and ',"\t' not in text

    # authors are names (one line, no surrounding space): every one a user can give survives
    # export and import exactly, the ones a spreadsheet would evaluate included
    authors = [a for a in AWKWARD if a.strip() == a and a and not any(c in a for c in "\r\n\t")]
    assert {"=1+1", "+x", "-dr. who", "@sum", "'quoted", "''=twice", "'=guarded", 'say "hi", then'} <= set(authors)
    model = project.create_model("kinds", problem_type="classification", classes=["a", "b"])
    for i, author in enumerate(authors):
        project.submit_label(project.add_example(model, image(6, 6, i)), classes=["a"], author=author)
    out = project.export_labels(model, tmp_path / "out")
    exported = (out / "index.csv").read_bytes().decode()
    for guarded in ("'=1+1", "'+x", "'-dr. who", "'@sum", "''quoted", "'''=twice"):
        assert f'"{guarded}"' in exported, guarded
    other = pml.Project.open(tmp_path / "other", user="importer")
    copy = other.import_dataset(out).model
    assert sorted(other.label(e).author for e in other.examples(copy)) == sorted(authors)
    # a hand-written index: paths and keywords are read without their spaces, and the author
    # like every name (stored NFC, without surrounding space)
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(image(6, 6)).save(data / "a.png")
    (data / "index.csv").write_text('image,classes,author\n a.png , b ," dr who "\n', encoding="utf-8-sig")
    (ex,) = project.add_folder(model, data, index="index.csv").added
    assert project.label(ex).author == "dr who" and project.label(ex).classes == (1,)
    with pytest.raises(pml.ValidationError, match="U\\+000D"):
        project.submit_label(ex, classes=["a"], author="line\rbreak")


def test_every_csv_goes_through_the_one_helper():
    from patientml_widgets.exchange import csvfile

    for text in [*AWKWARD, "", "plain"]:
        assert csvfile.unguard_cell(csvfile.guard_cell(text)) == text
    assert csvfile.unguard_cell("'=hand written") == "=hand written"  # a spreadsheet user's own guard
    root = __import__("pathlib").Path(pml.__file__).parent
    users = sorted(p.name for p in root.rglob("*.py") if "import csv" in p.read_text().splitlines())
    assert users == ["csvfile.py"]


def crafted_zip(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data, *method in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method[0] if method else zipfile.ZIP_STORED)
    return path


def png_bytes(seed=0):
    buf = __import__("io").BytesIO()
    Image.fromarray(image(8, 8, seed)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_members_that_cannot_be_unpacked_are_skipped_with_the_reason(project, seg, tmp_path):
    import zipfile

    png = png_bytes()
    long_name = "x" * 300 + ".png"
    archive = crafted_zip(tmp_path / "odd.zip", [
        ("clash", b"a file"), ("clash/b.png", png),  # a file, then a folder of the same name
        ("other/c.png", png_bytes(1)), ("other", b"a file"),  # a folder, then a file of the same name
        (long_name, png), ("d/" + "y" * 260 + "/e.png", png),  # names the file system refuses
        ("twice.png", png_bytes(2)), ("twice.png", png_bytes(3)),  # the same name twice
        ("good.png", png_bytes(4)), ("bad-crc.png", png), ("strange.png", png, zipfile.ZIP_DEFLATED),
        ("locked.png", png),
    ])  # fmt: skip
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"bad-crc.png") + len("bad-crc.png") + 20  # a byte of its data, past the local header
    raw[at] ^= 0xFF
    for signature, method_at, flags_at in ((b"PK\x03\x04", 8, 6), (b"PK\x01\x02", 10, 8)):
        for name, field, value in ((b"strange.png", method_at, 97), (b"locked.png", flags_at, 1)):
            start = 0
            while (start := raw.find(signature, start)) >= 0:  # patch the header of that member
                name_at = start + (30 if signature == b"PK\x03\x04" else 46)
                if raw[name_at : name_at + len(name)] == name:
                    raw[start + field] |= value
                start += 4
    archive.write_bytes(bytes(raw))
    report = project.add_folder(seg, archive)
    reasons = dict(report.skipped)
    assert sorted(e.source["file"] for e in report.added) == ["good.png", "other/c.png", "twice.png"]
    assert "clashes" in reasons["clash/b.png"] and "clashes" in reasons["other"] and "clashes" in reasons["twice.png"]
    assert "too long" in reasons[long_name] and "too long" in reasons["d/" + "y" * 260 + "/e.png"]
    assert "CRC" in reasons["bad-crc.png"] and "damaged" in reasons["bad-crc.png"]
    assert "compression method" in reasons["strange.png"] and "encrypted" in reasons["locked.png"]
    assert "x" * 300 not in str(report) and "(304 characters)" in str(report)  # a long name is shortened
    assert np.array_equal(project.image(report.added[2]), image(8, 8, 2))  # the first of two of the same name
    assert not [p for p in project.path.iterdir() if ".import-" in p.name]
    assert check(project.path).ok


def test_a_deflate_bomb_is_refused_by_ratio_and_by_the_absolute_cap(project, seg, tmp_path, monkeypatch):
    import shutil
    import zipfile

    from patientml_widgets.exchange import plan as imports

    bomb = crafted_zip(tmp_path / "bomb.zip", [("zeros.npy", b"\0" * (8 << 20), zipfile.ZIP_DEFLATED),
                                               ("ok.png", png_bytes())])  # fmt: skip
    assert bomb.stat().st_size < 20_000  # 8 MiB from a few KB: about 1000:1, deflate's best; 1100:1 never fired
    report = project.add_folder(seg, bomb)
    assert [e.source["file"] for e in report.added] == ["ok.png"]
    assert "zip bomb" in dict(report.skipped)["zeros.npy"] and "200:1" in dict(report.skipped)["zeros.npy"]
    # the absolute cap: half the free space on the project's disk (never over MAX_ARCHIVE_BYTES), from the directory
    usage = shutil.disk_usage(project.path)
    monkeypatch.setattr(imports.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(ValidationError, match=r"would unpack to .* at most 5e-07 GB .*half the 1e-06 GB free.*Nothing"):
        project.add_folder(seg, crafted_zip(tmp_path / "big.zip", [("a.png", b"x" * 2000)]))
    monkeypatch.setattr(imports.shutil, "disk_usage", lambda p: usage)
    monkeypatch.setattr(imports, "MAX_ARCHIVE_BYTES", 10)
    with pytest.raises(ValidationError, match="never over 1e-08 GB"):
        project.add_folder(seg, bomb)
    assert imports.unpack_cap(10**12) == 10 and len(project.examples(seg)) == 1


def test_the_cap_holds_on_the_bytes_written_when_a_directory_lies(project, seg, tmp_path, monkeypatch):
    import errno
    import io
    import shutil
    import zipfile

    from patientml_widgets.errors import StoreError
    from patientml_widgets.exchange import plan as imports

    archive = crafted_zip(tmp_path / "liar.zip", [("a.png", png_bytes()), ("b.png", png_bytes(1))])
    real_open = zipfile.ZipFile.open
    extra = {"bytes": 0}

    def lying_open(self, member, *args, **kwargs):  # a reader that yields more than the directory declares
        real = real_open(self, member, *args, **kwargs)
        return io.BytesIO(real.read() + b"\0" * extra["bytes"])

    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    extra["bytes"] = 10
    report = project.add_folder(seg, archive)
    assert [why for _, why in report.skipped] == ["it inflates past the size it declares"] * 2
    usage = shutil.disk_usage(project.path)
    declared = sum(m.file_size for m in zipfile.ZipFile(archive).infolist())
    monkeypatch.setattr(imports.shutil, "disk_usage", lambda p: usage._replace(free=2 * declared + 2))
    extra["bytes"] = 10**6  # past the import's cap: refused as a whole, nothing left behind
    with pytest.raises(ValidationError, match="unpacked more than it declares"):
        project.add_folder(seg, archive)
    assert not [p for p in project.path.iterdir() if ".import-" in p.name] and project.examples(seg) == []

    def full_disk(self, member, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "open", full_disk)
    with pytest.raises(StoreError, match="disk is full"):
        project.add_folder(seg, archive)


def test_malformed_index_csv_coco_and_manifests_are_patientml_errors(project, seg, tmp_path):
    from patientml_widgets.errors import PatientMLError

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(image(8, 8)).save(data / "a.png")
    for name, content, match in [
        ("utf16.csv", "image\na.png\n".encode("utf-16"), "UTF-16.*CSV UTF-8"),
        ("latin.csv", "image,subject\na.png,J\xf6rg\n".encode("latin-1"), "not UTF-8.*CSV UTF-8"),
        ("empty.csv", b"", "empty"),
        ("huge.csv", b'image\n"' + b"x" * 200_000 + b'"\n', "not a readable CSV"),
    ]:
        (data / name).write_bytes(content)
        with pytest.raises(ValidationError, match=match):
            project.add_folder(seg, data, index=name)
    (data / "odd.csv").write_text("image,frame,window_center,window_width\nimg/\0.png,,,\n" + "x" * 300 + ".png,,,\n"
                                  "a.png,²,0,inf\n")  # fmt: skip
    reasons = dict(project.add_folder(seg, data, index="odd.csv").skipped)
    assert "NUL" in reasons["img/\0.png"] or "cannot be a file name" in reasons["img/\0.png"]
    assert "too long" in reasons["x" * 300 + ".png"] and "frame" in reasons["a.png"]
    coco = tmp_path / "coco"
    coco.mkdir()
    Image.fromarray(image(8, 8)).save(coco / "a.png")
    image_8 = {"id": 1, "file_name": "a.png", "width": 8, "height": 8}
    cases = [
        "[" * 100_000,  # too deep for the parser
        '{"images": [{"id": 1, "file_name": "a.png", "width": Infinity, "height": 8}], "categories": []}',
        '{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "categories": [], "annotations": [5]}',
        json.dumps({"images": [image_8], "categories": [{"id": 1}]}),
        json.dumps({"images": [{"file_name": "a.png"}], "categories": []}),
        json.dumps({"images": [image_8], "categories": [{"id": 1, "name": "x"}],
                    "annotations": [{"image_id": 1, "category_id": 2**70, "segmentation": []}]}),
        '{"images": [{"id": 1' + "0" * 5000 + '}], "categories": []}',  # more digits than Python parses
    ]  # fmt: skip
    for text in cases:
        (coco / "annotations.json").write_text(text)
        with pytest.raises(ValidationError):
            project.import_dataset(coco)
    # a segmentation that cannot be painted skips its image, with the reason (painted one image at a time)
    for segmentation in ([[0, 0, "x", 1, 4, 4]], {"size": [8, 8], "counts": 7}, 3):
        annotation = {"image_id": 1, "category_id": 1, "segmentation": segmentation}
        text = {"images": [image_8], "categories": [{"id": 1, "name": "x"}], "annotations": [annotation]}
        (coco / "annotations.json").write_text(json.dumps(text))
        report = project.import_dataset(coco)
        assert report.added == [] and report.skipped[0][0] == "a.png" and "annotation 0" in report.skipped[0][1]
        project.delete_model(report.model)
    (coco / "annotations.json").unlink()
    for manifest in ({"model": [1]}, {"classes": ["a", 1]}, {"classes": [{"index": "x", "name": "a"}]}):
        full = {"format": "patientml-dataset", "version": 1, "layout": "folder", "classes": [], **manifest}
        (coco / "dataset.json").write_text(json.dumps(full))
        with pytest.raises(PatientMLError):
            project.import_dataset(coco)
    assert [m.name for m in project.models()] == [seg.name]


def test_a_file_whose_name_is_not_utf8_is_skipped_not_the_whole_import(project, seg, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(image(8, 8)).save(os.path.join(os.fsencode(data), b"caf\xe9.png"))  # Latin-1 bytes
    Image.fromarray(image(8, 8, 1)).save(data / "ok.png")
    report = project.add_folder(seg, data)
    assert [e.source["file"] for e in report.added] == ["ok.png"]
    assert "not UTF-8" in dict(report.skipped)[os.fsdecode(b"caf\xe9.png")] and "\\udce9" in str(report)
    assert check(project.path).ok


def test_a_coco_file_claiming_many_huge_images_costs_no_memory_until_one_is_imported(project, tmp_path):
    import tracemalloc

    coco = tmp_path / "coco"
    coco.mkdir()
    Image.fromarray(image(8, 8)).save(coco / "a.png")
    images = [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}]
    images += [{"id": i, "file_name": f"missing-{i}.png", "width": 8192, "height": 8192} for i in range(2, 202)]
    polygon = [[0, 0, 8000, 0, 8000, 8000]]
    annotations = [{"image_id": i, "category_id": 1, "segmentation": polygon} for i in range(2, 202)]
    annotations.append({"image_id": 1, "category_id": 1, "segmentation": [[0, 0, 7, 0, 7, 7]]})
    text = {"images": images, "categories": [{"id": 1, "name": "x"}], "annotations": annotations}
    (coco / "annotations.json").write_text(json.dumps(text))
    tracemalloc.start()
    try:
        report = project.import_dataset(coco)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(report.added) == 1 and len(report.skipped) == 200  # the claimed images are missing files
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB for 200 claimed 8192^2 images that are not there"
    assert project.mask(report.added[0]).sum() > 0
