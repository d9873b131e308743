import threading

import orjson
import pytest

import patientml_widgets as pml
from patientml_widgets.store import SCHEMA_VERSION, Store
from patientml_widgets.store.audit import AuditLog
from patientml_widgets.store.files import atomic_write


def test_a_new_project_records_its_schema(tmp_path):
    Store(tmp_path / "p")
    meta = orjson.loads((tmp_path / "p" / "patientml.json").read_bytes())
    assert meta["schema_version"] == SCHEMA_VERSION


def test_a_store_written_by_a_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "p")
    (tmp_path / "p" / "patientml.json").write_bytes(orjson.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(pml.SchemaError, match="newer patientml-widgets"):
        pml.Project.open(tmp_path / "p")


def test_damaged_files_give_clear_errors(tmp_path):
    store = Store(tmp_path / "p")
    (tmp_path / "p" / "patientml.json").write_bytes(b"{not json")
    with pytest.raises(pml.StoreError, match="damaged"):
        Store(tmp_path / "p")
    store = Store(tmp_path / "q")
    with store.transaction():
        store.put("models", "m1", {"id": "m1"})
    (tmp_path / "q" / "tables" / "models.json").write_bytes(b'{"models": {"m1": ')
    with pytest.raises(pml.StoreError, match=r"models\.json is not valid JSON"):
        Store(tmp_path / "q").get("models", "m1")


def test_opening_refuses_folders_that_are_not_projects(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"x")
    with pytest.raises(pml.StoreError, match="not empty"):
        pml.Project.open(tmp_path / "photos")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["cat.png"]
    with pytest.raises(pml.StoreError, match="not a patientml project"):
        pml.Project.open(tmp_path / "nothing-here", create=False)
    assert not (tmp_path / "nothing-here").exists()


def test_a_failed_transaction_leaves_memory_and_disk_as_they_were(tmp_path):
    store = Store(tmp_path / "p")
    with store.transaction():
        store.put("labels", "a", {"v": 1})
    with pytest.raises(RuntimeError), store.transaction():
        store.put("labels", "a", {"v": 2})
        store.put("labels", "b", {"v": 1})
        store.log({"action": "never"})
        raise RuntimeError
    assert store.get("labels", "a") == {"v": 1} and store.get("labels", "b") is None
    assert Store(tmp_path / "p").get("labels", "a") == {"v": 1}
    assert list(store.audit.events()) == []


def test_writes_outside_a_transaction_are_refused(tmp_path):
    store = Store(tmp_path / "p")
    with pytest.raises(pml.StoreError, match="transaction"):
        store.put("models", "x", {})


def test_nested_transactions_commit_once(tmp_path):
    store = Store(tmp_path / "p")
    other = Store(tmp_path / "p")
    with store.transaction():
        store.put("runs", "r", {"n": 1})
        with store.transaction():
            store.put("runs", "r", {"n": 2})
        assert other.get("runs", "r") is None  # not yet committed
    assert other.get("runs", "r") is None  # other's cache was empty: loads lazily...
    other.refresh()
    assert other.get("runs", "r") == {"n": 2}


def test_shard_files_are_tinydb_documents(tmp_path):
    from tinydb import Query, TinyDB

    from patientml_widgets.store.storage import open_tinydb

    store = Store(tmp_path / "p")
    with store.transaction():
        store.put("models", "m1", {"id": "m1", "name": "x"})
    with TinyDB(tmp_path / "p" / "tables" / "models.json") as db:  # stock TinyDB reads them
        assert db.tables() == {"models"}
        assert db.storage.read() == {"models": {"m1": {"id": "m1", "name": "x"}}}
    db = open_tinydb(tmp_path / "p" / "tables" / "models.json")  # and can query them
    assert db.table("models").search(Query().name == "x") == [{"id": "m1", "name": "x"}]


def test_threads_writing_at_once_lose_nothing(tmp_path):
    store = Store(tmp_path / "p")

    def work(k):
        for _i in range(25):
            with store.transaction():
                rec = store.get("runs", "counter") or {"n": 0}
                store.put("runs", "counter", {"n": rec["n"] + 1})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Store(tmp_path / "p").get("runs", "counter") == {"n": 100}


def test_a_torn_audit_line_is_skipped_and_does_not_swallow_the_next(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append([{"n": 1}])
    with open(tmp_path / "audit.jsonl", "ab") as f:
        f.write(b'{"n": 2, "trunc')  # a kill mid-append
    assert [e["n"] for e in log.events()] == [1]  # the torn line is not read...
    log.append([{"n": 3}])
    assert [e["n"] for e in log.events()] == [1, 3]  # ...and never glued to the next one
    assert [e["n"] for e in AuditLog(tmp_path / "audit.jsonl").events()] == [1, 3]


def test_the_audit_log_reads_only_what_was_appended(tmp_path):
    writer, reader = AuditLog(tmp_path / "a.jsonl"), AuditLog(tmp_path / "a.jsonl")
    assert reader.events() == []
    writer.append([{"example_id": "e1", "v": 1}, {"example_id": "e2", "v": 1}])
    assert [e["v"] for e in reader.for_example("e1")] == [1]
    writer.append([{"example_id": "e1", "v": 2}])
    assert [e["v"] for e in reader.for_example("e1")] == [1, 2]
    assert len(reader.events()) == 3


def test_an_uncommitted_audit_event_is_not_history(project, seg):
    import numpy as np

    ex = project.add_example(seg, np.zeros((4, 4), np.uint8))
    project.submit_label(ex, mask=np.zeros((4, 4), np.uint8))
    # as if a process died after appending its audit line but before committing the label
    project._store.audit.append([{"example_id": ex.id, "version": 2, "action": "submit", "actor": "ghost"}])
    assert [e["version"] for e in project.history(ex)] == [1]
    project.submit_label(ex, mask=np.ones((4, 4), np.uint8), author="real")
    assert [(e["version"], e["actor"]) for e in project.history(ex)] == [(1, "tester"), (2, "real")]


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_blob_refs_are_checked(tmp_path):
    store = Store(tmp_path / "p")
    ref = store.blobs.put(b"hello", "bin")
    assert store.blobs.get(ref) == b"hello" and store.blobs.put(b"hello", "bin") == ref
    with pytest.raises(pml.StoreError, match="not a blob reference"):
        store.blobs.get("../../etc/passwd")
    with pytest.raises(pml.NotFoundError):
        store.blobs.get("0" * 64 + ".png")
