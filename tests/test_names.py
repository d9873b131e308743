"""Names are one line of visible text, compared in one normal form (findings 9 and 10 of the safety issue)."""

import numpy as np
import pytest
from helpers import image

import patientml_widgets as pml

HIDDEN = ["a\x00b", "a\nb", "a\rb", "a\tb", "evil\u202egnp.exe", "a\u2066b", "zero\u200bwidth", "a\u2028b", "\ufeffbom"]


@pytest.mark.parametrize("name", HIDDEN)
def test_control_bidi_and_invisible_characters_are_refused_in_every_name(project, name):
    seg = project.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    calls = [
        lambda: project.create_model(name, problem_type="classification", classes=["a", "b"]),
        lambda: project.rename_model(seg, name),
        lambda: project.create_model("m2", problem_type="classification", classes=[name, "b"]),
        lambda: project.add_class(seg, name),
        lambda: project.add_subject(name),
        lambda: project.add_subject("p1", name=name),
        lambda: project.add_subject("p1", tags=[name]),
        lambda: project.add_example(seg, image(), subject=name),
        lambda: project.register_model_code(name, "def build(c, n):\n    pass\n"),
    ]
    for call in calls:
        with pytest.raises(pml.ValidationError, match=r"U\+[0-9A-F]{4}"):
            call()
    assert [m.name for m in project.models()] == ["seg"] and project.subjects() == []


def test_names_are_nfc_so_composed_and_decomposed_accents_are_one_name(project):
    composed, decomposed = "Caf\u00e9", "Cafe\u0301"
    model = project.create_model(decomposed, problem_type="classification", classes=[composed, "b"])
    assert model.name == composed and model.class_names == [composed, "b"]
    with pytest.raises(pml.ValidationError, match="already exists"):
        project.create_model(composed, problem_type="classification", classes=["a", "b"])
    with pytest.raises(pml.ValidationError, match="twice"):
        project.add_class(model, decomposed.upper())
    assert project.model(decomposed).id == model.id  # looked up in either form
    ex = project.add_example(model, image(), subject=decomposed)
    assert ex.subject_id == composed and project.subject(decomposed).id == composed
    assert project.submit_label(ex, classes=[decomposed]).classes == (0,)


def test_text_keeps_line_breaks_but_not_other_controls(project):
    model = project.create_model("m", problem_type="classification", classes=["a", "b"], description="two\nlines")
    assert model.description == "two\nlines"
    with pytest.raises(pml.ValidationError, match="U\\+202E"):
        project.describe_model(model, "looks \u202eharmless")
    with pytest.raises(pml.ValidationError, match="U\\+0000"):
        project.add_class(model, "c", description="nul\x00")
    assert project.model(model.id).description == "two\nlines"
    zwj = "family \U0001f468\u200d\U0001f469\u200d\U0001f467"  # joiners stay: emoji and scripts need them
    assert project.describe_model(model, zwj).description == zwj
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # with a zero-width non-joiner
    assert project.add_class(model, persian).class_names[-1] == persian


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda p, m, e: p.create_model("x", problem_type="classification", classes=1.0), "classes are a list"),
        (lambda p, m, e: p.create_model("x", problem_type="classification", classes="ab"), "classes are a list"),
        (lambda p, m, e: p.create_model("x", problem_type=3, classes=["a", "b"]), "problem_type must be one of"),
        (lambda p, m, e: p.submit_label(e, mask=np.zeros((24, 32), np.uint8), time_spent="abc"), "time_spent"),
        (lambda p, m, e: p.submit_label(e, mask=np.zeros((24, 32), np.uint8), time_spent=-1), "time_spent"),
        (lambda p, m, e: p.examples(m, limit="10"), "limit must be a whole number"),
        (lambda p, m, e: p.examples(m, status=["draft", 5]), "status must be one of"),
        (lambda p, m, e: p.set_retrain_policy(m, after_labels=2.5), "after_labels must be a whole number"),
        (lambda p, m, e: p.configure_training(m, max_trials="many"), "max_trials must be a whole number"),
        (lambda p, m, e: p.add_examples(m, 7), "images must be a list"),
        (lambda p, m, e: p.run(12), "not a run"),
    ],
)
def test_wrong_kinds_of_values_are_validation_errors_that_say_what_to_pass(project, call, words):
    seg = project.create_model("seg", problem_type="segmentation", classes=["background", "lesion"])
    ex = project.add_example(seg, image(), subject="p1")
    with pytest.raises(pml.PatientMLError, match=words):
        call(project, seg, ex)
    assert project.label(ex) is None


def test_names_that_look_the_same_are_one_name_and_pasted_text_keeps_its_marks(project):
    project.create_model("A1", problem_type="classification", classes=["a", "b"])
    with pytest.raises(pml.ValidationError, match="already exists"):
        project.create_model("\uff21\uff11", problem_type="classification", classes=["a", "b"])  # fullwidth
    with pytest.raises(pml.ValidationError, match="combining mark"):
        project.create_model("\u0301\u0301", problem_type="classification", classes=["a", "b"])
    # text pasted from Office or a PDF: the right-to-left mark and the soft hyphen change no order
    pasted = "\u05d2\u05d9\u05d3\u05d5\u05dc\u200f tu\u00admor"
    assert (
        project.create_model("m", problem_type="classification", classes=["a", "b"], description=pasted).description
        == pasted
    )
    england = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    assert project.add_subject(f"site {england}").id == f"site {england}"
    assert project.add_subject("p1", name="Dr. \u00c9milie").name == "Dr. \u00c9milie"
