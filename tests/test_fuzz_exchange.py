"""Hostile and malformed imports, generated: index CSVs, COCO files and zip archives from elsewhere.

Each import either succeeds or raises a PatientMLError (never anything else), writes nothing
outside the project folder and the test's own input folder, and leaves a project that
``check`` finds whole. CSV cells survive export and import exactly, whatever their text.
FUZZ_N=500 runs each generated test on more examples (the default keeps the file to seconds).
"""

import contextlib
import io
import itertools
import json
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import fuzz_examples, image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import patientml_widgets as pml
from patientml_widgets.errors import PatientMLError
from patientml_widgets.exchange import csvfile
from patientml_widgets.store.check import check

FUZZ = settings(
    max_examples=fuzz_examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_counter = itertools.count()


def png(seed=0, mode="image"):
    buf = io.BytesIO()
    arr = image(6, 6, seed) if mode == "image" else (image(6, 6, seed) % 2).astype(np.uint8)
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


PNG, MASK = png(1), png(2, "mask")
_npy = io.BytesIO()
np.save(_npy, image(6, 6, 4))
NPY = _npy.getvalue()


class Workspace:
    """A project, an input folder per example, and a record of everything outside the project."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.project = pml.Project.open(tmp_path / "study", user="fuzz")
        self.seg = self.project.create_model("seg", problem_type="segmentation", classes=["background", "a"])
        self.cls = self.project.create_model("cls", problem_type="classification", classes=["x", "y"])
        self.outside = set(tmp_path.parent.iterdir())

    def folder(self) -> Path:
        path = self.root / f"in-{next(_counter)}"
        path.mkdir()
        return path

    def attempt(self, call, inputs: Path) -> None:
        written = set(inputs.rglob("*"))
        with contextlib.suppress(PatientMLError):  # refused with a reason is fine; anything else fails the test
            call()
        assert set(self.root.parent.iterdir()) == self.outside  # nothing next to the test's folder
        assert all(p.name == "study" or p.name.startswith("in-") for p in self.root.iterdir())
        assert set(inputs.rglob("*")) == written  # the input is read, never written
        assert not [p for p in self.project.path.iterdir() if p.name.startswith(".import-")]
        report = check(self.project.path)
        assert report.ok, str(report)


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path)


# -- index CSVs ---------------------------------------------------------------------------

COLUMNS = ["image", "file", "mask", "subject", "split", "status", "classes", "class_indices", "author", "frame",
           "window_center", "window_width", "invert", "modality", "", " Image ", "IMAGE"]  # fmt: skip
HOSTILE_CELLS = [
    "img/0.png", "img/1.png", "img/m.png", "../secret.png", "/etc/hostname", "img", "", "train", "test", "draft",
    "x", "y|x", "0|1", "1", "-1", "99999999999999999999", "nan", "inf", "²", "'=1+1", "=cmd", "\t",
    "img/0.png\r\nimg/1.png", "a" * 300, "img/\x00.png",
]  # fmt: skip
CELLS = st.one_of(st.sampled_from(HOSTILE_CELLS), st.text(max_size=20))
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


def input_folder(ws):
    folder = ws.folder()
    (folder / "img").mkdir()
    (folder / "img" / "0.png").write_bytes(PNG)
    (folder / "img" / "1.png").write_bytes(png(3))
    (folder / "img" / "m.png").write_bytes(MASK)
    return folder


@FUZZ
@given(data=st.binary(max_size=400), segmentation=st.booleans())
def test_index_csv_of_random_bytes(ws, data, segmentation):
    folder = input_folder(ws)
    (folder / "index.csv").write_bytes(data)
    model = ws.seg if segmentation else ws.cls
    ws.attempt(lambda: ws.project.add_folder(model, folder, index="index.csv"), folder)


@FUZZ
@given(
    header=st.lists(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=8)), max_size=6),
    rows=st.lists(st.lists(CELLS, max_size=7), max_size=6),
    encoding=ENCODINGS,
    segmentation=st.booleans(),
)
def test_index_csv_of_random_rows_columns_and_encodings(ws, header, rows, encoding, segmentation):
    folder = input_folder(ws)
    buf = io.StringIO()
    for row in [header, *rows]:
        buf.write(",".join('"' + c.replace('"', '""') + '"' if "," in c or "\n" in c else c for c in row) + "\n")
    (folder / "index.csv").write_bytes(buf.getvalue().encode(encoding, errors="replace"))
    model = ws.seg if segmentation else ws.cls
    ws.attempt(lambda: ws.project.add_folder(model, folder, index="index.csv"), folder)


# -- COCO files ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
ODD_NUMBERS = [0, 1, 6, -1, 2**63, 10**30, 6.0, 6.5, "6", True, None]
NUMBERS = st.one_of(st.sampled_from(ODD_NUMBERS), st.integers(), st.floats())


def segmentations():
    counts = st.one_of(st.text(max_size=12), st.lists(NUMBERS, max_size=6), JSON)
    rle = st.fixed_dictionaries({"size": st.one_of(st.just([6, 6]), JSON), "counts": counts})
    polygon = st.lists(NUMBERS, max_size=10)
    return st.one_of(rle, st.lists(polygon, max_size=3), JSON)


FILE_NAMES = st.sampled_from(["a.png", "../a.png", "/etc/hostname", "", "b.png"])
COCO = st.fixed_dictionaries(
    {
        "images": st.lists(
            st.fixed_dictionaries(
                {"id": NUMBERS, "file_name": FILE_NAMES, "width": NUMBERS, "height": NUMBERS},
                optional={"split": JSON, "subject": JSON, "status": JSON},
            ),
            max_size=3,
        ),
        "categories": st.lists(
            st.fixed_dictionaries({"id": NUMBERS, "name": st.one_of(st.text(max_size=6), JSON)}), max_size=3
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {"image_id": NUMBERS, "category_id": NUMBERS, "segmentation": segmentations()}, optional={"id": JSON}
            ),
            max_size=3,
        ),
    }
)


@FUZZ
@given(coco=st.one_of(COCO, JSON, COCO.map(lambda c: {k: v for k, v in c.items() if k != "categories"})))
def test_coco_files_of_random_structure(ws, coco):
    folder = ws.folder()
    (folder / "a.png").write_bytes(PNG)
    (folder / "annotations.json").write_text(json.dumps(coco))
    ws.attempt(lambda: ws.project.import_dataset(folder, name=f"coco {next(_counter)}"), folder)


@FUZZ
@given(manifest=st.one_of(JSON, st.fixed_dictionaries(
    {"format": st.just("patientml-dataset"), "version": st.just(1), "layout": st.sampled_from(["folder", "coco", 1]),
     "classes": st.one_of(JSON, st.lists(st.dictionaries(st.sampled_from(["index", "name", "color"]), JSON))),
     "model": JSON})))  # fmt: skip
def test_export_manifests_of_random_structure(ws, manifest):
    folder = ws.folder()
    (folder / "dataset.json").write_text(json.dumps(manifest))
    (folder / "index.csv").write_text("image,classes\n")
    ws.attempt(lambda: ws.project.import_dataset(folder, name=f"manifest {next(_counter)}"), folder)


# -- zip archives -------------------------------------------------------------------------

HOSTILE_NAMES = [
    "a.png", "a", "a/b.png", "A.png", "../up.png", "/abs.png", "C:/win.png", "..\\back.png", "x\\y.png",
    "train/p1/c.png", "index.csv", "./a.png", "a/../../z.png", "x" * 300 + ".png", "d/" + "y" * 250 + "/e.png",
    "é/ü.png", "dir/", "a.npy", "a.dcm", "a.tif", "a.jpg", "line\nbreak.png",
]  # fmt: skip
NAMES = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=12),
)
CONTENTS = st.one_of(
    st.just(PNG), st.just(MASK), st.binary(max_size=64), st.just(b"image,subject\na.png,p\n"),
    st.just(NPY), st.just(NPY[:-3]), st.just(b"\0" * 128 + b"DICM" + b"\x02\x00"),
)  # fmt: skip


@FUZZ
@pytest.mark.filterwarnings("ignore:Duplicate name")
@given(
    members=st.lists(
        st.tuples(NAMES, CONTENTS, st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])), max_size=6
    ),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    index=st.booleans(),
)
def test_zip_archives_of_hostile_members(ws, members, cut, index):
    folder = ws.folder()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content, method in members:
            zf.writestr(zipfile.ZipInfo(name), content, compress_type=method)
    data = buf.getvalue() if cut is None else buf.getvalue()[:cut]
    archive = folder / "upload.zip"
    archive.write_bytes(data)
    kwargs = {"index": "index.csv"} if index else {}
    ws.attempt(lambda: str(ws.project.add_folder(ws.seg, archive, **kwargs)), folder)


@FUZZ
@given(data=st.binary(max_size=300), flip=st.integers(0, 10**6))
def test_zip_archives_of_random_or_corrupted_bytes(ws, data, flip):
    folder = ws.folder()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("p/a.png", PNG)
        zf.writestr("p/b.png", data)
    raw = bytearray(buf.getvalue())
    raw[flip % len(raw)] ^= 0xFF  # one damaged byte: a header, the data or the directory
    (folder / "flipped.zip").write_bytes(bytes(raw))
    (folder / "random.zip").write_bytes(b"PK\x03\x04" + data)
    ws.attempt(lambda: ws.project.add_folder(ws.seg, folder / "flipped.zip"), folder)
    ws.attempt(lambda: ws.project.add_folder(ws.seg, folder / "random.zip"), folder)


# -- CSV cells round trip ----------------------------------------------------------------


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(cells=st.lists(st.text(), min_size=1, max_size=5), rows=st.integers(1, 3))
def test_any_text_survives_a_csv_write_and_read(tmp_path_factory, cells, rows):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    columns = [f"c{i}" for i in range(len(cells))]
    path.write_bytes(csvfile.write_csv(columns, [dict(zip(columns, cells, strict=True))] * rows))
    header, table = csvfile.read_csv(path)
    assert header == columns and table == [cells] * rows


#: any name a user can give (a model, subject or author name is one line of visible text, stored
#: NFC and without surrounding space: see records.clean_name)
NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=30
).filter(lambda s: s == s.strip() and unicodedata.is_normalized("NFC", s) and unicodedata.category(s[0])[0] != "M")


@settings(max_examples=fuzz_examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    author=NAMES,
    subject=NAMES,
    name=NAMES,
)
def test_author_subject_and_model_name_survive_export_and_import_exactly(tmp_path, author, subject, name):
    case = tmp_path / f"case-{next(_counter)}"
    project = pml.Project.open(case / "a", user="someone")
    model = project.create_model(name, problem_type="classification", classes=["x", "y"])
    ex = project.add_example(model, image(6, 6), subject=subject)
    project.submit_label(ex, classes=["y"], author=author)
    out = project.export_labels(model, case / "out")
    other = pml.Project.open(case / "b", user="importer")
    copy = other.import_dataset(out).model
    assert copy.name == name
    (got,) = other.examples(copy)
    assert got.subject_id == subject and other.label(got).author == author and tuple(other.label(got).classes) == (1,)
