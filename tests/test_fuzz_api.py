"""Every public Project call given junk in one argument: a PatientMLError or success, nothing else.

Closes the class of "an error a user can cause escapes as TypeError/ValueError/KeyError"
(``classes=1.0``, ``time_spent="abc"`` were two). After the fuzzing, the project still checks clean.
"""

import inspect
import tempfile

import numpy as np
import pytest
from helpers import fuzz_examples, image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patientml_widgets as pml
from patientml_widgets.store.check import check

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\x00", "a\nb", "\u202eevil", "Cafe\u0301", "<b>x</b>", "../../x", "-1", "1e400"]),
    st.binary(max_size=8),
    st.lists(st.one_of(st.integers(-3, 300), st.text(max_size=4), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4), st.none()), max_size=3),
    st.sampled_from([object(), np.zeros((2, 2, 2, 2)), np.array(["a"]), np.full((24, 32), np.nan), np.int64(7)]),
)

#: calls left out: they start processes or wait on them (their argument checks are the same as
#: create_run's and are covered there), or take callables / paths whose junk is a different test
SKIP = {
    "train", "batch", "observe", "unobserve", "on_change", "poll", "demo", "open",
    "add_folder", "import_dataset", "export_labels", "export_run", "export_snapshot",
}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "study"
    proj = pml.Project.open(root, user="tester")
    seg = proj.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    cls = proj.create_model("cls", problem_type="classification", classes=["a", "b"])
    seg_ex = proj.add_example(seg, image(), subject="p1")
    proj.add_example(cls, image(seed=1), subject="p2")
    run = proj.create_run(seg)
    valid = {
        "model": seg.id, "example": seg_ex.id, "ref": seg_ex.id, "run": run.id, "name": "fresh",
        "image": image(seed=2), "images": [image(seed=3)], "subject_id": "p9", "item": seg_ex.id,
        "problem_type": "classification", "classes": ["x", "y"], "description": "d", "reason": "r",
        "mask": np.zeros((24, 32), np.uint8), "volume": np.zeros((3, 8, 8), np.int16), "index": 0,
        "code": "def make(c, n):\n    return None\n", "after_labels": 3, "user": "reader",
        "examples": [seg_ex.id], "readers": ["tester"], "decision": "accept",
    }  # fmt: skip
    return World(proj, valid)


class World(tuple):
    """The project and valid arguments (a short repr: hypothesis prints it with each failure)."""

    def __new__(cls, proj, valid):
        return super().__new__(cls, (proj, valid))

    def __repr__(self):
        return "World(...)"


def _calls():
    for name, fn in inspect.getmembers(pml.Project, inspect.isfunction):
        if name.startswith("_") or name in SKIP:
            continue
        for param in list(inspect.signature(fn).parameters.values())[1:]:
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            yield name, param.name


def _arguments(fn, valid, junk_name, junk):
    args, kwargs = [], {}
    for param in list(inspect.signature(fn).parameters.values())[1:]:
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if param.name == junk_name:
            value = junk
        elif param.default is param.empty:
            value = valid[param.name]
        else:
            continue
        if param.kind == param.KEYWORD_ONLY:
            kwargs[param.name] = value
        else:
            args.append(value)
    return args, kwargs


@pytest.mark.parametrize(("method", "argument"), list(_calls()))
@settings(max_examples=fuzz_examples(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=JUNK)
def test_junk_in_one_argument_is_a_patientml_error_or_works(world, method, argument, junk):
    proj, valid = world
    fn = getattr(pml.Project, method)
    args, kwargs = _arguments(fn, valid, argument, junk)
    try:
        fn(proj, *args, **kwargs)
    except pml.PatientMLError as e:
        assert str(e).strip(), f"{method}({argument}={junk!r}) raised an error without a message"


def test_the_project_checks_clean_after_the_fuzzing(world):
    proj, _ = world
    report = check(proj.path)
    assert report.ok, report.problems


FOLDER_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=4),
    st.lists(st.text(max_size=3), max_size=2),
    st.sampled_from(["", "   ", "a\x00b", object(), lambda p: p]),
)  # fmt: skip


@pytest.mark.parametrize("method", ["add_folder", "import_dataset", "export_labels", "export_snapshot", "export_run"])
@settings(max_examples=fuzz_examples(10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=FOLDER_JUNK)
def test_junk_folders_are_a_patientml_error(world, method, junk, tmp_path_factory):
    proj, valid = world
    args = {"import_dataset": (junk,), "export_snapshot": (valid["run"], junk), "export_run": (valid["run"], junk)}
    with pytest.raises(pml.PatientMLError):
        getattr(proj, method)(*args.get(method, (valid["model"], junk)))


@settings(max_examples=fuzz_examples(20), deadline=None)
@given(path=FOLDER_JUNK, user=JUNK)
def test_open_refuses_junk_paths_and_user_names(path, user):
    with pytest.raises(pml.PatientMLError):
        pml.Project.open(path)
    if not (isinstance(user, str) and user.strip()) and user is not None:
        with pytest.raises(pml.PatientMLError):
            pml.Project.open(tempfile.mkdtemp(), user=user)
