"""The platform views driven as the browser would: table messages, trait changes, button clicks."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import update_run_with_weights

from patientml_widgets import imaging
from patientml_widgets.widgets import DataTable, ExampleBrowser, ModelTable, PatientMLApp, RunsTable, SubjectViewer


def click_row(table, row_id):
    table._handle_message(table, {"kind": "row_click", "id": row_id}, [])


def press(table, key):
    table._handle_message(table, {"kind": "action", "key": key}, [])


def submit(canvas, mask=None, value=None):
    content = {"kind": "submit"}
    buffers = []
    if mask is not None:
        buffers = [memoryview(imaging.encode_mask_wire(mask))]
    if value is not None:
        content["value"] = value
    canvas._handle_message(canvas, content, buffers)


def test_data_table_pages_sorts_filters_server_side():
    data = [{"_id": str(i), "n": i, "name": f"row {i:03d}"} for i in range(120)]
    calls = []

    def fetch(page, size, sort, descending, active_filter):
        calls.append((page, size, sort, descending, active_filter))
        rows = [r for r in data if active_filter != "even" or r["n"] % 2 == 0]
        if sort:
            rows = sorted(rows, key=lambda r: r[sort], reverse=descending)
        return rows[page * size : (page + 1) * size], len(rows), [{"key": "even", "label": "Even", "count": 60}]

    table = DataTable(
        fetch, [{"key": "name", "label": "Name", "sortable": True}, {"key": "n", "label": "N", "type": "number"}]
    )
    assert table.total == 120 and len(table.rows) == 50 and table.filters[0]["count"] == 60
    table.page = 2
    assert [r["n"] for r in table.rows] == list(range(100, 120))
    table.sort = {"key": "n", "descending": True}
    assert table.rows[0]["n"] == 119 - 100  # still on page 2 of the new order
    table.page, table.active_filter = 0, "even"
    assert table.total == 60 and all(r["n"] % 2 == 0 for r in table.rows)
    table.page = 5  # past the end (e.g. rows vanished): back to the last page
    assert table.page == 1
    with pytest.raises(ValueError, match="column type"):
        DataTable(fetch, [{"key": "x", "label": "x", "type": "sparkline"}])
    table._handle_message(table, {"kind": "hack"}, [])
    assert "unknown message" in table.error


def test_a_failing_fetch_is_shown():
    def fetch(*_):
        raise RuntimeError("database on fire")

    table = DataTable(fetch, [{"key": "x", "label": "x"}])
    assert "database on fire" in table.error


def test_model_table_rows_badges_new_model_and_details(demo):
    table = ModelTable(demo)
    rows = {r["name"]: r for r in table.table.rows}
    assert rows["Skin lesion segmentation"]["problem_type"] == "Semantic segmentation"
    assert rows["Lesion type"]["status"] == {"text": "Not Deployed", "tone": "gray"}
    press(table.table, "new")
    assert table.form.layout.display == ""
    table.form.name_input.value = "Nodules"
    table.form.problem_type_input.value = "segmentation"
    table.form.classes_input.value = "background\nnodule #00aa00\n\n"
    model = table.form.create()
    assert model.class_names == ["background", "nodule"] and model.classes[1].color == "#00aa00"
    assert "Nodules" in [r["name"] for r in table.table.rows] and table.form.layout.display == "none"
    table.form.name_input.value = "nodules"  # duplicate name: a clear error in the form
    assert table.form.create() is None and "already exists" in table.form.notice.value
    click_row(table.table, model.id)
    details = table.details.children[0]
    assert [details.tabs.get_title(i) for i in range(3)] == ["Examples", "Runs", "Metrics"]
    assert details.tabs.selected_index == 0


def test_example_browser_filters_counts_sort_and_status_icons(demo):
    seg = demo.model("Skin lesion segmentation")
    browser = ExampleBrowser(demo, seg, page_size=20)
    table = browser.table
    counts = {f["key"]: f["count"] for f in table.filters if not f["key"].startswith("review:")}
    assert counts == demo.status_counts(seg)
    table.active_filter = "draft"
    assert table.total == counts["draft"] and {r["status"] for r in table.rows} == {"circle"}
    table.active_filter = "labeled"
    assert {r["status"] for r in table.rows} == {"check-circle"}
    table.active_filter = ""
    table.sort = {"key": "status", "descending": False}
    assert table.rows[0]["status"] == ""  # unlabeled first
    table.sort = {"key": "subject_id", "descending": True}
    subjects = [r["subject_id"] for r in table.rows]
    assert subjects == sorted(subjects, reverse=True)
    assert all(isinstance(r["thumbnail"], bytes) and r["thumbnail"][:2] == b"\xff\xd8" for r in table.rows)


def test_labeling_from_the_browser_advances_and_the_table_follows(demo):
    seg = demo.model("Skin lesion segmentation")
    browser = ExampleBrowser(demo, seg)
    browser.table.active_filter = "unlabeled"
    first, second = browser.table.rows[0]["_id"], browser.table.rows[1]["_id"]
    click_row(browser.table, first)
    assert browser.example.id == first and browser.canvas is not None
    mask = np.zeros(browser.example.shape, np.uint8)
    mask[30:60, 30:60] = 1
    submit(browser.canvas, mask)
    assert demo.label(first).status == "submitted"
    assert browser.example.id == second  # submitting advanced to the next in the current order
    browser.previous()
    assert browser.example.id == first
    browser.next_unlabeled()
    assert browser.example.id == second
    browser.back()
    assert browser.canvas is None and first not in [r["_id"] for r in browser.table.rows]
    assert {f["key"]: f["count"] for f in browser.table.filters}["labeled"] == demo.status_counts(seg)["labeled"]


def test_views_refresh_on_changes_from_elsewhere(demo, tmp_path):
    seg = demo.model("Skin lesion segmentation")
    browser = ExampleBrowser(demo, seg)
    before = {f["key"]: f["count"] for f in browser.table.filters}["labeled"]
    # another view in this kernel
    ex = demo.examples(seg, status="unlabeled", limit=1)[0]
    demo.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
    assert {f["key"]: f["count"] for f in browser.table.filters}["labeled"] == before + 1
    # another process, picked up by the table's periodic poll
    script = textwrap.dedent(
        f"""
        import numpy as np, patientml_widgets as pml
        p = pml.Project.open({str(demo.path)!r}, create=False)
        m = p.model("Skin lesion segmentation")
        ex = p.examples(m, status="unlabeled", limit=1)[0]
        p.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    browser.table._handle_message(browser.table, {"kind": "poll"}, [])
    assert {f["key"]: f["count"] for f in browser.table.filters}["labeled"] == before + 2


