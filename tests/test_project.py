import unicodedata

import numpy as np
import pytest
from helpers import image, tree_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patientml_widgets as pml
from patientml_widgets.project import split_for

#: any subject id a user may give: visible text (control, bidi and invisible characters are refused)
SUBJECT_IDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=12
).filter(lambda s: s.strip() and unicodedata.category(s.strip()[0])[0] != "M")


def test_quickstart_from_the_issue(tmp_path):
    proj = pml.Project.open(tmp_path / "my-study")
    seg = proj.create_model(
        "Lesion segmentation",
        problem_type="segmentation",
        description="outline lesions",
        classes=["background", "lesion", "margin"],
    )
    arr = image(40, 50)
    ex = proj.add_example(seg, image=arr, subject="patient-017")
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:30] = 1
    draft = proj.save_label(ex, mask=mask)
    assert draft.status == "draft" and draft.version == 1
    assert [e.id for e in proj.examples(seg, status="draft")] == [ex.id]
    proj.submit_label(ex, mask=mask)
    assert proj.examples(seg, status="draft") == []
    labeled = proj.examples(seg, status="labeled")
    assert [e.id for e in labeled] == [ex.id] and labeled[0].status == "labeled"
    np.testing.assert_array_equal(proj.mask(ex), mask)
    np.testing.assert_array_equal(proj.image(ex), arr)
    assert proj.example(ex).subject_id == "patient-017"
    # reopening sees everything
    again = pml.Project.open(tmp_path / "my-study", create=False)
    assert again.label(ex).status == "submitted"
    assert again.model("Lesion segmentation").description == "outline lesions"


def test_models_create_rename_describe_delete(project, seg, cls):
    assert [m.name for m in project.models()] == ["Lesion segmentation", "Lesion type"]
    assert seg.problem_type == "segmentation" and not seg.deployed
    assert [c.index for c in seg.classes] == [0, 1, 2]
    renamed = project.rename_model(seg, "Lesions")
    assert project.model(seg.id).name == "Lesions" == renamed.name
    assert project.model("Lesions").id == seg.id
    project.describe_model(seg, "new text")
    assert project.model(seg).description == "new text"
    ex = project.add_example(cls, image())
    project.submit_label(ex, classes="nevus")
    project.delete_model(cls)
    assert [m.name for m in project.models()] == ["Lesions"]
    with pytest.raises(pml.NotFoundError):
        project.example(ex.id)
    assert project.audit()[-1]["action"] == "delete_model"


def test_class_indices_are_never_reused(project, seg):
    m = project.add_class(seg, "satellite", color="#00ff00")
    assert [(c.index, c.name, c.color) for c in m.classes][-1] == (3, "satellite", "#00ff00")
    m = project.remove_class(m, "satellite")
    assert [c.index for c in m.classes] == [0, 1, 2]
    m = project.add_class(m, "nodule")
    assert m.classes[-1].index == 4  # 3 stays retired
    ex = project.add_example(m, image(8, 8))
    with pytest.raises(pml.ValidationError, match=r"\[3\]"):
        project.submit_label(ex, mask=np.full((8, 8), 3, np.uint8))
    project.submit_label(ex, mask=np.full((8, 8), 4, np.uint8))
    with pytest.raises(pml.ValidationError, match="used by 1 labels"):
        project.remove_class(m, "nodule")
    with pytest.raises(pml.ValidationError, match="background"):
        project.remove_class(m, 0)


def test_classification_labels_single_and_multi(project, cls):
    ex = project.add_example(cls, image())
    assert project.submit_label(ex, classes="melanoma").classes == (1,)
    assert project.submit_label(ex, classes=[2]).classes == (2,)
    with pytest.raises(pml.ValidationError, match="exactly one"):
        project.submit_label(ex, classes=["nevus", "other"])
    with pytest.raises(pml.ValidationError, match="no class"):
        project.submit_label(ex, classes="unknown")
    multi = project.create_model("Findings", problem_type="classification", classes=["a", "b", "c"], multi_label=True)
    ex2 = project.add_example(multi, image())
    assert project.submit_label(ex2, classes=["c", "a"]).classes == (0, 2)
    assert project.submit_label(ex2, classes=[]).classes == ()


