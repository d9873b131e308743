"""LabelCanvas driven as the browser would: traits set, custom messages with buffers."""

import base64
import importlib
import json
import pkgutil
import re
import sys
import zlib
from pathlib import Path

import anywidget
import numpy as np
import pytest
import traitlets
from helpers import Browser

import patientml_widgets as pml
from patientml_widgets import imaging, widgets
from patientml_widgets.widgets.label_canvas import LabelCanvas

ROOT = Path(__file__).parent.parent


def test_each_front_end_has_one_copy_in_static():
    static = (ROOT / "patientml_widgets/static").resolve()
    assert not [p.name for p in (ROOT / "js").rglob("*.js") if not p.name.endswith(".test.js")]  # tests only
    for info in pkgutil.iter_modules(widgets.__path__, f"{widgets.__name__}."):
        importlib.import_module(info.name)
    loaded = {}
    todo = [anywidget.AnyWidget]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        defined = getattr(sys.modules[cls.__module__], cls.__qualname__, None) is cls  # not add_traits' subclasses
        if defined and cls.__module__.startswith("patientml_widgets.") and "_esm" in cls.__dict__:
            esm = cls.__dict__["_esm"]  # anywidget turns an existing file into FileContents
            loaded[cls.__name__] = Path(getattr(esm, "_path", esm)).resolve()
    assert {"DataTable", "LabelCanvas", "Poller"} <= loaded.keys()
    for name, path in loaded.items():
        assert path.parent == static and path.is_file(), f"{name} loads {path}, not a module in static/"


def test_shared_mask_vectors_decode_the_same_in_python():
    for v in json.loads((ROOT / "js/fixtures/mask_vectors.json").read_text()):
        raw = np.frombuffer(base64.b64decode(v["raw"]), np.uint8).reshape(v["height"], v["width"])
        for wire in (v["python_wire"], v["js_wire"]):  # the browser's CompressionStream output too
            np.testing.assert_array_equal(imaging.decode_mask_wire(base64.b64decode(wire)), raw)


def test_standalone_numpy_in_mask_out():
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3)).astype(np.uint8)
    canvas = LabelCanvas(image, ["background", "lesion"])
    assert canvas.mask.shape == (30, 40) and canvas.mask.dtype == np.uint8 and not canvas.mask.any()
    assert canvas.bound is False and canvas.active_class == 1
    browser = Browser(canvas)
    painted = np.zeros((30, 40), np.uint8)
    painted[5:10, 5:20] = 1
    ack = browser.stroke(painted, seq=7)
    assert ack == {"kind": "ack", "seq": 7}
    np.testing.assert_array_equal(canvas.mask, painted)  # current without the user asking
    with pytest.raises(ValueError):
        canvas.mask[0, 0] = 1  # read-only; assign a whole mask instead
    submitted = []
    canvas.on_submit(lambda c: submitted.append(c.mask.copy()))
    browser.send({"kind": "submit", "seq": 8}, [imaging.encode_mask_wire(painted)])
    assert len(submitted) == 1 and submitted[0].sum() == painted.sum()
    assert canvas.status.startswith("Submitted") and canvas.busy is False


def test_image_bytes_on_the_wire_keep_16_bit():
    image = (np.arange(50 * 60).reshape(50, 60) * 13).astype(np.uint16)
    canvas = LabelCanvas(image, ["bg", "organ"])
    state = canvas.get_state()
    assert canvas._image_meta == {"width": 60, "height": 50, "channels": 1, "dtype": "uint16"}
    raw = zlib.decompress(bytes(state["_image"]))
    np.testing.assert_array_equal(np.frombuffer(raw, "<u2").reshape(50, 60), image)
    assert isinstance(state["_image"], (bytes, memoryview))  # a binary buffer, never base64 text