def test_runs_table_shows_runs_and_the_deployed_badge(demo):
    seg = demo.model("Skin lesion segmentation")
    runs = RunsTable(demo, seg)
    assert runs.table.total == 0 and "No runs yet" in runs.table.empty_message
    run = demo.create_run(seg)
    update_run_with_weights(demo, run.id, b"weights", status="succeeded", started=run.created, ended=run.created,
                            spec={"objective": "dice_mean"}, metrics={"test": {"dice_mean": 0.875}})  # fmt: skip
    row = runs.table.rows[0]
    assert row["status"]["name"] == "succeeded" and row["objective"] == 0.875 and row["deployed"] is None
    assert row["examples"] == " / ".join(str(len(run.snapshot[s])) for s in ("train", "val", "test"))
    click_row(runs.table, run.id)
    details = runs.details.children[0]
    assert "run-1" in details.summary.value and details.deploy_button.disabled is False
    details.deploy_button.click()
    assert demo.model(seg).deployed and runs.table.rows[0]["deployed"] == {"text": "Deployed", "tone": "green"}


def test_train_now_without_labels_says_why(project):
    model = project.create_model("m", problem_type="segmentation", classes=["bg", "fg"])
    runs = RunsTable(project, model)
    press(runs.table, "train")
    assert "no submitted labels" in runs.notice.value


def test_app_navigates_models_details_and_back(demo):
    app = PatientMLApp(demo)
    seg = demo.model("Skin lesion segmentation")
    click_row(app.models.table, seg.id)
    assert app.details is not None and app.children[1] is app.details
    assert "Skin lesion segmentation" in app.crumbs.children[1].value
    app.crumbs.children[0].click()
    assert app.details is None and app.children[1] is app.models


def test_user_strings_are_escaped_in_html(demo):
    evil = '<img src=x onerror="alert(1)">'
    model = demo.create_model(evil, problem_type="classification", classes=["a", "b"], description="<b>bold</b>")
    app = PatientMLApp(demo)
    click_row(app.models.table, model.id)
    html = app.crumbs.children[1].value + app.details.header.value
    assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_subject_viewer_labels_in_place(demo):
    viewer = SubjectViewer(demo, "patient-003")
    models = {r["model"] for r in viewer.table.rows}
    assert models == {"Skin lesion segmentation", "Lesion type"}
    row = next(r for r in viewer.table.rows if r["model"] == "Lesion type")
    click_row(viewer.table, row["_id"])
    assert viewer.canvas.mode == "classification"
    submit(viewer.canvas, value=[1])
    assert demo.label(row["_id"]).classes == (1,) and demo.label(row["_id"]).status == "submitted"
    viewer.back()
    assert next(r for r in viewer.table.rows if r["_id"] == row["_id"])["status"] == "check-circle"


@pytest.mark.slow
def test_with_a_deployed_model_uncertain_first_and_disagreement_filter(demo):
    kind = demo.model("Lesion type")
    run = demo.train(kind, hyperparameters={"epochs": 1, "image_size": 32, "base_channels": 4}).wait(timeout=120)
    assert run.status == "succeeded" and demo.model(kind).deployed
    browser = ExampleBrowser(demo, kind)
    assert browser.table.actions == [{"key": "uncertain", "label": "Most uncertain first"}]
    assert "disagrees" in [f["key"] for f in browser.table.filters]
    browser.table.active_filter = "unlabeled"
    press(browser.table, "uncertain")
    order = [r["_id"] for r in browser.table.rows]
    scores = [demo.predict(kind, i).uncertainty for i in order]
    assert len(order) == min(50, demo.status_counts(kind)["unlabeled"])
    assert scores[0] == max(scores)  # the least sure first...
    assert scores[:9] == sorted(scores[:9], reverse=True)  # ...with every tenth place drawn at random
    browser.table.sort = {"key": "created", "descending": False}
    browser.table.active_filter = "disagrees"
    names = {c.index: c.name for c in kind.classes}
    for row in browser.table.rows:
        assert demo.predict(kind, row["_id"]).classes != [names[i] for i in demo.label(row["_id"]).classes]
    assert browser.table.total == sum(
        demo.predict(kind, e.id).classes != [names[i] for i in demo.label(e).classes]
        for e in demo.examples(kind, status="labeled")
    )


def test_closing_views_stops_them_following_the_project(demo):
    baseline = len(demo.session.observers)
    app = PatientMLApp(demo)
    seg = demo.model("Skin lesion segmentation")
    for _ in range(3):  # navigating back and forth does not pile up listeners
        click_row(app.models.table, seg.id)
        app.home()
    assert len(demo.session.observers) == baseline + 1  # the model table's
    viewer = SubjectViewer(demo, "patient-001")
    app.close()
    viewer.close()
    assert len(demo.session.observers) == baseline