def test_draft_submit_edit_delete_and_history(project, seg):
    ex = project.add_example(seg, image(10, 10))
    m1 = np.zeros((10, 10), np.uint8)
    m1[2:4, 2:4] = 1
    m2 = m1.copy()
    m2[6:8, 6:8] = 2
    project.save_label(ex, mask=m1, time_spent=5)
    project.submit_label(ex)  # submits the draft as it is
    assert project.label(ex).mask_ref is not None and project.label(ex).status == "submitted"
    project.save_label(ex, mask=m2)  # an edit starts a new draft
    assert project.example(ex).status == "draft"
    project.submit_label(ex, mask=m2, author="dr-who")
    np.testing.assert_array_equal(project.mask(ex), m2)
    project.delete_label(ex)
    assert project.label(ex) is None and project.mask(ex) is None
    assert project.example(ex).status == "unlabeled"
    with pytest.raises(pml.NotFoundError):
        project.delete_label(ex)
    hist = project.history(ex)
    assert [(h["action"], h["version"]) for h in hist] == [
        ("save", 1),
        ("submit", 2),
        ("save", 3),
        ("submit", 4),
        ("delete", 5),
    ]
    assert hist[3]["actor"] == "dr-who" and hist[0]["actor"] == "tester"
    # every version's mask can still be read back from the trail
    assert hist[1]["mask_ref"] == hist[0]["mask_ref"] and hist[3]["mask_ref"] != hist[1]["mask_ref"]
    # a new label after deletion continues the version count
    assert project.submit_label(ex, mask=m1).version == 6


