"""The store's own files, damaged or crafted (a project folder from elsewhere): every read and write
either works or raises a PatientMLError, never anything else, and nothing is written outside the
project folder.

Each example copies a small project, changes one of its files (a JSON value replaced by junk of
another type, bytes flipped, the file cut short or replaced) and then opens the copy, reads
everything a user or a view reads, writes a label and runs the checker.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from helpers import deployed_run, fuzz_examples, image
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import patientml_widgets as pml
from patientml_widgets.store.check import check

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**66), 2**66),
    st.floats(allow_nan=True, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["../../../etc/passwd", "/tmp/x", "blobs/../../x.png", "<script>", "\x00", "zz.png"]),
    st.lists(st.integers(-2, 300), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "study"
    proj = pml.Project.open(root, user="tester")
    seg = proj.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    cls = proj.create_model("cls", problem_type="classification", classes=["a", "b"])
    mask = np.zeros((24, 32), np.uint8)
    mask[2:9, 3:12] = 1
    for i in range(2):
        proj.submit_label(proj.add_example(seg, image(seed=i), subject=f"p{i}"), mask=mask)
        proj.save_label(proj.add_example(cls, image(seed=9 + i), subject=f"p{i}"), classes=["b"])
    deployed_run(proj, proj.model(seg.id))
    proj.add_subject("p0", name="Patient zero", tags=["x"])
    return root


def _files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock" and ".cache" not in p.parts
    )


def _replace_in_json(value, path: list[int], junk):
    """``value`` with the node that ``path`` picks (indices taken modulo each level's size) replaced."""
    if not path or not isinstance(value, dict | list) or not value:
        return junk
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = _replace_in_json(value[key], path[1:], junk)
    return copy


@st.composite
def damage(draw):
    kind = draw(st.sampled_from(["json", "json", "json", "flip", "cut", "replace", "delete"]))
    return kind, draw(st.integers(0, 10**6)), draw(st.lists(st.integers(0, 50), min_size=1, max_size=5)), draw(JUNK)


def _damage(root: Path, files: list[str], which: int, how) -> str:
    kind, at, path, junk = how
    name = files[which % len(files)]
    target = root / name
    target.chmod(0o644)
    data = target.read_bytes()
    if kind == "json":
        try:
            if name.endswith(".jsonl"):
                lines = data.splitlines()
                i = at % max(len(lines), 1)
                lines[i] = orjson.dumps(_replace_in_json(orjson.loads(lines[i]), path, junk))
                data = b"\n".join(lines) + b"\n"
            else:
                data = orjson.dumps(_replace_in_json(orjson.loads(data), path, junk))
        except (orjson.JSONDecodeError, IndexError):
            kind = "flip"
    if kind == "flip" and data:
        i = at % len(data)
        data = data[:i] + bytes([data[i] ^ (1 + at % 255)]) + data[i + 1 :]
    elif kind == "cut":
        data = data[: at % (len(data) + 1)]
    elif kind == "replace":
        data = os.urandom(at % 64)
    if kind == "delete":
        target.unlink()
    else:
        target.write_bytes(data)
    return f"{kind} {name}"


def _use(root: Path) -> None:
    """What a user and the views do with a project: open, list, read each example, label, check."""
    proj = pml.Project.open(root, user="someone")
    for model in proj.models():
        proj.status_counts(model)
        proj.runs(model)
        proj.snapshot(model)
        for ex in proj.examples(model):
            proj.label(ex)
            proj.history(ex)
            proj.image(ex)
            proj.thumbnail(ex)
            if model.problem_type == "segmentation":
                proj.mask(ex)
        examples = proj.examples(model, limit=1)
        if examples:
            ex = examples[0]
            if model.problem_type == "segmentation":
                proj.save_label(ex, mask=np.zeros((ex.height, ex.width), np.uint8))
            else:
                proj.save_label(ex, classes=[model.classes[0].name])
    proj.subjects()
    proj.audit()
    _views(proj)
    check(root)


def _views(proj) -> None:
    """Every view over the project, as a notebook would show them (no front end needed)."""
    from patientml_widgets.widgets import (
        ExampleBrowser,
        LabelCanvas,
        MetricsChart,
        ModelTable,
        PatientMLApp,
        RunDetails,
        RunsTable,
        SubjectViewer,
    )

    ModelTable(proj)
    PatientMLApp(proj)
    for model in proj.models():
        ExampleBrowser(proj, model)
        RunsTable(proj, model)
        MetricsChart(proj, model)
        for run in proj.runs(model):
            RunDetails(proj, run)
        for ex in proj.examples(model, limit=1):
            LabelCanvas.for_example(proj, ex)
    for subject in proj.subjects():
        SubjectViewer(proj, subject.id)


@settings(max_examples=fuzz_examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1000), how=damage())
def test_a_damaged_or_crafted_project_is_a_patientml_error_or_works(template, tmp_path, which, how):
    work = tmp_path / f"case-{os.urandom(4).hex()}"
    work.mkdir()
    root = work / "study"
    shutil.copytree(template, root)
    event(_damage(root, _files(root), which, how).split(" ")[0])
    outside_before = sorted(p.name for p in work.iterdir())
    try:
        _use(root)
        event("worked")
    except pml.PatientMLError as e:
        event(type(e).__name__)
        assert str(e).strip()
    finally:
        assert sorted(p.name for p in work.iterdir()) == outside_before, "something was written outside the project"
        shutil.rmtree(work, ignore_errors=True)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)
RUN_FIELDS = [
    "status", "metrics", "history", "progress", "spec", "classes", "hyperparameters", "approvals", "snapshot",
    "fingerprint", "plan", "hardware", "training", "test_examples", "champion", "error", "traceback", "trials",
    "started", "ended", "trigger", "slug",
]  # fmt: skip


@settings(max_examples=fuzz_examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(RUN_FIELDS), value=JSON, nested=st.sampled_from(["", "test", "val", "objective"]))
def test_a_crafted_run_record_is_shown_or_refused_never_a_crash(template, tmp_path, name, value, nested):
    """A run record written by hand (any JSON in any field): the views show it or say what is wrong."""
    work = tmp_path / f"case-{os.urandom(4).hex()}"
    shutil.copytree(template, work / "study")
    proj = pml.Project.open(work / "study", user="someone")
    run = proj.session.run_records(proj.model("seg").id)[0]
    crafted = {**run, name: {nested: value} if nested else value}
    with proj.session.write():
        proj.session.store.put("runs", run["id"], crafted)  # past every check of the API
    try:
        _use(work / "study")
        event("shown")
    except pml.PatientMLError as e:
        event(type(e).__name__)
        assert str(e).strip()
    finally:
        shutil.rmtree(work, ignore_errors=True)
