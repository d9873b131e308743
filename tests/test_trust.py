"""Model code stored in a project runs only for a user who trusts it (finding 1 of the safety issue).

A copied project folder opens, labels and browses; predicting or training with its stored code is
refused (saying which code, where it came from, how to read and trust it) and the code never runs.
"""

import io
import shutil

import numpy as np
import pytest
from helpers import image

import patientml_widgets as pml
from patientml_widgets.errors import UntrustedCodeError
from patientml_widgets.trust import TrustStore

torch = pytest.importorskip("torch")


def _source(marker):
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "import torch\n\n"
        "def build(in_channels, num_classes):\n"
        "    return torch.nn.Conv2d(in_channels, num_classes, 1)\n"
    )


def _deployed_code_model(proj, marker):
    """A segmentation model whose deployed run uses registered code (weights made here, no training)."""
    from patientml_widgets.training.spec import TrainSpec

    seg = proj.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    examples = [proj.add_example(seg, image(seed=i), subject=f"p{i}") for i in range(3)]
    mask = np.zeros((24, 32), np.uint8)
    mask[4:12, 4:20] = 1
    for ex in examples:
        proj.submit_label(ex, mask=mask)
    proj.register_model_code("conv", _source(marker))
    proj.configure_training(seg, model_code="conv")
    spec = TrainSpec.build("segmentation", {"canvas": [32, 32]}, num_classes=2, in_channels=1, architecture="code:conv")
    buf = io.BytesIO()
    torch.save(torch.nn.Conv2d(1, 2, 1).state_dict(), buf)
    run = proj.create_run(seg)
    classes = [{"index": c.index, "name": c.name, "color": c.color, "description": ""} for c in seg.classes]
    proj.session.store_artifact(run.id, buf.getvalue(), status="succeeded", classes=classes, spec=spec.to_dict())
    proj.deploy(run.id)
    return seg, examples


def test_code_you_register_is_trusted_and_runs(tmp_path):
    proj = pml.Project.open(tmp_path / "study", user="alice")
    marker = tmp_path / "ran"
    seg, examples = _deployed_code_model(proj, marker)
    assert proj.model_code("conv").trusted
    assert proj.predict(seg, examples[0]).mask.shape == (24, 32)
    assert marker.exists()


def test_a_copied_project_opens_labels_and_browses_but_never_runs_its_code(tmp_path, monkeypatch):
    proj = pml.Project.open(tmp_path / "study", user="alice")
    marker = tmp_path / "ran"
    seg, examples = _deployed_code_model(proj, marker)
    marker.unlink(missing_ok=True)
    shutil.copytree(tmp_path / "study", tmp_path / "copy")

    monkeypatch.setenv("PATIENTML_DATA_DIR", str(tmp_path / "bob-data"))  # another user: their own trust
    other = pml.Project.open(tmp_path / "copy", user="bob")
    ex = examples[1]
    other.save_label(ex, mask=np.zeros((24, 32), np.uint8))  # labels fine
    assert other.status_counts(seg)["draft"] == 1  # browses fine
    assert [e.id for e in other.examples(seg)] == [e.id for e in examples]

    with pytest.raises(UntrustedCodeError) as refused:
        other.predict(seg, ex)
    message = str(refused.value)
    assert "'conv'" in message and "alice" in message and str(tmp_path / "copy") in message
    assert "proj.model_code('conv')" in message and "proj.trust_code('conv')" in message
    for query in (lambda: other.examples(seg, sort="uncertainty"), lambda: other.disagreements(seg)):
        with pytest.raises(UntrustedCodeError):
            query()
    runs_before = len(other.runs(seg))
    with pytest.raises(UntrustedCodeError, match="train"):
        other.train(seg)
    assert len(other.runs(seg)) == runs_before  # refused before a run was recorded

    from patientml_widgets.widgets import LabelCanvas

    canvas = LabelCanvas.for_example(other, ex)  # the labeler opens, without a prediction
    assert canvas.prediction is None and "not trusted" in canvas.status
    assert not marker.exists(), "untrusted model code ran"

    code = other.model_code("conv")
    assert not code.trusted and "def build" in code.source and code.registered_by == "alice"
    assert "NOT trusted" in repr(code)
    assert other.trust_code("conv").trusted
    assert other.predict(seg, ex).mask.shape == (24, 32)
    assert marker.exists()


def test_changed_source_needs_trusting_again(tmp_path):
    proj = pml.Project.open(tmp_path / "study", user="alice")
    marker = tmp_path / "ran"
    seg, examples = _deployed_code_model(proj, marker)
    record = proj.session.code_record("conv")
    tampered = proj.session.store.blobs.path(record["source_ref"])
    tampered.chmod(0o644)
    tampered.write_text(_source(marker) + "\nimport os  # added by someone else\n")
    fresh = pml.Project.open(tmp_path / "study", user="alice")  # no predictor cached
    with pytest.raises(UntrustedCodeError):
        fresh.predict(seg, examples[0])
    assert not marker.exists()