def test_ready_sends_the_mask_and_the_prediction():
    start = np.zeros((8, 8), np.uint8)
    start[2:4, 2:4] = 2
    predicted = np.ones((8, 8), np.uint8)
    canvas = LabelCanvas(np.zeros((8, 8)), ["bg", "a", "b"], mask=start, prediction=predicted)
    browser = Browser(canvas)
    browser.send({"kind": "ready"})
    (m1, b1), (m2, b2) = browser.received
    assert m1["target"] == "label" and m1["reset_history"] is True
    np.testing.assert_array_equal(imaging.decode_mask_wire(b1[0]), start)
    assert m2["target"] == "prediction"
    np.testing.assert_array_equal(imaging.decode_mask_wire(b2[0]), predicted)
    # Python can replace the mask too; the browser is told
    canvas.mask = np.zeros((8, 8), np.uint8)
    assert browser.received[-1][0]["target"] == "label"


def test_a_stroke_can_send_only_the_region_it_changed():
    canvas = LabelCanvas(np.zeros((20, 30)), ["bg", "a", "b"])
    browser = Browser(canvas)
    earlier = canvas.mask
    patch = np.full((3, 4), 2, np.uint8)
    browser.send({"kind": "mask", "seq": 1, "region": [10, 5, 4, 3]}, [imaging.encode_mask_wire(patch)])
    expected = np.zeros((20, 30), np.uint8)
    expected[5:8, 10:14] = 2
    np.testing.assert_array_equal(canvas.mask, expected)
    assert not earlier.any()  # a mask handed out before is a snapshot


@pytest.mark.parametrize(
    "content, buffers, message",
    [
        ({"kind": "mask", "region": [7, 7, 4, 4]}, [imaging.encode_mask_wire(np.zeros((4, 4), np.uint8))], "outside"),
        ({"kind": "mask", "region": "all"}, [imaging.encode_mask_wire(np.zeros((4, 4), np.uint8))], "region is"),
        ({"kind": "mask", "region": [0, 0, 2, 2]}, [imaging.encode_mask_wire(np.zeros((4, 4), np.uint8))], "2 x 2"),
        ({"kind": "mask", "seq": 1}, [], "carries no mask"),
        ({"kind": "mask", "seq": 1}, [b"garbage"], "bad header"),
        ({"kind": "mask", "seq": 1}, [imaging.encode_mask_wire(np.zeros((3, 3), np.uint8))], "expected 8 x 8"),
        ({"kind": "mask", "seq": 1}, [imaging.encode_mask_wire(np.full((8, 8), 9, np.uint8))], r"\[9\]"),
        ({"kind": "paint-it-black"}, [], "unknown message"),
        ("not a dict", [], "unknown message"),
    ],
)
def test_bad_messages_are_refused_clearly_and_change_nothing(content, buffers, message):
    start = np.zeros((8, 8), np.uint8)
    start[0, 0] = 1
    canvas = LabelCanvas(np.zeros((8, 8)), ["bg", "a"], mask=start)
    browser = Browser(canvas)
    browser.send(content, buffers)
    assert re.search(message, canvas.error)
    assert browser.received[-1][0]["kind"] == "ack" and "error" in browser.received[-1][0]
    np.testing.assert_array_equal(canvas.mask, start)


def test_a_failing_submit_callback_is_shown_not_swallowed():
    canvas = LabelCanvas(np.zeros((4, 4)), ["bg", "a"])
    browser = Browser(canvas)

    def broken(c):
        raise RuntimeError("my analysis broke")

    canvas.on_submit(broken)
    browser.send({"kind": "submit"}, [imaging.encode_mask_wire(np.zeros((4, 4), np.uint8))])
    assert "my analysis broke" in canvas.error and "broken" in canvas.error
    canvas.on_submit(broken, remove=True)


def test_classification_mode():
    canvas = LabelCanvas(
        np.zeros((16, 16), np.uint8),
        ["nevus", "melanoma", "other"],
        mode="classification",
        prediction_scores={"melanoma": 0.8, "nevus": 0.15, "other": 0.05},
    )
    assert canvas.tool == "pan" and canvas.prediction_scores == {"1": 0.8, "0": 0.15, "2": 0.05}
    browser = Browser(canvas)
    chosen = []
    canvas.on_submit(lambda c: chosen.append(list(c.value)))
    browser.send({"kind": "submit", "value": [1]})
    assert canvas.value == [1] and chosen == [[1]]
    browser.send({"kind": "submit", "value": [0, 2]})
    assert "one class" in canvas.error and canvas.value == [1]
    multi = LabelCanvas(np.zeros((4, 4)), ["a", "b", "c"], mode="classification", multi_label=True, value=["a", "c"])
    assert multi.value == [0, 2]


