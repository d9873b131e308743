"""The views of several readers: My queue and the Review column in the ExampleBrowser, the canvas on one's own
reading, the reader comparison (blind until one's own submit) with a reviewer's settling, and the agreement chart.
"""

import numpy as np
import pytest
from helpers import as_user

import patientml_widgets as pml
from patientml_widgets.widgets import AgreementChart, ExampleBrowser, LabelCanvas, ReaderComparison


def click_row(table, row_id):
    table._handle_message(table, {"kind": "row_click", "id": row_id}, [])


def box(top, left, size=6):
    m = np.zeros((20, 20), np.uint8)
    m[top : top + size, left : left + size] = 1
    return m


@pytest.fixture
def readers(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    olga = pml.Project.open(tmp_path / "p", user="olga")
    model = olga.create_model("Lesions", problem_type="segmentation", classes=["background", "lesion"])
    olga.add_examples(model, [np.full((20, 20), 20 * i, np.uint8) for i in range(4)])
    for user, role in (("rita", "reviewer"), ("ana", "labeler"), ("ben", "labeler")):
        olga.add_member(user, role)
    olga.configure_reading(model, readers=2, pool=["ana", "ben"])
    return olga


def test_my_queue_opens_first_and_follows_submits_and_reviews(readers):
    ana = as_user(readers, "ana")
    browser = ExampleBrowser(ana, "Lesions")
    table = browser.table
    assert table.active_filter == "queue:open" and table.total == 4
    assert {r["mine"]["text"] for r in table.rows} == {"To do"}
    assert [c["key"] for c in table.columns][2:4] == ["mine", "comment"]
    first = table.rows[0]["_id"]
    click_row(table, first)
    assert browser.canvas.status.startswith("Assigned to you (ana)")
    ana.submit_label(first, mask=box(2, 2))
    browser.back()
    assert table.total == 3 and first not in [r["_id"] for r in table.rows]
    as_user(readers, "rita").review(first, "return", "extend to the rim", reader="ana")
    table.refresh()
    row = next(r for r in table.rows if r["_id"] == first)
    assert row["mine"] == {"text": "Returned", "tone": "red"} and row["comment"] == "extend to the rim"
    canvas = LabelCanvas.for_example(ana, first)
    assert "returned by rita: extend to the rim" in canvas.status
    assert np.array_equal(canvas.mask, box(2, 2))  # her own reading, not an empty one
    # a reviewer's Review column and filters
    ben = as_user(readers, "ben")
    ben.submit_label(first, mask=box(3, 3))
    ana.submit_label(first)
    rita = as_user(readers, "rita")
    rita.review(first, "accept")
    everything = ExampleBrowser(rita, "Lesions")
    assert everything.table.active_filter == ""  # rita reads nothing: the examples, not a queue
    everything.table.active_filter = "review:accepted"
    assert [r["_id"] for r in everything.table.rows] == [first]
    assert everything.table.rows[0]["review"] == {"text": "Accepted", "tone": "green"}


def test_reader_comparison_is_blind_until_ones_own_submit_and_a_reviewer_settles_there(readers):
    ex = readers.examples("Lesions")[0].id
    ana, ben = as_user(readers, "ana"), as_user(readers, "ben")
    ana.submit_label(ex, mask=box(2, 2))
    view = ReaderComparison(ben, ex)
    text = " ".join(getattr(c, "value", "") for c in view.body.children if isinstance(getattr(c, "value", ""), str))
    assert "Blind reading" in text and "ana" not in text
    assert not [c for c in view.body.children if "Image" in type(c).__name__]
    ben.submit_label(ex, mask=box(4, 4))  # the view follows the project
    tiles = next(c for c in view.body.children if type(c).__name__ == "HBox").children
    assert len(tiles) == 3  # ana, ben and the consensus
    captions = [t.children[1].value for t in tiles]
    assert "ana" in captions[0] and "ben" in captions[1] and "consensus of ana, ben" in captions[2]
    assert tiles[0].children[0].value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "0.444" in view.body.children[-1].value  # Dice of the two 6 x 6 boxes shifted by 2: 2*16/72
    # ben is no reviewer: the settling buttons are there, disabled, saying why
    pick, use = view.actions.children[0].children[:2]
    assert pick.disabled and use.disabled and "needs the reviewer role" in use.tooltip
    assert list(pick.options) == ["ana", "ben"]
    rita_view = ReaderComparison(as_user(readers, "rita"), ex)
    rita_view.pick.value = "ben"
    rita_view.actions.children[0].children[1].click()  # use this reading: ben's
    assert readers.label(ex).source == "adjudicated" and np.array_equal(readers.mask(ex), box(4, 4))
    assert "ben&#x27;s label" in rita_view.notice.value


def test_agreement_chart_bars_per_reader_and_kappa_for_classes(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    owner = pml.Project.open(tmp_path / "c", user="olga")
    model = owner.create_model("Kind", problem_type="classification", classes=["a", "b"])
    examples = owner.add_examples(model, [np.full((8, 8), i, np.uint8) for i in range(6)])
    owner.configure_reading(model, readers=3, pool=["ana", "ben", "cy"])
    votes = {"ana": "aabbab", "ben": "aabbaa", "cy": "abbbab"}
    chart = AgreementChart(owner, model)
    assert "No example has two submitted readings" in chart.notice.value
    for reader, chosen in votes.items():
        for ex, c in zip(examples, chosen, strict=True):
            as_user(owner, reader).submit_label(ex, classes=[c])
    chart.refresh()
    figures = owner.agreement(model)
    assert list(chart.bars.x) == ["ana", "ben", "cy"]
    assert chart.bars.y[1][0] == pytest.approx(figures["pairs"]["ana / ben"]["kappa"])
    assert "Cohen" in chart.figure.axes[1].label and "Fleiss" in chart.table.value


def test_a_canvas_on_an_example_not_assigned_says_so_and_saves_nothing(readers):
    readers.add_member("cy", "labeler")
    cy = as_user(readers, "cy")
    ex = readers.examples("Lesions")[0].id
    canvas = LabelCanvas.for_example(cy, ex)
    assert canvas.status.startswith("Not assigned to cy")
    with pytest.raises(pml.PermissionDenied, match="not assigned to cy"):
        cy.submit_label(ex, mask=box(1, 1))
    assert cy.reading(ex) is None and readers.label(ex) is None


def test_a_reviewer_adjudicates_from_the_browser_least_agreement_first(readers):
    ana, ben = as_user(readers, "ana"), as_user(readers, "ben")
    exs = [e.id for e in readers.examples("Lesions", sort="created")[:2]]
    ana.submit_label(exs[0], mask=box(2, 2))
    ben.submit_label(exs[0], mask=box(2, 3))  # close
    ana.submit_label(exs[1], mask=box(2, 2))
    ben.submit_label(exs[1], mask=box(9, 9))  # far apart
    rita = as_user(readers, "rita")
    browser = ExampleBrowser(rita, "Lesions")
    assert next(f for f in browser.table.filters if f["key"] == "adjudicate")["count"] == 2
    assert "adjudicate" not in {f["key"] for f in ExampleBrowser(ana, "Lesions").table.filters}  # a labeler
    browser.table.active_filter = "adjudicate"
    assert [r["_id"] for r in browser.table.rows] == [exs[1], exs[0]]
    assert browser.table.rows[0]["agreement"] < browser.table.rows[1]["agreement"]
    click_row(browser.table, exs[1])
    view = browser.canvas
    assert isinstance(view, ReaderComparison)
    edit = next(b for b in view.actions.children[0].children if b.description == "Edit the consensus")
    edit.click()
    edited = box(4, 4, size=8)
    view.editor.mask = edited
    view.actions.children[-1].click()  # adjudicate with this mask: on to the next one
    assert readers.label(exs[1]).source == "adjudicated" and np.array_equal(readers.mask(exs[1]), edited)
    assert browser.example.id == exs[0] and isinstance(browser.canvas, ReaderComparison)
