"""Several readers per example: assignment, blind readings with their own versions, the consensus, review,
adjudication, what trains, and agreement figures equal to reference implementations.
"""

import multiprocessing as mp

import numpy as np
import pytest
from helpers import as_user
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

import patientml_widgets as pml
from patientml_widgets import NotFoundError, PermissionDenied, ValidationError, agreement
from patientml_widgets.store.check import check, repair

POOL = ["ana", "ben", "cy"]


def box(top: int, left: int, size: int = 8, shape=(24, 24), cls: int = 1) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[top : top + size, left : left + size] = cls
    return m


@pytest.fixture
def team(tmp_path, monkeypatch):
    """Olga (owner) with reviewer rita and labelers ana, ben, cy; a segmentation model with 6 examples read by two."""
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    olga = pml.Project.open(tmp_path / "team", user="olga")
    model = olga.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    olga.add_examples(model, [np.full((24, 24), 10 * i, np.uint8) for i in range(6)])
    for user, role in (("rita", "reviewer"), *((r, "labeler") for r in POOL)):
        olga.add_member(user, role)
    olga.configure_reading(model, readers=2, pool=POOL)
    return olga


def readers_of(project, example) -> list[str]:
    return sorted(r for r in POOL if any(e.example.id == example.id for e in project.queue("Lesions", reader=r)))


def test_round_robin_gives_each_example_k_readers_and_each_reader_an_equal_share(team):
    examples = team.examples("Lesions")
    assert all(len(readers_of(team, ex)) == 2 for ex in examples)
    assert [team.queue_counts("Lesions", reader=r)["to do"] for r in POOL] == [4, 4, 4]
    team.add_examples("Lesions", [np.zeros((24, 24), np.uint8)] * 3)  # examples added later join the rotation
    assert [team.queue_counts("Lesions", reader=r)["to do"] for r in POOL] == [6, 6, 6]
    # by list: a reviewer assigns an extra reader; nobody is assigned twice
    rita = as_user(team, "rita")
    first = examples[0]
    extra = next(r for r in POOL if r not in readers_of(team, first))
    assert rita.assign(first, [extra, *POOL]) == 1
    assert readers_of(team, first) == POOL
    with pytest.raises(PermissionDenied, match="needs the reviewer role"):
        as_user(team, "ana").assign(first, ["ana"])
    with pytest.raises(ValidationError, match="pool of at least 2"):
        team.configure_reading("Lesions", readers=2, pool=["ana"])
    with pytest.raises(PermissionDenied, match="developer"):
        rita.configure_reading("Lesions", readers=3)


def test_each_reading_has_its_own_versions_and_audit_and_the_consensus_follows(team):
    ex = team.queue("Lesions", reader="ana")[0].example
    first, second = readers_of(team, ex)
    a, b = as_user(team, first), as_user(team, second)
    a.save_label(ex, mask=box(2, 2))
    a.submit_label(ex, mask=box(2, 2))
    assert team.label(ex) is None  # one of two readings in: no label yet
    b.submit_label(ex, mask=box(4, 4))
    label = team.label(ex)
    expected = agreement.majority_mask([box(2, 2), box(4, 4)])[0]
    assert label.source == "consensus" and label.readers == (first, second) and label.status == "submitted"
    assert np.array_equal(team.mask(ex), expected)
    assert label.agreement == pytest.approx(agreement.mask_agreement(box(2, 2), box(4, 4))["dice"], abs=1e-6)
    assert [(e["action"], e["version"], e["actor"]) for e in team.history(ex, reader=first)] == [
        ("save", 1, first), ("submit", 2, first)]  # fmt: skip
    assert [(e["action"], e["version"]) for e in team.history(ex)] == [("consensus", 1)]
    assert a.reading(ex).version == 2 and b.reading(ex).version == 1
    # a reader who takes their reading back takes the example's label with it
    a.delete_label(ex)
    assert team.label(ex) is None and team.examples("Lesions", status="unlabeled")[0] is not None
    assert a.queue("Lesions", state="to do")[0].example.id == ex.id
    with pytest.raises(PermissionDenied, match="not assigned to"):
        as_user(team, next(r for r in POOL if r not in (first, second))).submit_label(ex, mask=box(0, 0))


