"""The Smart tool driven as the browser would: prompts in, a proposal out, accepting, propagating,
and the record of how a label was made (tools, engines, clicks) and the time it took.
"""

import threading

import numpy as np
import pytest
from helpers import Browser

from patientml_widgets import imaging
from patientml_widgets.errors import ValidationError
from patientml_widgets.interactive import Engine
from patientml_widgets.widgets import label_canvas as lc
from patientml_widgets.widgets.label_canvas import LabelCanvas


class DiskEngine(Engine):
    """A disk of radius 4 around each positive click, minus one around each negative click."""

    name, label = "disk", "Disk <b>test</b>"

    def __init__(self):
        self.calls = []

    def propose(self, image, prompts, *, window=None):
        self.calls.append((image.shape, prompts, window))
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        out = np.zeros(image.shape[:2], np.float32)
        for x, y, positive in prompts.points:
            out[(yy - y) ** 2 + (xx - x) ** 2 <= 16] = 1.0 if positive else 0.0
        return out


def proposal_of(browser, content):
    """The proposal the canvas answers ``content`` with, as a full-size boolean mask."""
    head = browser.send(content)
    assert head["kind"] == "proposal" and head["seq"] == content["seq"], head
    buffers = browser.received[-1][1]
    shape = browser.canvas._shape[-2:] if head["plane"] is None else browser.canvas._volume.planes[head["plane"]]
    h, w = (shape[0], shape[1]) if head["plane"] is None else (shape.height, shape.width)
    full = np.zeros((h, w), bool)
    if head["region"] is not None:
        x, y, rw, rh = head["region"]
        full[y : y + rh, x : x + rw] = imaging.decode_mask_wire(bytes(buffers[0])) > 0
    return head, full


def test_a_click_gets_a_proposal_and_a_negative_click_refines_it():
    engine = DiskEngine()
    canvas = LabelCanvas(
        np.zeros((40, 50), np.uint16), ["background", "lesion"], engines=[engine], window={"center": 5, "width": 10}
    )
    assert [e["name"] for e in canvas.engines] == ["classical", "disk"] and canvas.engine == "classical"
    canvas.engine = "disk"
    browser = Browser(canvas)
    head, mask = proposal_of(
        browser, {"kind": "prompt", "seq": 3, "engine": "disk", "prompts": {"points": [[20, 10, True]]}}
    )
    assert head["region"] == [16, 6, 9, 9] and mask.sum() == 49 and mask[10, 20]
    assert engine.calls[-1][2] == {"center": 5, "width": 10}  # the window shown goes to the engine
    _, mask = proposal_of(
        browser, {"kind": "prompt", "seq": 4, "prompts": {"points": [[20, 10, True], [23, 10, False]]}}
    )
    assert mask[10, 17] and not mask[10, 22]  # the engine in use when none is named
    head, mask = proposal_of(browser, {"kind": "prompt", "seq": 5, "prompts": {}})
    assert head["region"] is None and not mask.any()  # no prompts: an empty proposal, the engine not asked
    assert len(engine.calls) == 2
    assert canvas.mask.sum() == 0  # a proposal is not the label until accepted


@pytest.mark.parametrize(
    "content, message",
    [
        ({"kind": "prompt", "seq": 1, "engine": "nope", "prompts": {}}, "no interactive engine named 'nope'"),
        ({"kind": "prompt", "seq": 1, "prompts": {"points": [[99, 1, True]]}}, "outside the 50 x 40 image"),
        ({"kind": "prompt", "seq": 1, "prompts": {"points": [[1, 1, "yes"]]}}, "a click is [x, y, positive]"),
        ({"kind": "prompt", "seq": 1, "prompts": [1, 2]}, "prompts are a dict"),
        ({"kind": "propagate", "seq": 1}, "unknown message"),  # a 2-D image has no next slice
    ],
)
def test_bad_prompts_are_refused_clearly(content, message):
    canvas = LabelCanvas(np.zeros((40, 50), np.uint8), ["background", "lesion"], engines=[DiskEngine()])
    browser = Browser(canvas)
    reply = browser.send(content)
    assert reply["kind"] == "ack" and reply["seq"] == 1 and message in reply["error"]
    assert message in canvas.error and not canvas.mask.any()


class BrokenEngine(Engine):
    name, label = "broken", "Broken"

    def __init__(self, result):
        self.result = result

    def propose(self, image, prompts, *, window=None):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.mark.parametrize(
    "result, message",
    [
        (np.zeros((3, 3), np.float32), "of shape (3, 3)"),
        (np.full((40, 50), np.nan, np.float32), "not a finite one"),
        (RuntimeError("out of memory"), "RuntimeError: out of memory"),
    ],
)
def test_an_engine_that_fails_is_shown_and_changes_nothing(result, message):
    canvas = LabelCanvas(np.zeros((40, 50), np.uint8), ["background", "lesion"], engines=[BrokenEngine(result)])
    browser = Browser(canvas)
    reply = browser.send({"kind": "prompt", "seq": 9, "engine": "broken", "prompts": {"points": [[3, 3, True]]}})
    assert reply == {"kind": "ack", "seq": 9, "error": reply["error"]} and message in canvas.error
    assert not canvas.mask.any()