def test_status_filters_sorting_paging(project, seg):
    exs = project.add_examples(seg, [image(6, 6, seed=i) for i in range(9)], subjects=[f"s{i % 3}" for i in range(9)])
    zero = np.zeros((6, 6), np.uint8)
    for ex in exs[:3]:
        project.submit_label(ex, mask=zero)
    for ex in exs[3:5]:
        project.save_label(ex, mask=zero)
    assert project.status_counts(seg) == {"unlabeled": 4, "draft": 2, "labeled": 3}
    assert {e.id for e in project.examples(seg, status="unlabeled")} == {e.id for e in exs[5:]}
    assert len(project.examples(seg, status=["draft", "labeled"])) == 5
    assert project.count_examples(seg, status="draft") == 2
    assert {e.id for e in project.examples(seg, subject="s1")} == {exs[1].id, exs[4].id, exs[7].id}
    by_status = project.examples(seg, sort="status")
    assert [e.status for e in by_status] == ["unlabeled"] * 4 + ["draft"] * 2 + ["labeled"] * 3
    newest_label_first = project.examples(seg, sort="label_updated", descending=True, limit=1)
    assert newest_label_first[0].id == exs[4].id
    pages = [project.examples(seg, sort="id", offset=o, limit=4) for o in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [e.id for p in pages for e in p] == sorted(e.id for e in exs)
    with pytest.raises(pml.ValidationError):
        project.examples(seg, status="done")
    with pytest.raises(pml.ValidationError):
        project.examples(seg, sort="colour")


def _texts_as_stored(project, model):
    """Each example's sort texts as the query columns derive them, in storage order (a reference)."""
    from patientml_widgets.query import source_order

    ids = [i for i in project.session.index.column("id").tolist() if project.example(i).model_id == model.id]
    records = {i: project.session.example_record(i) for i in ids}
    labels = {i: project.session.label_record(i) for i in ids}
    live = {i: lab if lab is not None and lab["status"] != "deleted" else None for i, lab in labels.items()}
    texts = {
        "created": {i: f"{r['created']}{r.get('seq', 0):07d}" for i, r in records.items()},
        "updated": {i: r["updated"] for i, r in records.items()},
        "label_updated": {i: lab["updated"] if lab else "" for i, lab in live.items()},
        "status": {i: {None: 0, "draft": 1, "submitted": 2}[lab and lab["status"]] for i, lab in live.items()},
        "subject_id": {i: r["subject_id"] or "" for i, r in records.items()},
        "split": {i: r["split"] for i, r in records.items()},
        "id": {i: i for i in ids},
        "source": {i: source_order(r) for i, r in records.items()},
    }
    return ids, texts


def test_sorts_and_pages_are_those_of_a_stable_sort_of_the_texts(project, seg, cls):
    """Integer keys, ranks and partial sorts give a full stable sort's pages; descending is it reversed."""
    zero = np.zeros((4, 4), np.uint8)
    exs = []
    for batch in range(3):  # examples of a batch share their times; ties everywhere
        subjects = [f"s{(batch + i) % 4}" if i % 5 else None for i in range(20)]
        exs += project.add_examples(seg, [image(4, 4, seed=i) for i in range(20)], subjects=subjects)
    project.add_examples(cls, [image(4, 4, seed=99)])  # another model's rows are left out
    for ex in exs[::3]:
        project.submit_label(ex, mask=zero)
    for ex in exs[1::7]:
        project.save_label(ex, mask=zero)
    project.delete_label(exs[3])
    ids, texts = _texts_as_stored(project, seg)

    def check(p):
        for sort, values in texts.items():
            for status, wanted in ((None, {0, 1, 2}), ("labeled", {2}), (["unlabeled", "draft"], {0, 1})):
                rows = [i for i in ids if texts["status"][i] in wanted]
                full = sorted(rows, key=values.__getitem__)  # Python's sort is stable: ties in storage order
                for descending in (False, True):
                    expected = full[::-1] if descending else full
                    query = {"status": status, "sort": sort, "descending": descending}
                    assert [e.id for e in p.examples(seg, **query)] == expected
                    for offset, limit in ((0, 1), (0, 5), (5, 5), (len(expected) - 2, 5)):
                        page = p.examples(seg, **query, offset=offset, limit=limit)
                        assert [e.id for e in page] == expected[offset : offset + limit]
                        assert page == p.session.examples_by_id(e.id for e in page)  # status as the labels say

    check(project)
    check(pml.Project.open(project.path))  # the columns and keys from the cache
    # times in another form than now()'s (a hand-edited or imported record) are ranked as text instead
    store = project.session.store
    with store.transaction():
        record = dict(store.get("examples", exs[4].id))
        store.put("examples", exs[4].id, {**record, "created": "2026-01-01T00:00:00Z", "updated": "later"})
    ids, texts = _texts_as_stored(project, seg)
    check(project)
    check(pml.Project.open(project.path))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=400), st.booleans(), st.integers(0, 60))
def test_a_partial_sort_gives_the_first_rows_of_the_full_stable_sort(values, descending, limit):
    from patientml_widgets.query import first_in_order

    keys = np.array(values, np.int64)
    full = np.argsort(keys, kind="stable")
    full = full[::-1] if descending else full
    np.testing.assert_array_equal(first_in_order(keys, descending, limit), full[:limit])
    np.testing.assert_array_equal(first_in_order(keys, descending), full)


