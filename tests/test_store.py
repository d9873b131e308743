import os
import threading

import numpy as np
import orjson
import pytest
from helpers import tree_digest

import patientml_widgets as pml
from patientml_widgets.store import SCHEMA_VERSION, Store
from patientml_widgets.store.files import atomic_write, remove_abandoned, scratch_folder


def run(run_id, **fields):
    return {"id": run_id, "model_id": "m", "status": "queued", **fields}


def manifest(path):
    return orjson.loads((path / "patientml.json").read_bytes())


def shard_file(path, name):
    return path / "tables" / manifest(path)["files"][name]


def test_a_new_project_records_its_schema_and_commit_counter(tmp_path):
    store = Store(tmp_path / "p")
    meta = manifest(tmp_path / "p")
    assert meta["schema_version"] == 2 and meta["commit"] == 0 and meta["files"] == {}
    with store.transaction():
        store.put("runs", "r", run("r"))
    assert manifest(tmp_path / "p")["commit"] == 1 == store.commit
    with store.transaction():  # a transaction that changes nothing commits nothing
        store.get("runs", "r")
    assert manifest(tmp_path / "p")["commit"] == 1


def test_a_project_with_members_or_readings_is_schema_3_which_older_versions_refuse(tmp_path, monkeypatch):
    plain, team, reading = (pml.Project.open(tmp_path / n, user="olga") for n in ("plain", "team", "reading"))
    for project in (plain, team, reading):
        project.create_model("m", problem_type="segmentation", classes=["background", "lesion"])
    team.add_member("ana", "labeler")
    reading.add_examples("m", [np.zeros((4, 4), np.uint8)])
    reading.configure_reading("m", readers=2, pool=["ana", "ben"])
    assert [manifest(p.path)["schema_version"] for p in (plain, team, reading)] == [2, 3, 3]
    team.remove_member("ana")  # once a team project, always: an old version could not tell what it lost
    assert manifest(team.path)["schema_version"] == 3
    import patientml_widgets.store.store as store_module

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)  # a version from before teams
    assert pml.Project.open(plain.path, create=False).models()
    for project in (team, reading):
        with pytest.raises(pml.SchemaError, match="newer patientml-widgets"):
            pml.Project.open(project.path, create=False)