def test_trust_is_kept_outside_the_project_under_a_key_of_the_user(tmp_path):
    store = TrustStore(tmp_path / "data")
    assert not store.is_trusted(b"print(1)")
    store.trust(b"print(1)", name="x")
    assert store.is_trusted(b"print(1)") and not store.is_trusted(b"print(2)")
    assert (tmp_path / "data" / "secret").stat().st_mode & 0o077 == 0  # the key is the user's alone
    other = TrustStore(tmp_path / "other")  # another user's key: the same source is not trusted there
    assert not other.is_trusted(b"print(1)")
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "data" / "trusted-code.json", tmp_path / "other" / "trusted-code.json")
    assert not other.is_trusted(b"print(1)"), "a copied signature list must not carry trust without the key"
    assert store.revoke(b"print(1)") and not store.is_trusted(b"print(1)")


def test_built_in_networks_need_no_trust(tmp_path, monkeypatch):
    from helpers import deployed_run

    proj = pml.Project.open(tmp_path / "study", user="alice")
    seg = proj.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    proj.add_example(seg, image(), subject="p1")
    deployed_run(proj, proj.model(seg.id))
    monkeypatch.setenv("PATIENTML_DATA_DIR", str(tmp_path / "nobody"))
    from patientml_widgets.model_code import load_model_code

    assert load_model_code(proj.session, "") == (None, None, {})
    assert not (tmp_path / "nobody").exists()  # nothing consulted or written for built-in networks


def test_the_command_line_lists_shows_and_trusts_stored_code(tmp_path, monkeypatch, capsys):
    from patientml_widgets.__main__ import main

    proj = pml.Project.open(tmp_path / "study", user="alice")
    proj.register_model_code("conv", _source(tmp_path / "ran"))
    monkeypatch.setenv("PATIENTML_DATA_DIR", str(tmp_path / "bob-data"))
    assert main(["code", str(tmp_path / "study")]) == 0
    assert "conv: NOT trusted; registered by alice" in capsys.readouterr().out
    assert main(["code", str(tmp_path / "study"), "--show", "conv"]) == 0
    assert "def build(in_channels, num_classes)" in capsys.readouterr().out
    assert main(["code", str(tmp_path / "study"), "--trust", "conv"]) == 0
    assert pml.Project.open(tmp_path / "study").model_code("conv").trusted
    assert main(["code", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "nowhere").exists()
    assert not (tmp_path / "ran").exists()


def test_the_source_shown_to_decide_on_trust_shows_every_hidden_character(tmp_path, monkeypatch):
    proj = pml.Project.open(tmp_path / "study", user="alice")
    concealed = "import torch  # \x1b[8m\nimport os  # would run unseen\n# \x1b[0m \u202e\ndef build(i, n):\n    pass\n"
    proj.register_model_code("conv", concealed)
    shown = repr(proj.model_code("conv"))
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "\\x1b[8m" in shown and "\\u202e" in shown and "3 hidden character(s)" in shown


def test_trust_covers_the_entry_points_not_only_the_source(tmp_path):
    proj = pml.Project.open(tmp_path / "study", user="alice")
    source = "def build(i, n):\n    pass\n\ndef other(i, n):\n    pass\n"
    proj.register_model_code("conv", source)
    record = dict(proj.session.code_record("conv"), factory="other")  # a crafted record, same source
    with proj.session.write():
        proj.session.store.put("code", "conv", record)
    assert not proj.model_code("conv").trusted


def test_a_damaged_trust_key_is_a_clear_error(tmp_path):
    store = TrustStore(tmp_path / "data")
    store.trust(b"x")
    (tmp_path / "data" / "secret").write_bytes(b"")
    with pytest.raises(pml.StoreError, match="damaged"):
        store.is_trusted(b"x")


def test_model_details_shows_untrusted_code_and_trusts_it_on_a_click(tmp_path, monkeypatch):
    from patientml_widgets.widgets import ModelDetails

    proj = pml.Project.open(tmp_path / "study", user="alice")
    marker = tmp_path / "ran"
    seg, examples = _deployed_code_model(proj, marker)
    assert ModelDetails(proj, seg).code.children[0].value.count("trusted by you") == 1  # yours: one line
    marker.unlink(missing_ok=True)
    shutil.copytree(tmp_path / "study", tmp_path / "copy")
    monkeypatch.setenv("PATIENTML_DATA_DIR", str(tmp_path / "bob-data"))
    other = pml.Project.open(tmp_path / "copy", user="bob")
    panel = ModelDetails(other, seg.id).code
    shown = " ".join(c.value for c in panel.children if hasattr(c, "value"))
    assert "contains code you have not trusted" in shown and "alice" in shown
    assert "def build(in_channels, num_classes)" in shown and "NOT trusted" in shown
    assert panel.trust_button in panel.children and not marker.exists()
    panel.trust_button.click()
    assert other.model_code("conv").trusted and panel.trust_button not in panel.children
    assert "trusted" in panel.notice.value
    assert other.predict(seg, examples[0]).mask.shape == (24, 32)


def test_models_on_built_in_networks_show_no_code_panel(project):
    from patientml_widgets.widgets import ModelDetails

    seg = project.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    assert ModelDetails(project, seg).code.children == ()