def test_engines_are_checked_and_named_once():
    canvas = LabelCanvas(np.zeros((8, 8), np.uint8), ["background", "lesion"])
    with pytest.raises(ValidationError, match="already has an engine named 'classical'"):
        canvas.add_engine(type(canvas._engines["classical"])())
    with pytest.raises(ValidationError, match=r"an engine is a patientml_widgets\.interactive\.Engine"):
        canvas.add_engine(object())
    with pytest.raises(Exception, match="engine is one of"):
        canvas.engine = "sam"
    with pytest.raises(ValidationError, match="need mode='segmentation'"):
        LabelCanvas(np.zeros((8, 8), np.uint8), ["a", "b"], mode="classification", engines=[DiskEngine()])
    assert LabelCanvas(np.zeros((8, 8), np.uint8), ["a", "b"], mode="classification").engines == []


def test_an_engine_that_prepares_does_so_in_a_thread_when_chosen():
    class Preparing(DiskEngine):
        name = "preparing"

        def __init__(self):
            super().__init__()
            self.prepared = threading.Event()
            self.thread = None

        def prepare(self, image, *, window=None):
            self.thread = threading.current_thread()
            self.prepared.set()

    engine = Preparing()
    canvas = LabelCanvas(np.zeros((8, 8), np.uint8), ["background", "lesion"], engines=[engine])
    assert not engine.prepared.is_set()  # not chosen yet
    canvas.engine = "preparing"
    assert engine.prepared.wait(5) and engine.thread is not threading.main_thread()


def test_accepted_proposals_strokes_and_rejections_are_recorded_with_the_active_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(lc.time, "monotonic", lambda: now[0])
    canvas = LabelCanvas(np.zeros((20, 20), np.uint8), ["background", "lesion"], engines=[DiskEngine()])
    browser = Browser(canvas)
    browser.send({"kind": "ready"})
    accepted = np.zeros((20, 20), np.uint8)
    accepted[2:6, 2:6] = 1
    now[0] += 12  # 12 s to the first click
    made = {"engine": "disk", "positive": 2, "negative": 1, "box": 0, "scribbles": 0}
    browser.send({"kind": "mask", "seq": 1, "reason": "accept", "made": made}, [imaging.encode_mask_wire(accepted)])
    now[0] += 3600  # an hour away counts as one idle minute
    browser.send({"kind": "mask", "seq": 2, "reason": "stroke", "tool": "eraser"}, [imaging.encode_mask_wire(accepted)])
    now[0] += 2
    browser.send({"kind": "reject_proposal", "engine": "disk"})
    browser.send(
        {"kind": "mask", "seq": 3, "reason": "stroke", "tool": "<script>"}, [imaging.encode_mask_wire(accepted)]
    )
    assert canvas.time_spent == pytest.approx(12 + lc.IDLE_S + 2)
    assert canvas.made_with == {
        "tools": {"eraser": 1, "brush": 1},
        "engines": {"disk": {"accepted": 1, "rejected": 1, "prompts": 3}},
        "accepted": [made],
        "clicks": 3,
    }
    np.testing.assert_array_equal(canvas.mask, accepted)