def test_bad_construction_and_trait_values_are_refused():
    with pytest.raises(pml.ValidationError, match="mode"):
        LabelCanvas(np.zeros((4, 4)), ["a", "b"], mode="detection")
    with pytest.raises(pml.ValidationError, match="at least two"):
        LabelCanvas(np.zeros((4, 4)), ["only"])
    with pytest.raises(pml.ValidationError, match="shape"):
        LabelCanvas(np.zeros((4, 4)), ["a", "b"], mask=np.zeros((5, 5), np.uint8))
    with pytest.raises(pml.ImageError, match="NaN"):
        LabelCanvas(np.full((4, 4), np.nan), ["a", "b"])
    with pytest.raises(TypeError):
        LabelCanvas(np.zeros((4, 4)), ["a", "b"], colour="red")  # unknown keyword arguments are refused
    canvas = LabelCanvas(np.zeros((4, 4)), ["a", "b"])
    with pytest.raises(traitlets.TraitError, match="tool"):
        canvas.tool = "lasso"
    canvas.opacity = 3
    canvas.brush_size = 0
    assert canvas.opacity == 1.0 and canvas.brush_size == 1


def test_bound_canvas_autosaves_drafts_submits_and_deletes_through_the_project(demo):
    seg = demo.model("Skin lesion segmentation")
    ex = demo.examples(seg, status="unlabeled", limit=1)[0]
    canvas = LabelCanvas.for_example(demo, ex)
    assert canvas.bound and canvas.status == "Unlabeled" and canvas.classes[2]["name"] == "margin"
    browser = Browser(canvas)
    mask = np.zeros(ex.shape, np.uint8)
    mask[40:60, 40:70] = 1
    browser.stroke(mask)  # every stroke end is a draft
    assert demo.label(ex).status == "draft" and canvas.status.startswith("Draft saved")
    np.testing.assert_array_equal(demo.mask(ex), mask)
    mask[50:52, 40:70] = 2
    browser.send({"kind": "submit", "seq": 2}, [imaging.encode_mask_wire(mask)])
    assert demo.label(ex).status == "submitted" and canvas.status.startswith("Submitted")
    np.testing.assert_array_equal(demo.mask(ex), mask)
    assert [e["action"] for e in demo.history(ex)] == ["save", "submit"]
    # reopening shows the submitted label
    again = LabelCanvas.for_example(demo, ex)
    np.testing.assert_array_equal(again.mask, mask)
    assert again.status.startswith("Submitted label, version 2")
    browser.send({"kind": "delete"})
    assert demo.label(ex) is None and not canvas.mask.any() and canvas.status.startswith("Label deleted")
    assert [e["action"] for e in demo.history(ex)] == ["save", "submit", "delete"]


def test_bound_classification_canvas(demo):
    kind = demo.model("Lesion type")
    ex = demo.examples(kind, status="labeled", limit=1)[0]
    canvas = LabelCanvas.for_example(demo, ex)
    assert canvas.mode == "classification" and canvas.value == list(demo.label(ex).classes)
    browser = Browser(canvas)
    new = [(canvas.value[0] + 1) % 3]
    browser.send({"kind": "save", "value": new})
    assert demo.label(ex).status == "draft" and list(demo.label(ex).classes) == new
    browser.send({"kind": "submit", "value": new})
    assert demo.label(ex).status == "submitted"


def test_a_project_error_is_shown_and_the_buttons_come_back(demo):
    seg = demo.model("Skin lesion segmentation")
    ex = demo.examples(seg, limit=1)[0]
    canvas = LabelCanvas.for_example(demo, ex)
    browser = Browser(canvas)
    demo.delete_example(ex)  # e.g. another kernel deleted it meanwhile
    browser.send({"kind": "submit"}, [imaging.encode_mask_wire(np.zeros(ex.shape, np.uint8))])
    assert "no example" in canvas.error and canvas.busy is False