def test_blind_reading_hides_the_others_until_ones_own_is_submitted(team):
    ex = team.queue("Lesions", reader="ana")[0].example
    first, second = readers_of(team, ex)
    team.assign(ex, POOL)  # a third reader: the label exists before the last one reads
    third = next(r for r in POOL if r not in (first, second))
    as_user(team, first).submit_label(ex, mask=box(2, 2))
    as_user(team, second).submit_label(ex, mask=box(3, 3))
    late = as_user(team, third)
    assert [r.reader for r in late.readings(ex)] == [third]
    for peek in (
        lambda: late.reading(ex, first),
        lambda: late.label(ex),
        lambda: late.mask(ex),
        lambda: late.history(ex),
        lambda: late.history(ex, reader=second),
        lambda: late.reading_mask(ex, second),
    ):
        with pytest.raises(PermissionDenied, match="blind reading"):
            peek()
    late.save_label(ex, mask=box(9, 9))  # a draft is not a submit
    with pytest.raises(PermissionDenied):
        late.reading(ex, first)
    with pytest.raises(PermissionDenied, match="exporting the labels of a model read blind needs the reviewer"):
        late.export_labels("Lesions", team.path.parent / "export")
    late.submit_label(ex)
    assert [r.reader for r in late.readings(ex)] == sorted(POOL)
    assert np.array_equal(late.reading_mask(ex, first), box(2, 2))
    # not blind: everyone sees everything
    team.configure_reading("Lesions", blind=False)
    other = team.queue("Lesions", reader=third, state="to do")[0].example
    someone = next(r for r in readers_of(team, other) if r != third)
    as_user(team, someone).submit_label(other, mask=box(1, 1))
    assert late.reading(other, someone).status == "submitted"


def test_review_accepts_or_returns_with_a_comment_the_reader_sees(team):
    ex = team.queue("Lesions", reader="ana")[0].example
    first, second = readers_of(team, ex)
    a = as_user(team, first)
    a.submit_label(ex, mask=box(2, 2))
    rita = as_user(team, "rita")
    with pytest.raises(ValidationError, match="needs a comment"):
        rita.review(ex, "return", reader=first)
    with pytest.raises(PermissionDenied, match="reviewer"):
        as_user(team, second).review(ex, "accept", reader=first)
    rita.review(ex, "return", "the lesion reaches the edge", reader=first)
    entry = next(e for e in a.queue("Lesions") if e.example.id == ex.id)
    assert (entry.state, entry.comment) == ("returned", "the lesion reaches the edge")
    a.save_label(ex, mask=box(2, 2, size=10))  # working on it: the comment stays
    assert next(e for e in a.queue("Lesions") if e.example.id == ex.id).state == "returned"
    a.submit_label(ex)
    rita.review(ex, "accept", reader=first)
    assert next(e for e in a.queue("Lesions") if e.example.id == ex.id).state == "accepted"
    events = [e for e in team.history(ex, reader=first) if e["action"] in ("accept", "return")]
    assert [(e["action"], e["actor"], e["comment"]) for e in events] == [
        ("return", "rita", "the lesion reaches the edge"), ("accept", "rita", "")]  # fmt: skip
    assert team.reading(ex, first).author == first  # the label stays the reader's