def test_a_bound_canvas_saves_how_the_label_was_made_and_adds_to_its_time(demo, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(lc.time, "monotonic", lambda: now[0])
    model = demo.model("Skin lesion segmentation")
    ex = demo.examples(model, status="unlabeled")[0]
    canvas = LabelCanvas.for_example(demo, ex)
    browser = Browser(canvas)
    browser.send({"kind": "ready"})
    mask = np.zeros(canvas.mask.shape, np.uint8)
    mask[5:15, 5:15] = 1
    now[0] = 20.0
    made = {"engine": "classical", "positive": 1, "negative": 0, "box": 1, "scribbles": 0}
    browser.send({"kind": "mask", "seq": 1, "reason": "accept", "made": made}, [imaging.encode_mask_wire(mask)])
    label = demo.label(ex)
    assert label.status == "draft" and label.time_spent == 20.0
    assert label.made_with["engines"]["classical"] == {"accepted": 1, "rejected": 0, "prompts": 2}
    now[0] = 25.0
    browser.send({"kind": "submit", "seq": 2}, [imaging.encode_mask_wire(mask)])
    label = demo.label(ex)
    assert label.status == "submitted" and label.time_spent == 25.0
    assert demo.history(ex)[-1]["made_with"]["accepted"] == [made]  # the audit trail shows how it was made
    reopened = LabelCanvas.for_example(demo, ex)  # a later session adds to the label's time and counts
    assert reopened.time_spent == 25.0 and reopened.made_with["clicks"] == 2


@pytest.mark.parametrize(
    "made_with, message",
    [
        ([1, 2], "made_with is a dict"),
        ({"x": float("nan")}, "plain JSON"),
        ({"x": object()}, "plain JSON"),
        ({"x": "y" * 20_000}, "at most 16384"),
    ],
)
def test_made_with_is_checked_and_a_refused_one_writes_nothing(demo, made_with, message):
    model = demo.model("Skin lesion segmentation")
    ex = demo.examples(model, status="unlabeled")[0]
    mask = np.zeros(ex.shape, np.uint8)
    with pytest.raises(ValidationError, match=message):
        demo.save_label(ex, mask=mask, made_with=made_with)
    assert demo.label(ex) is None


def sphere_volume(n=24, r=7.0):
    z, y, x = np.mgrid[:n, :n, :n]
    ball = (z - n / 2) ** 2 + (y - n / 2) ** 2 + (x - n / 2) ** 2 <= r**2
    return (ball * 800 + 100).astype(np.int16), ball


class SliceEngine(Engine):
    """Proposes the bright pixels inside the prompts' box (a stand-in for a real engine)."""

    name, label = "slice", "Slice"

    def __init__(self):
        self.prompts = []

    def propose(self, image, prompts, *, window=None):
        self.prompts.append(prompts)
        out = np.zeros(image.shape[:2], np.float32)
        if prompts.box is not None:
            x0, y0, x1, y1 = (round(v) for v in prompts.box)
            out[y0 : y1 + 1, x0 : x1 + 1] = image[y0 : y1 + 1, x0 : x1 + 1] > 500
        return out


def test_propagation_proposes_the_label_of_this_slice_on_the_next_with_its_prompts():
    volume, ball = sphere_volume()
    engine = SliceEngine()
    canvas = LabelCanvas(volume, ["background", "lesion"], spacing=(1, 1, 1), engines=[engine])
    canvas.engine = "slice"
    browser = Browser(canvas)
    layout = canvas._volume.planes["axial"]
    k = canvas.slice_index
    labeled = lc.planes_of.take(ball.astype(np.uint8), layout, k)
    browser.stroke_on("axial", k, 0, 0, labeled)
    head, proposed = proposal_of(browser, {"kind": "propagate", "seq": 5, "plane": "axial", "index": k, "step": 1})
    assert (head["plane"], head["index"]) == ("axial", k + 1) and canvas.slice_index == k + 1
    assert any(c == {"kind": "go", "plane": "axial", "index": k + 1} for c, _ in browser.received)
    expected = lc.planes_of.take(ball.astype(np.uint8), layout, k + 1) > 0
    assert (proposed == expected).mean() > 0.98
    assert head["prompts"]["box"] is not None and head["prompts"]["points"]  # the browser keeps refining these
    assert canvas.made_with["tools"]["propagate"] == 1
    assert not lc.planes_of.take(canvas.mask, layout, k + 1).any()  # proposed, not yet accepted


def test_propagation_says_why_it_cannot_go_on():
    volume, _ = sphere_volume(8, 2.0)
    canvas = LabelCanvas(volume, ["background", "lesion"], spacing=(1, 1, 1))
    browser = Browser(canvas)
    reply = browser.send({"kind": "propagate", "seq": 1, "plane": "axial", "index": 3, "step": 1})
    assert "slice 4 has no 'lesion' to propagate" in reply["error"]
    browser.stroke_on("axial", 7, 0, 0, np.ones((8, 8), np.uint8))
    reply = browser.send({"kind": "propagate", "seq": 2, "plane": "axial", "index": 7, "step": 1})
    assert "slice 8 is the last of the axial plane" in reply["error"]
    reply = browser.send({"kind": "propagate", "seq": 3, "plane": "axial", "index": 7, "step": 5})
    assert "one slice forward (1) or back (-1)" in reply["error"]


def test_prompts_on_a_volume_slice_go_to_the_engine_as_that_slice():
    volume, _ = sphere_volume()
    engine = DiskEngine()
    canvas = LabelCanvas(volume, ["background", "lesion"], spacing=(1, 1, 1), engines=[engine])
    browser = Browser(canvas)
    layout = canvas._volume.planes["coronal"]
    head, mask = proposal_of(
        browser,
        {
            "kind": "prompt",
            "seq": 2,
            "engine": "disk",
            "plane": "coronal",
            "index": 5,
            "prompts": {"points": [[3, 4, True]]},
        },
    )
    assert (head["plane"], head["index"]) == ("coronal", 5) and mask[4, 3]
    np.testing.assert_array_equal(engine.calls[-1][0], (layout.height, layout.width))