def test_sort_keys_compare_as_the_texts_do():
    from patientml_widgets.query import sort_key, time_text

    rng = np.random.default_rng(0)
    bounds = ((1900, 2156), (1, 13), (1, 32), (0, 24), (0, 60), (0, 60), (0, 1000))
    fields = np.stack([rng.integers(lo, hi, 300) for lo, hi in bounds], axis=1).tolist()
    times = [f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}+00:00" for y, mo, d, h, mi, s, ms in fields]
    times += [*times[:40], "1900-01-01T00:00:00.000+00:00", "2155-12-31T23:59:59.999+00:00"]  # ties, the ends
    columns = {
        "updated": times,
        "label_updated": times + [""] * 30,
        "created": [t + f"{rng.integers(0, 3):07d}" for t in times] + [times[0] + f"{(1 << 19) - 1:07d}"],
        "id": [f"ex_{rng.integers(0, 16**12):012x}" for _ in range(300)] + ["ex_000000000000", "ex_ffffffffffff"] * 3,
    }
    for name, texts in columns.items():
        values = np.array(rng.permutation(np.array(texts, dtype=str)))
        keys = sort_key(name, values)
        assert keys.dtype == np.int64
        np.testing.assert_array_equal(np.argsort(keys, kind="stable"), np.argsort(values, kind="stable"))
        np.testing.assert_array_equal(
            np.unique(keys, return_inverse=True)[1], np.unique(values, return_inverse=True)[1]
        )
    assert [time_text(k) for k in sort_key("label_updated", np.array([*times, ""]))] == [*times, ""]
    assert sort_key("created", np.array([], dtype="U1")).tolist() == []
    others = [
        ("updated", "2026-12-01T12:43:59.455Z"),
        ("updated", "1899-12-31T23:59:59.999+00:00"),
        ("updated", "2026-12-01T12:43:59.455+01:00"),
        ("label_updated", "2026-12-01 12:43:59.455+00:00"),
        ("created", times[0] + "9999999"),
        ("created", times[0] + "-000001"),
        ("id", "ex_ABCDEF012345"),
        ("id", "ex_0123456789:;"),
        ("id", "m_0123456789ab"),
    ]
    for name, odd in others:
        assert sort_key(name, np.array([*columns[name][:5], odd])) is None, odd


def test_splits_follow_the_subject_and_never_move(project, seg, cls):
    subjects = [f"patient-{i:03d}" for i in range(60)]
    exs = project.add_examples(seg, [image(4, 4, seed=i) for i in range(60)], subjects=subjects)
    for ex, subject in zip(exs, subjects):
        assert ex.split == split_for(subject)
    assert {e.split for e in exs} == {"train", "val", "test"}
    # the same patient lands in the same split in another model, added later
    later = project.add_example(cls, image(), subject="patient-007")
    assert later.split == split_for("patient-007") == exs[7].split
    # explicit split on import
    forced = project.add_example(seg, image(), subject="patient-007", split="test")
    assert forced.split == "test"
    assert project.example(forced).split == "test"
    assert {e.id for e in project.examples(seg, split="test")} >= {forced.id}


def test_bulk_add_is_all_or_nothing(project, seg):
    before = tree_digest(project.path)
    with pytest.raises(pml.ImageError, match="image 1"):
        project.add_examples(seg, [image(), np.full((4, 4), np.nan, np.float32)])
    assert project.examples(seg) == []
    assert {k for k in tree_digest(project.path) if k.startswith("tables")} == {
        k for k in before if k.startswith("tables")
    }


