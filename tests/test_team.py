"""Who the user is, and members with roles: the API refuses what a role may not do, and refusing changes nothing."""

import json

import numpy as np
import pytest
from helpers import as_user

import patientml_widgets as pml
from patientml_widgets import PermissionDenied


def mask(k: int = 0) -> np.ndarray:
    m = np.zeros((16, 16), np.uint8)
    m[2 + k : 8 + k, 3:9] = 1
    return m


@pytest.fixture
def team(tmp_path, monkeypatch):
    """A project owned by olga with a developer, a reviewer and two labelers; a model with 4 examples."""
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    olga = pml.Project.open(tmp_path / "team", user="olga")
    model = olga.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    olga.add_examples(model, [np.full((16, 16), 10 * i, np.uint8) for i in range(4)])
    assert olga.role is None and olga.can("owner")  # no member list: everyone may do everything
    for user, role in (("dev", "developer"), ("rita", "reviewer"), ("ana", "labeler"), ("ben", "labeler")):
        olga.add_member(user, role)
    return olga


def test_the_user_is_the_hubs_then_the_name_given_then_the_os_users(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    import getpass

    assert pml.Project.open(tmp_path / "a").user == getpass.getuser()
    assert pml.Project.open(tmp_path / "a", user="ana").user == "ana"
    monkeypatch.setenv("JUPYTERHUB_USER", "hub-ana")
    assert pml.Project.open(tmp_path / "a").user == "hub-ana"
    # without a member list a script may still write in another name (attribution only, as before)
    assert pml.Project.open(tmp_path / "a", user="import-script").user == "import-script"
    hub = pml.Project.open(tmp_path / "b")
    hub.add_member("hub-ben", "labeler")
    assert hub.members() == {"hub-ana": "owner", "hub-ben": "labeler"}  # its maker owns the first list
    with pytest.raises(PermissionDenied, match="signed in to JupyterHub as 'hub-ana'"):
        pml.Project.open(tmp_path / "b", user="hub-ben")
    with pytest.raises(PermissionDenied, match="signed in to JupyterHub"):
        hub.user = "hub-ben"
    assert hub.user == "hub-ana"


def test_a_non_member_is_told_on_open_and_a_member_sees_their_role(team):
    with pytest.raises(PermissionDenied, match=r"eve is not a member .*add_member\('eve', 'labeler'\)"):
        as_user(team, "eve")
    assert team.members() == {"ana": "labeler", "ben": "labeler", "dev": "developer", "olga": "owner",
                              "rita": "reviewer"}  # fmt: skip
    ana = as_user(team, "ana")
    assert ana.role == "labeler" and ana.can("labeler") and not ana.can("reviewer")
    assert as_user(team, "dev").can("developer") and not as_user(team, "dev").can("owner")
    with pytest.raises(PermissionDenied, match="not a member"):
        ana.user = "eve"


def test_each_role_may_do_its_work_and_is_refused_the_next_ones_naming_the_role_needed(team):
    ana, ben, rita, dev = (as_user(team, u) for u in ("ana", "ben", "rita", "dev"))
    model = ana.model("Lesions")
    ex = ana.examples(model, sort="created")
    commit = team.session.store.commit

    refused = {
        "creating a model": lambda: ana.create_model("X", problem_type="classification", classes=["a", "b"]),
        "adding examples": lambda: ana.add_examples(model, [np.zeros((16, 16), np.uint8)]),
        "deleting an example": lambda: ana.delete_example(ex[3]),
        "configuring training": lambda: ana.configure_training(model, min_margin=0.1),
        "starting a training run": lambda: ana.create_run(model),
        "changing a model": lambda: ana.set_retrain_policy(model, after_labels=3),
        "managing members": lambda: ana.add_member("eve", "owner"),
    }
    for doing, call in refused.items():
        with pytest.raises(PermissionDenied, match=f"ana is a labeler of this project; {doing} needs the"):
            call()
    team.session.store.refresh()
    assert team.session.store.commit == commit  # a refused call writes nothing

    # labelers label (their own), and may not write over another's label or in another's name
    ana.submit_label(ex[0], mask=mask(0))
    ben.save_label(ex[1], mask=mask(1))
    with pytest.raises(PermissionDenied, match="over ana's label needs the reviewer role"):
        ben.submit_label(ex[0], mask=mask(2))
    with pytest.raises(PermissionDenied, match="in another person's name \\(ben\\) needs the reviewer role"):
        ana.submit_label(ex[2], mask=mask(2), author="ben")
    with pytest.raises(PermissionDenied, match="deleting a label over ben's label needs the reviewer"):
        ana.delete_label(ex[1])
    ana.submit_label(ex[0], mask=mask(3))  # their own, again
    ben.delete_label(ex[1])
    assert np.array_equal(team.mask(ex[0]), mask(3)) and team.label(ex[1]) is None

    # a reviewer corrects anyone's label; not more
    rita.submit_label(ex[0], mask=mask(4))
    assert team.label(ex[0]).author == "rita"
    with pytest.raises(PermissionDenied, match="rita is a reviewer of this project; starting a training run needs"):
        rita.create_run(model)

    # a developer configures and trains; members are the owner's
    dev.configure_training(model, min_margin=0.01)
    run = dev.create_run(model)
    assert run.status == "queued"
    with pytest.raises(PermissionDenied, match="managing members needs the owner role"):
        dev.add_member("eve", "labeler")
    with pytest.raises(PermissionDenied, match="recording a decision \\(reject\\) on a run needs the developer"):
        ana.reject(run, "no")
    # the audit trail says who granted what
    granted = [e for e in team.audit() if e.get("action") == "set_member"]
    assert {(e["actor"], e["user"], e["role"]) for e in granted} >= {
        ("olga", "olga", "owner"),
        ("olga", "ana", "labeler"),
    }


def test_owners_manage_members_and_the_last_owner_cannot_leave(team):
    with pytest.raises(pml.ValidationError, match="olga is the project's last owner"):
        team.add_member("olga", "developer")
    with pytest.raises(pml.ValidationError, match="last owner"):
        team.remove_member("olga")
    with pytest.raises(pml.ValidationError, match="role must be one of 'labeler', 'reviewer', 'developer', 'owner'"):
        team.add_member("eve", "admin")
    team.add_member("dev", "owner")
    team.add_member("olga", "developer")  # another owner now
    dev = as_user(team, "dev")
    assert dev.remove_member("ben") == {"ana": "labeler", "dev": "owner", "olga": "developer", "rita": "reviewer"}
    with pytest.raises(PermissionDenied, match="ben is not a member"):
        as_user(team, "ben")
    with pytest.raises(pml.NotFoundError):
        dev.remove_member("ben")


def test_the_retrain_policy_a_developer_set_trains_when_a_labeler_submits(team, monkeypatch):
    model = team.model("Lesions")
    as_user(team, "dev").set_retrain_policy(model, after_labels=1)
    started = []
    from patientml_widgets.runs import Runs

    monkeypatch.setattr(Runs, "start", lambda self, run_id, **kw: started.append(run_id))
    monkeypatch.setattr("patientml_widgets.runs.check_trainable", lambda snapshot: None)  # one label is enough here
    ana = as_user(team, "ana")
    ana.submit_label(ana.examples(model, sort="created")[0], mask=mask())
    assert len(started) == 1 and team.runs(model)[-1].trigger.startswith("retrain policy")


def test_a_damaged_member_list_is_an_error_not_an_open_door(team):
    manifest = json.loads((team.path / "patientml.json").read_text())
    (team.path / "tables" / manifest["files"]["members"]).write_text("{not json")
    with pytest.raises(pml.StoreError, match="members"):
        pml.Project.open(team.path, create=False, user="eve")
    from patientml_widgets.store.check import repair

    report = repair(team.path)
    assert any("tables/members: 5 member(s) rebuilt" in r for r in report.repaired), report.repaired
    assert not report.problems
    assert pml.Project.open(team.path, create=False, user="olga").members() == {
        "ana": "labeler", "ben": "labeler", "dev": "developer", "olga": "owner", "rita": "reviewer",
    }  # fmt: skip
    with pytest.raises(PermissionDenied, match="eve is not a member"):
        pml.Project.open(team.path, create=False, user="eve")


def test_the_views_offer_only_what_the_role_may_do(team):
    from patientml_widgets.widgets.run_details import RunDetails

    model = team.model("Lesions")
    run = as_user(team, "dev").create_run(model)
    team.session.finish_run(run.id, "succeeded")
    ana, dev = as_user(team, "ana"), as_user(team, "dev")
    assert [a["key"] for a in pml.ModelTable(dev).table.actions] == ["new"]
    assert pml.ModelTable(ana).table.actions == []
    assert [a["key"] for a in pml.RunsTable(dev, model).table.actions] == ["train"]
    assert pml.RunsTable(ana, model).table.actions == []
    theirs, mine = RunDetails(ana, run.id), RunDetails(dev, run.id)
    assert theirs.deploy_button.disabled and theirs.approve_button.disabled and theirs.reject_button.disabled
    assert "needs the developer role (ana is a labeler)" in theirs.deploy_button.tooltip
    assert not mine.approve_button.disabled and not mine.reject_button.tooltip
    with pytest.raises(PermissionDenied, match="in another person's name \\(olga\\) needs the owner"):
        dev.approve(run, "fine", actor="olga")
