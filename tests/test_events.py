"""Change events say what changed, so a view refreshes only what concerns it; getters never write."""

import socket

import numpy as np
from helpers import image

import patientml_widgets as pml
from patientml_widgets.widgets import ExampleBrowser, RunsTable


def test_changes_name_the_tables_they_wrote(project, seg):
    seen = []
    project.observe(seen.append)
    ex = project.add_example(seg, image())
    project.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
    run = project.create_run(seg)
    project.delete_example(ex)
    assert [(c.kind, c.tables) for c in seen] == [
        ("examples_added", ("examples",)),
        ("label_submitted", ("labels",)),
        ("run_created", ("runs",)),
        ("example_deleted", ("examples", "labels", "readings", "predictions")),
    ]
    assert seen[2].run_id == run.id and seen[1].touches("labels") and not seen[1].touches("runs")


def test_an_external_change_says_which_tables_moved(project, seg):
    ex = project.add_example(seg, image())
    other = pml.Project.open(project.path, user="other kernel")
    seen = []
    project.observe(seen.append)
    run = other.create_run(seg)
    other.session.update_run(run.id, progress={"step": 1})
    assert project.poll() and [(c.kind, c.tables) for c in seen] == [("external", ("runs",))]
    other.submit_label(ex, mask=np.ones(ex.shape, np.uint8))
    assert project.poll() and seen[-1].tables == ("labels",)
    assert not project.poll()  # nothing new: no event


def test_the_example_browser_ignores_what_it_does_not_show(demo):
    seg = demo.model("Skin lesion segmentation")
    browser = ExampleBrowser(demo, seg)
    runs = RunsTable(demo, seg)
    fetches = {"examples": 0, "runs": 0}
    for name, table in (("examples", browser.table), ("runs", runs.table)):
        fetch = table._fetch

        def counted(*args, fetch=fetch, name=name):
            fetches[name] += 1
            return fetch(*args)

        table._fetch = counted
    other = pml.Project.open(demo.path, user="trainer")  # a training worker, say
    run = other.create_run(seg)
    for step in range(3):
        other.session.update_run(run.id, progress={"step": step})
        demo.poll()
    assert fetches == {"examples": 0, "runs": 3}  # the run's progress concerns the runs table only
    ex = demo.examples(seg, status="unlabeled", limit=1)[0]
    other.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
    demo.poll()
    assert fetches["examples"] == 1 and fetches["runs"] == 3
    assert next(r for r in browser.table.rows if r["_id"] == ex.id)["status"] == "check-circle"


def test_reading_runs_writes_nothing_and_poll_reaps_a_dead_worker(project, seg):
    run = project.create_run(seg)
    project.session.update_run(run.id, status="running", worker={"pid": 2**22 + 12345, "host": socket.gethostname()})
    commit = project.session.store.commit
    assert [r.status for r in project.runs(seg)] == ["running"]  # a getter: no commit
    assert project.session.store.commit == commit
    project.poll()
    assert project.run(run.id).status == "failed" and "worker is gone" in project.run(run.id).error