def test_add_folder_reports_skipped_files(project, seg, tmp_path):
    from PIL import Image

    folder = tmp_path / "incoming"
    for subject in ("p1", "p2"):
        (folder / subject).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(image(10, 12, seed=i)).save(folder / subject / f"img{i}.png")
    (folder / "p2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("ignored")
    report = project.add_folder(seg, folder)
    assert len(report.added) == 4
    assert [name for name, _ in report.skipped] == ["p2/broken.png"]
    assert "could not be decoded" in report.skipped[0][1]
    assert sorted(e.subject_id for e in report.added) == ["p1", "p1", "p2", "p2"]
    assert {e.source["file"] for e in report.added} >= {"p1/img0.png"}
    assert "skipped p2/broken.png" in str(report)


def test_subjects(project, seg):
    project.add_subject("patient-1", name="Jane Roe", external_ids={"PatientID": "12345"}, tags=["cohort-a"])
    project.add_example(seg, image(), subject="patient-2")
    assert [s.id for s in project.subjects()] == ["patient-1", "patient-2"]
    s = project.add_subject("patient-1", tags=["cohort-b"])
    assert s.name == "Jane Roe" and s.external_ids == {"PatientID": "12345"} and s.tags == ("cohort-a", "cohort-b")
    with pytest.raises(pml.NotFoundError):
        project.subject("nobody")


def test_events_are_emitted_after_commit(project, seg):
    seen = []
    project.observe(lambda change: seen.append((change.kind, change.model_id, change.example_ids)))
    ex = project.add_example(seg, image())
    project.save_label(ex, mask=np.zeros(ex.shape, np.uint8))
    project.submit_label(ex)
    project.delete_label(ex)
    project.rename_model(seg, "x")
    kinds = [k for k, _, _ in seen]
    assert kinds == ["examples_added", "label_saved", "label_submitted", "label_deleted", "model_updated"]
    assert seen[1] == ("label_saved", seg.id, (ex.id,))
    # a batch commits once and tells observers afterwards; a failed batch tells nothing
    seen.clear()
    with project.batch():
        project.add_example(seg, image())
        project.add_example(seg, image(seed=2))
        assert seen == []
    assert [k for k, _, _ in seen] == ["examples_added", "examples_added"]
    seen.clear()
    with pytest.raises(RuntimeError), project.batch():
        project.add_example(seg, image(seed=3))
        raise RuntimeError("boom")
    assert seen == []
    assert len(project.examples(seg)) == 3


def test_a_failing_observer_does_not_undo_or_hide(project, seg):
    def broken(change):
        raise ValueError("view bug")

    project.observe(broken)
    with pytest.warns(UserWarning, match="view bug"):
        ex = project.add_example(seg, image())
    assert project.example(ex).id == ex.id
    project.unobserve(broken)


def test_snapshot_and_run_record(project, seg):
    exs = project.add_examples(seg, [image(4, 4, seed=i) for i in range(12)], subjects=[f"p{i}" for i in range(12)])
    zero = np.zeros((4, 4), np.uint8)
    for ex in exs[:8]:
        project.submit_label(ex, mask=zero)
    project.save_label(exs[8], mask=zero)  # drafts are never used
    run = project.create_run(seg, hyperparameters={"lr": 0.01})
    assert run.status == "queued" and run.slug == "run-1" and run.hyperparameters == {"lr": 0.01}
    frozen = {eid for items in run.snapshot.values() for eid, _ in items}
    assert frozen == {e.id for e in exs[:8]}
    for split, items in run.snapshot.items():
        assert all(project.example(eid).split == split for eid, _ in items)
    project.submit_label(exs[9], mask=zero)
    assert project.run(run.id).snapshot == run.snapshot  # frozen
    assert project.create_run(seg).slug == "run-2"
    assert [r.slug for r in project.runs(seg)] == ["run-1", "run-2"]


def _truncated_png(folder):
    from PIL import Image

    path = folder / "truncated.png"
    Image.fromarray(image(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    return path


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda p, s, e: p.create_model("lesion SEGMENTATION", problem_type="classification", classes=["a", "b"]),
            "exists",
        ),
        (lambda p, s, e: p.create_model("x", problem_type="detection", classes=["a", "b"]), "problem_type"),
        (lambda p, s, e: p.create_model("x", problem_type="segmentation", classes=["a", "A"]), "twice"),
        (lambda p, s, e: p.create_model("x", problem_type="segmentation", classes=["a"]), "at least 2"),
        (lambda p, s, e: p.create_model("", problem_type="segmentation", classes=["a", "b"]), "non-empty"),
        (lambda p, s, e: p.submit_label(e, mask=np.zeros((5, 5), np.uint8)), "shape"),
        (lambda p, s, e: p.submit_label(e, mask=np.zeros((24, 32), np.float32)), "dtype"),
        (lambda p, s, e: p.submit_label(e, mask=np.full((24, 32), 7, np.uint8)), r"\[7\]"),
        (lambda p, s, e: p.submit_label(e, mask=np.full((24, 32), -1, np.int16)), r"\[-1\]"),
        (lambda p, s, e: p.submit_label(e, mask=[[0]]), "numpy array"),
        (lambda p, s, e: p.submit_label(e), "no mask yet"),
        (lambda p, s, e: p.submit_label(e, classes=[1]), "is a mask"),
        (lambda p, s, e: p.submit_label("ex_doesnotexist", mask=np.zeros((2, 2))), "no example"),
        (lambda p, s, e: p.add_example("no such model", image()), "no model"),
        (lambda p, s, e: p.add_example(s, np.zeros((0, 5), np.uint8)), "empty"),
        (lambda p, s, e: p.add_example(s, np.full((5, 5), np.nan)), "NaN"),
        (lambda p, s, e: p.add_example(s, _truncated_png(p.path.parent)), "truncated"),
        (lambda p, s, e: p.add_examples(s, [image(), np.zeros((2, 2, 7))]), "image 1 has shape"),
        (lambda p, s, e: p.add_example(s, image(), split="holdout"), "split"),
        (lambda p, s, e: p.rename_model(s, "   "), "non-empty"),
        (lambda p, s, e: p.add_class(s, "lesion"), "twice"),
        (lambda p, s, e: p.add_class(s, "x", color="red"), "#rrggbb"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(project, seg, call, error):
    project.create_model("Other", problem_type="classification", classes=["a", "b"])
    ex = project.add_example(seg, image())
    before = tree_digest(project.path)
    with pytest.raises(pml.PatientMLError, match=error):
        call(project, seg, ex)
    assert tree_digest(project.path) == before


def test_a_clean_failure_inside_a_batch_keeps_the_rest(project, seg):
    with project.batch():
        good = project.add_example(seg, image())
        with pytest.raises(pml.ValidationError):
            project.submit_label(good, mask=np.zeros((1, 1), np.uint8))  # refused before it wrote anything
    assert project.example(good).id == good.id


def test_a_half_done_failure_inside_a_batch_saves_none_of_it(project, seg, monkeypatch):
    keep = project.add_example(seg, image())
    original = project.session.store.put

    def put_then_crash(table, record_id, record):
        original(table, record_id, record)
        if table == "labels":
            raise OSError("disk vanished")

    with pytest.raises(pml.StoreError, match="none of the batch"), project.batch():
        project.add_example(seg, image(seed=5))
        monkeypatch.setattr(project.session.store, "put", put_then_crash)
        with pytest.raises(OSError):
            project.submit_label(keep, mask=np.zeros(keep.shape, np.uint8))
        monkeypatch.setattr(project.session.store, "put", original)
    assert [e.id for e in project.examples(seg)] == [keep.id]
    assert project.label(keep) is None


def test_records_handed_out_are_copies(project, seg):
    ex = project.add_example(seg, image(), source={"scanner": "A"})
    ex.source["scanner"] = "tampered"
    assert project.example(ex).source == {"scanner": "A"}
    project.add_subject("p1", external_ids={"PatientID": "1"})
    project.subject("p1").external_ids["PatientID"] = "2"
    assert project.subject("p1").external_ids == {"PatientID": "1"}


def test_threads_writing_through_one_project(project, seg):
    import threading

    exs = project.add_examples(seg, [image(4, 4, seed=i) for i in range(8)])
    seen = []
    project.observe(lambda change: seen.append(change.example_ids))

    def work(part):
        for ex in part:
            project.submit_label(ex, mask=np.zeros((4, 4), np.uint8))

    threads = [threading.Thread(target=work, args=(exs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert project.status_counts(seg)["labeled"] == 8
    assert sorted(ids[0] for ids in seen) == sorted(e.id for e in exs)


def test_subject_changes_name_the_subject(project):
    seen = []
    project.observe(seen.append)
    project.add_subject("p9")
    assert seen[-1].kind == "subject_changed" and seen[-1].subject_id == "p9"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.lists(SUBJECT_IDS, min_size=1, max_size=8),
    later=st.lists(SUBJECT_IDS, min_size=1, max_size=8),
)
def test_splits_are_stable_as_data_grows(tmp_path_factory, first, later):
    project = pml.Project.open(tmp_path_factory.mktemp("p") / "s")
    model = project.create_model("m", problem_type="classification", classes=["a", "b"])
    tiny = [np.zeros((2, 2), np.uint8)]
    before = {project.add_examples(model, tiny, subjects=[s])[0].id for s in first}
    splits = {e.id: e.split for e in project.examples(model)}
    for s in later:
        project.add_examples(model, tiny, subjects=[s])
    after = project.examples(model)
    assert {e.id: e.split for e in after if e.id in before} == splits  # nothing moved
    by_subject = {}
    for e in after:
        by_subject.setdefault(e.subject_id, set()).add(e.split)
    assert all(len(s) == 1 for s in by_subject.values())  # no subject spans two splits