def test_a_store_written_by_a_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "p")
    (tmp_path / "p" / "patientml.json").write_bytes(orjson.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(pml.SchemaError, match="newer patientml-widgets"):
        pml.Project.open(tmp_path / "p")


def test_damaged_files_give_clear_errors(tmp_path):
    Store(tmp_path / "p")
    (tmp_path / "p" / "patientml.json").write_bytes(b"{not json")
    with pytest.raises(pml.StoreError, match=r"damaged.*check"):
        Store(tmp_path / "p")
    store = Store(tmp_path / "q")
    with store.transaction():
        store.put("runs", "r1", run("r1"))
    shard_file(tmp_path / "q", "runs").write_bytes(b'{"runs": {"r1": ')
    with pytest.raises(pml.StoreError, match=r"runs\.1\.json is not valid JSON.*--repair"):
        Store(tmp_path / "q").get("runs", "r1")


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
        store.put("runs", "a", run("a", v=1))
    before = tree_digest(tmp_path / "p")
    with pytest.raises(RuntimeError), store.transaction():
        store.put("runs", "a", run("a", v=2))
        store.put("labels", "b", {"example_id": "b", "model_id": "m", "status": "draft", "version": 1})
        store.put_blob(b"new bytes", "bin")
        store.log({"action": "never"})
        raise RuntimeError
    assert store.get("runs", "a")["v"] == 1 and store.get("labels", "b") is None
    assert Store(tmp_path / "p").get("runs", "a")["v"] == 1
    assert store.audit.events() == []
    assert tree_digest(tmp_path / "p") == before  # every byte as it was: the new blob went too


def test_a_value_that_is_not_json_is_refused_before_anything_is_written(tmp_path):
    import numpy as np

    store = Store(tmp_path / "p")
    with pytest.raises(pml.ValidationError, match="JSON"), store.transaction():
        store.put("runs", "a", run("a"))
        store.put("runs", "b", run("b", n=np.int64(3)))
    assert store.get("runs", "a") is None and manifest(tmp_path / "p")["commit"] == 0


def test_writes_outside_a_transaction_are_refused(tmp_path):
    store = Store(tmp_path / "p")
    with pytest.raises(pml.StoreError, match="transaction"):
        store.put("models", "x", {})
    with pytest.raises(pml.StoreError, match="transaction"):
        store.put_blob(b"x", "bin")


def test_nested_transactions_commit_once(tmp_path):
    store = Store(tmp_path / "p")
    other = Store(tmp_path / "p")
    with store.transaction():
        store.put("runs", "r", run("r", n=1))
        with store.transaction():
            store.put("runs", "r", run("r", n=2))
        assert other.get("runs", "r") is None  # not yet committed
    assert store.commit == 1
    assert other.get("runs", "r") is None  # other reads the commit it last saw...
    assert other.refresh() and other.external_changes == 1  # ...until it looks at the counter
    assert other.get("runs", "r")["n"] == 2


def test_a_failed_nested_call_that_wrote_dooms_the_batch(tmp_path):
    store = Store(tmp_path / "p")
    with pytest.raises(pml.StoreError, match="none of the batch"), store.transaction():
        store.put("runs", "a", run("a"))
        try:
            with store.transaction():
                store.put("runs", "b", run("b"))
                raise ValueError("half-way")
        except ValueError:
            pass
    assert store.get("runs", "a") is None and store.commit == 0


def test_shard_files_are_tinydb_documents(tmp_path):
    from tinydb import Query, TinyDB

    from patientml_widgets.store.storage import open_tinydb

    store = Store(tmp_path / "p")
    record = {"id": "m1", "name": "x", "problem_type": "segmentation", "classes": []}
    with store.transaction():
        store.put("models", "m1", record)
    path = shard_file(tmp_path / "p", "models")
    with TinyDB(path) as db:  # stock TinyDB reads them
        assert db.tables() == {"models"}
        assert db.storage.read() == {"models": {"m1": record}}
    db = open_tinydb(path)  # and can query them
    assert db.table("models").search(Query().name == "x") == [record]
    with pytest.raises(pml.StoreError, match="through Project"):
        db.storage.write({})


def test_threads_writing_at_once_lose_nothing(tmp_path):
    store = Store(tmp_path / "p")

    def work(k):
        for _i in range(25):
            with store.transaction():
                rec = store.get("runs", "counter") or run("counter", n=0)
                store.put("runs", "counter", {**rec, "n": rec["n"] + 1})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Store(tmp_path / "p").get("runs", "counter")["n"] == 100


def test_uncommitted_audit_bytes_are_never_read_and_the_next_writer_cuts_them(tmp_path):
    store = Store(tmp_path / "p")
    with store.transaction():
        store.log({"n": 1})
    with open(tmp_path / "p" / "audit.jsonl", "ab") as f:
        f.write(b'{"n": 2}\n{"n": 3, "trunc')  # a process killed after appending, before its manifest
    assert [e["n"] for e in Store(tmp_path / "p").audit.events()] == [1]
    with store.transaction():
        store.log({"n": 4})
    assert (tmp_path / "p" / "audit.jsonl").read_bytes() == b'{"n":1}\n{"n":4}\n'
    assert [e["n"] for e in Store(tmp_path / "p").audit.events()] == [1, 4]


def test_a_damaged_committed_audit_line_is_an_error_not_a_shorter_history(tmp_path):
    store = Store(tmp_path / "p")
    with store.transaction():
        store.log({"example_id": "e1", "version": 1})
        store.log({"example_id": "e1", "version": 2})
    raw = (tmp_path / "p" / "audit.jsonl").read_bytes()
    (tmp_path / "p" / "audit.jsonl").write_bytes(raw.replace(b'"version":1', b'"version"!1'))  # same length
    with pytest.raises(pml.StoreError, match=r"line 1 of .*audit\.jsonl is damaged.*--repair"):
        Store(tmp_path / "p").audit.events()
    (tmp_path / "p" / "audit.jsonl").write_bytes(raw[:10])
    with pytest.raises(pml.StoreError, match="shorter than the project's commits say"):
        Store(tmp_path / "p").audit.for_example("e1")


def test_the_audit_log_reads_only_what_was_committed_since(tmp_path):
    writer, reader = Store(tmp_path / "p"), Store(tmp_path / "p")
    assert reader.audit.events() == []
    with writer.transaction():
        writer.log({"example_id": "e1", "v": 1})
        writer.log({"example_id": "e2", "v": 1})
    reader.refresh()
    assert [e["v"] for e in reader.audit.for_example("e1")] == [1]
    with writer.transaction():
        writer.log({"example_id": "e1", "v": 2})
    reader.refresh()
    assert [e["v"] for e in reader.audit.for_example("e1")] == [1, 2]
    assert len(reader.audit.events()) == 3


def test_a_replaced_shard_file_stays_readable_for_a_reader_that_lags(tmp_path):
    writer, reader = Store(tmp_path / "p"), Store(tmp_path / "p")
    with writer.transaction():
        writer.put("runs", "r", run("r", n=1))
    reader.refresh()
    old_file = shard_file(tmp_path / "p", "runs")
    with writer.transaction():
        writer.put("runs", "r", run("r", n=2))
    assert old_file.exists()  # retired, not deleted: the reader's commit still names it
    assert reader.get("runs", "r")["n"] == 1  # a whole old commit...
    reader.refresh()
    assert reader.get("runs", "r")["n"] == 2  # ...or a whole new one


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_blob_refs_are_checked_and_a_missing_blob_is_damage(tmp_path):
    store = Store(tmp_path / "p")
    with store.transaction():
        ref = store.put_blob(b"hello", "bin")
        assert store.put_blob(b"hello", "bin") == ref
        store.put("runs", "r", run("r", artifact_ref=ref))
    assert store.blobs.get(ref) == b"hello"
    with store.transaction():
        orphan = store.put_blob(b"nothing refers to me", "bin")
    assert not store.blobs.exists(orphan)  # a commit keeps no blob it does not refer to
    with pytest.raises(pml.StoreError, match="not a blob reference"):
        store.blobs.get("../../etc/passwd")
    with pytest.raises(pml.StoreError, match=r"is missing.*check"):
        store.blobs.get("0" * 64 + ".png")


def test_scratch_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    with scratch_folder(tmp_path, ".import-") as live:
        (live / "patient.png").write_bytes(b"x")
        dead = tmp_path / ".import-dead"
        dead.mkdir()
        (dead / ".in-use").write_bytes(b"")  # its process held the lock, then was killed
        young = tmp_path / ".import-starting"
        young.mkdir()  # no lock yet: being set up right now
        assert remove_abandoned(tmp_path, ".import-") == 1
        assert live.exists() and young.exists() and not dead.exists()
        os.utime(young, (0, 0))
        assert remove_abandoned(tmp_path, ".import-") == 1 and not young.exists()
    assert not live.exists()


def test_a_schema_1_project_is_migrated_with_everything_it_committed(tmp_path):
    import numpy as np

    project = pml.Project.open(tmp_path / "old", user="tester")
    seg = project.create_model("Seg", problem_type="segmentation", classes=["bg", "fg"])
    exs = project.add_examples(seg, [np.full((4, 4), i, np.uint8) for i in range(5)])
    for ex in exs:
        project.submit_label(ex, mask=np.eye(4, dtype=np.uint8))
    before = {ex.id: (project.label(ex), project.history(ex)) for ex in exs}
    root = project.path
    meta = manifest(root)
    for name, file in meta["files"].items():  # the schema-1 layout: tables/<shard>.json, single-line documents
        table = name.split("-")[0]
        (root / "tables" / f"{name}.json").write_bytes(
            orjson.dumps({table: orjson.loads((root / "tables" / file).read_bytes())[table]})
        )
    for path in (root / "tables").glob("*.*.json"):
        path.unlink()
    (root / "patientml.json").write_bytes(orjson.dumps({"schema_version": 1, "created": meta["created"]}))
    audit = (root / "audit.jsonl").read_bytes().splitlines(keepends=True)
    (root / "audit.jsonl").write_bytes(b"".join([audit[0], b'{"torn": \n', *audit[1:]]))  # a schema-1 kill
    (root / "tables" / ".labels-03.json.77.tmp").write_bytes(b"{")
    migrated = pml.Project.open(root)
    assert manifest(root)["schema_version"] == 2
    assert {ex.id: (migrated.label(ex), migrated.history(ex)) for ex in exs} == before
    assert len(migrated.audit()) == len(audit)
    assert not (root / "tables" / ".labels-03.json.77.tmp").exists()
    migrated.submit_label(exs[0], mask=np.zeros((4, 4), np.uint8))  # the first commit retires the old names
    assert pml.Project.open(root).label(exs[0]).version == 2


def test_records_are_read_one_line_at_a_time_whatever_their_ids(tmp_path):
    from patientml_widgets.store.storage import Records, encode_shard, load_shard

    records = {
        "plain": {"id": "plain", "note": "a,\nb"},
        'qu"ote': {"id": 'qu"ote'},
        "back\\slash": {"id": "back\\slash"},
        "ünï": {"id": "ünï"},
    }
    raw = encode_shard("subjects", Records.of(records, "subjects"))
    assert orjson.loads(raw) == {"subjects": records}  # a plain JSON (TinyDB) document
    lazy = load_shard(raw, "subjects", "x")
    assert lazy["back\\slash"] == records["back\\slash"] and 'qu"ote' in lazy and "nope" not in lazy
    assert dict(lazy) == records and list(lazy) == list(records)
    assert encode_shard("subjects", lazy) == raw  # unchanged lines are written as they were read
    del lazy["plain"]
    assert orjson.loads(encode_shard("subjects", lazy))["subjects"] == {
        k: v for k, v in records.items() if k != "plain"
    }
    empty = encode_shard("subjects", Records("subjects", "x"))
    assert orjson.loads(empty) == {"subjects": {}} and len(load_shard(empty, "subjects", "x")) == 0


def test_query_columns_never_keep_what_a_transaction_that_failed_changed(project, seg):
    """A shard's records are read when a column first needs them; if a transaction changed them in between,
    that column is neither cached nor kept once the transaction is undone."""
    import shutil

    import numpy as np

    exs = project.add_examples(seg, [np.full((4, 4), i, np.uint8) for i in range(12)], subjects=["b", "a"] * 6)
    expected = [e.id for e in project.examples(seg, sort="subject_id")]
    reader = pml.Project.open(project.path)
    assert reader.status_counts(seg)["unlabeled"] == 12
    stale = list(reader.session.index._blocks.values())  # no records read yet: the columns came from the cache
    shutil.rmtree(project.path / ".cache")
    store = reader.session.store
    with pytest.raises(RuntimeError), store.transaction():
        for ex in exs[::2]:
            store.put("examples", ex.id, {**store.get("examples", ex.id), "subject_id": "0"})  # first, not last
        for block in stale:  # a reader in another thread, between the change and the undo
            block.column("subject_id")
        raise RuntimeError("undo")
    assert [e.id for e in reader.examples(seg, sort="subject_id")] == expected
    assert [e.id for e in pml.Project.open(project.path).examples(seg, sort="subject_id")] == expected


def test_query_columns_cached_next_to_the_shards_give_the_same_answers(project, seg):
    import numpy as np

    exs = project.add_examples(seg, [np.full((4, 4), i, np.uint8) for i in range(40)], subjects=["b", "a"] * 20)
    for ex in exs[::3]:
        project.submit_label(ex, mask=np.zeros((4, 4), np.uint8))

    def answers(p):
        return (
            [e.id for e in p.examples(seg, sort="subject_id")],
            [e.id for e in p.examples(seg, status="labeled", sort="label_updated", descending=True)],
            p.status_counts(seg),
        )

    expected = answers(project)
    cache = project.path / ".cache"
    assert any(cache.rglob("*.npy"))
    assert answers(pml.Project.open(project.path)) == expected  # from the cache
    for path in list(cache.rglob("*.npy"))[::2]:
        path.write_bytes(path.read_bytes()[:40])  # torn or damaged: computed again
    assert answers(pml.Project.open(project.path)) == expected
    import shutil

    shutil.rmtree(cache)
    assert answers(pml.Project.open(project.path)) == expected