def test_review_of_one_reader_models_and_the_reviewed_only_policy(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    owner = pml.Project.open(tmp_path / "p", user="olga")
    model = owner.create_model("Kind", problem_type="classification", classes=["benign", "malignant"])
    examples = owner.add_examples(model, [np.full((8, 8), i, np.uint8) for i in range(3)])
    owner.add_member("ana", "labeler")
    ana = as_user(owner, "ana")
    for ex in examples:
        ana.submit_label(ex, classes=["benign"])
    owner.review(examples[0], "accept")
    owner.review(examples[1], "return", "look again")
    assert owner.label(examples[1]).status == "draft" and owner.label(examples[1]).review["state"] == "returned"
    assert sum(len(v) for v in owner.snapshot(model).values()) == 2  # everything submitted trains
    owner.configure_reading(model, train_on="reviewed")
    snap = [i for items in owner.snapshot(model).values() for i, _ in items]
    assert snap == [examples[0].id]
    with pytest.raises(ValidationError, match="several readers"):
        owner.configure_reading(model, train_on="adjudicated")


def test_adjudication_queue_is_least_agreement_first_and_a_reviewer_settles_it(team):
    rita = as_user(team, "rita")
    shifts = {}
    for n, ex in enumerate(team.examples("Lesions")[:3]):
        for k, reader in enumerate(readers_of(team, ex)):
            as_user(team, reader).submit_label(ex, mask=box(2 + k * n, 2))
        shifts[ex.id] = n
    queue = rita.adjudication_queue("Lesions")
    assert [shifts[e.id] for e in queue] == [2, 1, 0]  # the most shifted (least agreement) first
    worst = queue[0]
    first = readers_of(team, worst)[0]
    label = rita.adjudicate(worst, reader=first, comment="the first reading follows the rim")
    assert label.source == "adjudicated" and label.review["state"] == "accepted" and label.author == "rita"
    assert np.array_equal(team.mask(worst), team.reading_mask(worst, first))
    # a later reading no longer moves an adjudicated label
    as_user(team, first).submit_label(worst, mask=box(0, 0))
    assert np.array_equal(team.mask(worst), box(2, 2))
    edited = rita.adjudicate(queue[1], mask=box(5, 5, size=4))
    assert edited.source == "adjudicated" and np.array_equal(team.mask(queue[1]), box(5, 5, size=4))
    assert [e.id for e in rita.adjudication_queue("Lesions")] == [queue[2].id]
    # returning the example sends every reading back
    rita.review(queue[2], "return", "both missed the second lesion")
    assert team.label(queue[2]) is None
    assert all(as_user(team, r).reading(queue[2]).status == "draft" for r in readers_of(team, queue[2]))
    with pytest.raises(NotFoundError):
        rita.adjudicate(queue[2], reader="nobody")

    # what trains
    def trained():
        return sorted(i for items in team.snapshot("Lesions").values() for i, _ in items)

    assert trained() == sorted([worst.id, queue[1].id])
    team.configure_reading("Lesions", train_on="adjudicated")
    assert trained() == sorted([worst.id, queue[1].id])
    ex = team.examples("Lesions")[4]
    for reader in readers_of(team, ex):
        as_user(team, reader).submit_label(ex, mask=box(3, 3))
    assert ex.id not in trained()  # a consensus nobody adjudicated
    team.configure_reading("Lesions", train_on="consensus")
    assert ex.id in trained()


def test_staple_consensus_and_mask_agreement_figures(team):
    team.configure_reading("Lesions", consensus="staple", readers=3, assign="list")
    ex = team.examples("Lesions")[0]
    team.assign(ex, POOL)
    masks = [box(2, 2), box(3, 3), box(2, 3)]
    for reader, m in zip(POOL, masks, strict=True):
        as_user(team, reader).submit_label(ex, mask=m)
    expected = (agreement.staple([m > 0 for m in masks]) >= 0.5).astype(np.uint8)
    assert np.array_equal(team.mask(ex), expected)
    figures = team.agreement("Lesions")
    for (i, a), (j, b) in [((0, "ana"), (1, "ben")), ((0, "ana"), (2, "cy")), ((1, "ben"), (2, "cy"))]:
        ref = agreement.mask_agreement(masks[i], masks[j])
        inter = np.logical_and(masks[i], masks[j]).sum()
        assert ref["dice"] == pytest.approx(2 * inter / (masks[i].sum() + masks[j].sum()))
        pair = figures["pairs"][f"{a} / {b}"]
        assert pair["dice"] == pytest.approx(ref["dice"]) and pair["iou"] == pytest.approx(ref["iou"])


def test_class_consensus_kappas_equal_scikit_learn_and_statsmodels(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    owner = pml.Project.open(tmp_path / "c", user="olga")
    model = owner.create_model("Grade", problem_type="classification", classes=["low", "mid", "high"])
    examples = owner.add_examples(model, [np.full((8, 8), i, np.uint8) for i in range(12)])
    owner.configure_reading(model, readers=3, pool=POOL)
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, len(examples))
    given = {}
    for ex, t in zip(examples, truth, strict=True):
        for reader in POOL:
            c = int(t) if rng.random() < 0.7 else int(rng.integers(0, 3))
            given[(ex.id, reader)] = c
            as_user(owner, reader).submit_label(ex, classes=[c])
    figures = owner.agreement(model)
    for a, b in [("ana", "ben"), ("ana", "cy"), ("ben", "cy")]:
        ref = cohen_kappa_score([given[(e.id, a)] for e in examples], [given[(e.id, b)] for e in examples])
        assert figures["pairs"][f"{a} / {b}"]["kappa"] == pytest.approx(ref)
    table, _ = aggregate_raters(np.array([[given[(e.id, r)] for r in POOL] for e in examples]))
    assert figures["fleiss_kappa"] == pytest.approx(fleiss_kappa(table))
    for ex in examples:
        votes = [given[(ex.id, r)] for r in POOL]
        label = owner.label(ex)
        winner = agreement.majority_class(votes)
        if winner is None:  # a three-way tie: a draft for a reviewer, first in the queue
            assert label.status == "draft" and label.classes == ()
            assert ex.id in [e.id for e in owner.adjudication_queue(model)[:3]]
        else:
            assert label.status == "submitted" and label.classes == (winner,)


def _read_all(path: str, reader: str, seed: int) -> int:
    project = pml.Project.open(path, create=False, user=reader)
    done = 0
    for entry in project.queue("Lesions"):
        project.submit_label(entry.example, mask=box(2 + seed, 2), time_spent=1.0)
        done += 1
    return done


def test_three_readers_in_three_processes_lose_nothing(team):
    with mp.get_context("spawn").Pool(3) as pool:
        done = pool.starmap(_read_all, [(str(team.path), r, k) for k, r in enumerate(POOL)])
    assert done == [4, 4, 4]
    fresh = pml.Project.open(team.path, create=False, user="olga")
    for ex in fresh.examples("Lesions"):
        readings = fresh.readings(ex)
        assert len(readings) == 2 and all(r.status == "submitted" and r.author == r.reader for r in readings)
        assert fresh.label(ex).source == "consensus" and fresh.label(ex).readers == tuple(r.reader for r in readings)
    assert fresh.status_counts("Lesions")["labeled"] == 6
    assert [fresh.queue_counts("Lesions", reader=r)["submitted"] for r in POOL] == [4, 4, 4]
    assert not check(fresh.path).problems


def test_check_rebuilds_a_damaged_readings_shard_from_the_audit_trail(team):
    ex = team.queue("Lesions", reader="ana")[0].example
    for reader in readers_of(team, ex):
        as_user(team, reader).submit_label(ex, mask=box(2, 2))
    before = {r.reader: (r.status, r.version, r.mask_ref) for r in team.readings(ex)}
    import json

    manifest = json.loads((team.path / "patientml.json").read_text())
    shard = next(
        n
        for n, f in manifest["files"].items()
        if n.startswith("readings") and ex.id in (team.path / "tables" / f).read_text()
    )
    (team.path / "tables" / manifest["files"][shard]).write_text("{ not json")
    report = repair(team.path)
    assert any("reading(s) rebuilt from the audit trail" in line for line in report.repaired), report
    fresh = pml.Project.open(team.path, create=False, user="olga")
    assert {r.reader: (r.status, r.version, r.mask_ref) for r in fresh.readings(ex)} == before
    assert [
        fresh.queue_counts("Lesions", reader=r)["to do"] + fresh.queue_counts("Lesions", reader=r)["submitted"]
        for r in POOL
    ] == [4, 4, 4]
    # deleting the example takes its readings with it
    fresh.delete_example(ex)
    assert not fresh.session.reading_records(ex.id) and not check(fresh.path).problems


def test_the_queue_columns_follow_every_change_as_the_readings_say(team):
    """Random submits, drafts, deletes, returns and accepts; after each, every reader's queue (from the cached
    columns, in this project object and in one that only polls) equals what the reading records say.
    """
    from patientml_widgets.reading import QUEUE_STATES, queue_state

    rng = np.random.default_rng(7)
    watcher = as_user(team, "olga")
    people = {r: as_user(team, r) for r in POOL}
    rita = as_user(team, "rita")
    examples = team.examples("Lesions")
    watcher.queue_counts("Lesions", reader="ana")  # columns built (and cached) before the changes
    for step in range(40):
        ex = examples[rng.integers(len(examples))]
        mine = [r for r in POOL if team.reading(ex, r) is not None]
        reader = mine[rng.integers(len(mine))]
        current = team.reading(ex, reader)
        action = rng.choice(["submit", "draft", "delete", "return", "accept"])
        if action == "submit":
            people[reader].submit_label(ex, mask=box(rng.integers(10), rng.integers(10)))
        elif action == "draft":
            people[reader].save_label(ex, mask=box(1, 1))
        elif action == "delete" and current.status in ("draft", "submitted"):
            people[reader].delete_label(ex)
        elif action in ("return", "accept") and current.status == "submitted":
            rita.review(ex, action, "again" if action == "return" else "", reader=reader)
        watcher.poll()
        for project in (team, watcher):
            for r in POOL:
                expected = {name: 0 for name in QUEUE_STATES}
                for e in examples:
                    found = project.session.reading_records(e.id)
                    mine_now = next((x for x in found if x["reader"] == r), None)
                    if mine_now is not None:
                        expected[queue_state(mine_now)] += 1
                assert project.queue_counts("Lesions", reader=r) == expected, (step, action, r)


def test_a_readers_queue_is_per_model(team):
    other = team.create_model("Kind", problem_type="classification", classes=["a", "b"])
    team.add_examples(other, [np.zeros((8, 8), np.uint8)] * 3)
    team.configure_reading(other, readers=2, pool=["ana", "ben"])
    ana = as_user(team, "ana")
    assert ana.queue_counts("Kind")["to do"] == 3 and ana.queue_counts("Lesions")["to do"] == 4
    ana.submit_label(ana.queue("Kind")[0].example, classes=["a"])
    assert ana.queue_counts("Kind")["submitted"] == 1 and ana.queue_counts("Lesions")["submitted"] == 0
    assert {e.example.model_id for e in ana.queue("Lesions")} == {team.model("Lesions").id}
