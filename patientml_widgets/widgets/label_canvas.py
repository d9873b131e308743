"""LabelCanvas: paint a segmentation mask or choose classes for one image, in the browser.

Standalone (no project)::

    c = LabelCanvas(image=arr, classes=["background", "lesion"])
    c.mask            # always the current uint8 mask, updated at every stroke end
    c.on_submit(lambda canvas: ...)

Bound to a project example (``LabelCanvas.for_example(project, example)``): it loads the
image, the current label and the deployed model's prediction; every stroke end saves a
draft, Submit confirms, Delete removes the label - all through the project (audited).

A volume (a (Z, Y, X) array with ``spacing=`` or ``affine=``, or a volume example) opens in
volume mode: one slice at a time of the axial, coronal or sagittal plane, a slider, a
crosshair linking the planes, "copy the previous slice" and "interpolate between labeled
slices"; ``mask`` is then the whole (Z, Y, X) label map. Slices travel to the browser when it
asks for them (it prefetches around the current one); strokes still send only their region.

Interactive segmentation (the "Smart" tool): clicks on the object (Shift / right click: not the
object), a box, or scribbles go to an engine (``patientml_widgets.interactive``: the classical
engine always, the project's click-guided model once one is deployed, a SAM-family checkpoint the
user loaded); its proposal is shown until accepted (Enter, one undoable edit) or rejected (Esc).
In a volume, "Propagate" turns the slice's label into the prompts of the next slice. How the label
was made (tools, engines, clicks) and the active time are saved with it (``made_with``, ``time_spent``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import ipywidgets as w
import numpy as np
import traitlets as t

from .. import imaging
from ..errors import PatientMLError, ValidationError
from ..imaging import planes as planes_of
from ..imaging.interpolate import interpolate_slices
from ..interactive import Engine, Prompts
from ..interactive.propagate import prompts_from_mask
from ..project import Project
from ..records import PALETTE, ClassInfo, Example, Model, is_color
from .base import STATIC, InvalidTrait, run_callbacks

__all__ = ["LabelCanvas"]

log = logging.getLogger(__name__)
TOOLS = ("brush", "eraser", "fill", "pan", "window", "crosshair", "prompt")
IDLE_S = 60.0  # a pause longer than this between two actions counts as this long (the labeler left)
MAX_ACCEPTS_KEPT = 100  # accepted proposals described one by one in ``made_with`` (then only counted)


class LabelCanvas(anywidget.AnyWidget):
    """The labeling view: an image, a class palette, marker / eraser / fill, zoom, undo, Submit."""

    _esm = STATIC / "label_canvas.js"

    mode = t.Unicode("segmentation").tag(sync=True)
    classes = t.List(t.Dict()).tag(sync=True)
    multi_label = t.Bool(False).tag(sync=True)
    #: classification: the chosen class indices
    value = t.List(t.Int()).tag(sync=True)
    tool = t.Unicode("brush").tag(sync=True)
    brush_size = t.Int(12).tag(sync=True)
    active_class = t.Int(1).tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    show_prediction = t.Bool(True).tag(sync=True)
    preserve_labels = t.Bool(False).tag(sync=True)
    #: window / level as {"center": c, "width": w} in the image's own values ({} = automatic)
    window = t.Dict().tag(sync=True)
    #: the named windows offered besides Auto and Full range: [{"name", "center", "width"}]
    window_presets = t.List(t.Dict()).tag(sync=True)
    #: show low values bright (DICOM MONOCHROME1)
    invert = t.Bool(False).tag(sync=True)
    #: classification: the prediction's probability per class index (as a string key)
    prediction_scores = t.Dict().tag(sync=True)
    #: classification: the class indices the prediction calls (at the run's operating thresholds, if it has any)
    predicted = t.List(t.Int()).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    bound = t.Bool(False).tag(sync=True)
    _image = t.Bytes().tag(sync=True)
    _image_meta = t.Dict().tag(sync=True)
    #: volume mode: each plane's layout and size (empty for a 2-D image), the plane and slice
    #: shown, the crosshair (z, y, x) that links the planes, and the slices of the shown plane
    #: that hold a class other than the background (ticks on the slider)
    planes = t.Dict().tag(sync=True)
    plane = t.Unicode("axial").tag(sync=True)
    slice_index = t.Int(0).tag(sync=True)
    crosshair = t.List(t.Int()).tag(sync=True)
    labeled_slices = t.List(t.Int()).tag(sync=True)
    #: the last volume operation that "Undo" of the slice bar reverts ("" when none)
    last_operation = t.Unicode("").tag(sync=True)
    #: interactive segmentation: the engines offered ([{"name", "label"}]) and the one in use
    engines = t.List(t.Dict()).tag(sync=True)
    engine = t.Unicode("").tag(sync=True)

    def __init__(
        self,
        image: Any,
        classes: Sequence[str | dict[str, Any] | ClassInfo] | Model,
        *,
        mask: np.ndarray | None = None,
        prediction: np.ndarray | None = None,
        value: Sequence[int | str] | None = None,
        prediction_scores: dict[int | str, float] | None = None,
        predicted: Sequence[int | str] | None = None,
        mode: str = "segmentation",
        multi_label: bool = False,
        window: dict[str, float] | None = None,
        window_presets: str | Sequence[dict[str, Any]] | None = None,
        invert: bool = False,
        spacing: Sequence[float] | None = None,
        affine: Any = None,
        engines: Sequence[Engine] | None = None,
    ) -> None:
        if mode not in ("segmentation", "classification"):
            raise ValidationError(f"mode is 'segmentation' or 'classification', not {mode!r}")
        volume: _Volume | None = None
        if isinstance(image, imaging.StoredVolume):  # a project's volume: slices decoded as they are needed
            volume = _Volume(image, image.affine)
        elif _is_volume(image, spacing, affine):
            checked = imaging.volume_from_array(image, spacing=spacing, affine=affine)
            volume = _Volume(checked.array, checked.affine)
        if volume is not None and mode != "segmentation":
            raise ValidationError("a volume opens for segmentation; classify it with project.submit_label")
        array = imaging.read_image(image) if volume is None else volume.middle()
        class_list = _class_dicts(classes)
        if mode == "segmentation" and len(class_list) < 2:
            raise ValidationError("segmentation needs at least two classes (the first is the background)")
        super().__init__(
            mode=mode,
            classes=class_list,
            multi_label=bool(multi_label),
            active_class=class_list[1]["index"] if mode == "segmentation" else class_list[0]["index"],
            tool="brush" if mode == "segmentation" else "pan",
            window=dict(window or {}),
            window_presets=_presets(window_presets),
            invert=bool(invert),
            _image=zlib.compress(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes(), 1),
            _image_meta={
                "width": int(array.shape[1]),
                "height": int(array.shape[0]),
                "channels": 1 if array.ndim == 2 else int(array.shape[2]),
                "dtype": str(array.dtype),
            },
        )
        self._volume = volume
        self._array = array  # a 2-D canvas's image as given (the engines work on its original values)
        self._shape: tuple[int, ...] = (int(array.shape[0]), int(array.shape[1]))
        if volume is not None:
            self._shape = volume.shape
        self._mask = np.zeros(self._shape, np.uint8)
        self._prediction: np.ndarray | None = None
        self._submit_callbacks = w.CallbackDispatcher()
        self._project: Project | None = None
        self._example_id: str | None = None
        self._unsaved = False
        if mask is not None:
            self._mask = self._check_mask(mask)
        if prediction is not None:
            self._prediction = self._check_mask(prediction)
        if value is not None:
            self.value = self._class_indices(value)
        if prediction_scores:
            self.prediction_scores = {str(self._class_indices([k])[0]): float(v) for k, v in prediction_scores.items()}
        if predicted:
            self.predicted = self._class_indices(predicted)
        if self._volume is not None:
            self._open_volume()
        self._engines: dict[str, Engine] = {}
        self._made = _Made()
        self._time_base = 0.0  # seconds spent on the label before this canvas (a bound label's time_spent)
        self._active_s = 0.0
        self._last_seen: float | None = None
        if mode == "segmentation":
            from ..interactive.classical import ClassicalEngine

            for engine in (ClassicalEngine(), *(engines or ())):
                self.add_engine(engine, select=False)
        elif engines:
            raise ValidationError("interactive engines propose masks: they need mode='segmentation'")
        self.on_msg(self._handle_message)

    def _open_volume(self) -> None:
        """Volume mode: the planes' layout, and the middle axial slice as the first image."""
        vol = self._volume
        assert vol is not None
        centre = [n // 2 for n in self._shape]
        axial = vol.planes["axial"]
        index = planes_of.pixel(axial, (centre[0], centre[1], centre[2]))[0]
        with self.hold_sync():
            self.planes = {name: _plane_info(p) for name, p in vol.planes.items()}
            self.plane, self.slice_index, self.crosshair = "axial", index, centre
            self._image, self._image_meta = _wire_image(vol.plane_image(axial, index))
            self.labeled_slices = self._ticks("axial")

    # -- the public state ------------------------------------------------------------------

    @property
    def is_volume(self) -> bool:
        return self._volume is not None

    @property
    def mask(self) -> np.ndarray:
        """The current mask (uint8 class indices, the image's shape; a volume's is (Z, Y, X)).
        Read-only; assign to replace.
        """
        view = self._mask.view()
        view.flags.writeable = False
        return view

    @mask.setter
    def mask(self, mask: np.ndarray) -> None:
        self._mask = self._check_mask(mask)
        if self._volume is not None:
            self._labels_changed("", new_map=True)
        else:
            self._send_mask(self._mask, target="label")

    @property
    def prediction(self) -> np.ndarray | None:
        return self._prediction

    @prediction.setter
    def prediction(self, mask: np.ndarray | None) -> None:
        self._prediction = None if mask is None else self._check_mask(mask)
        if self._prediction is not None:
            if self._volume is not None:
                self._labels_changed(self.last_operation)  # the browser asks for its slices again
            else:
                self._send_mask(self._prediction, target="prediction")

    def add_engine(self, engine: Engine, *, select: bool = True) -> None:
        """Offer ``engine`` in the Smart tool's menu (``select``: and use it now). Names are unique."""
        if self.mode != "segmentation":
            raise ValidationError("interactive engines propose masks: they need a segmentation canvas")
        if not isinstance(engine, Engine):
            raise ValidationError(f"an engine is a patientml_widgets.interactive.Engine, not {type(engine).__name__}")
        if engine.name in self._engines:
            raise ValidationError(f"this canvas already has an engine named {engine.name!r}")
        self._engines[engine.name] = engine
        with self.hold_sync():
            self.engines = [*self.engines, {"name": engine.name, "label": str(engine.label)}]
            if select or not self.engine:
                self.engine = engine.name

    @property
    def time_spent(self) -> float:
        """Seconds spent on this label: before this canvas (when bound) and active here (a pause over a
        minute counts one minute).
        """
        return self._time_base + self._active_s

    @property
    def made_with(self) -> dict[str, Any]:
        """How the label was made: edits per tool, proposals accepted / rejected and clicks per engine."""
        return self._made.to_dict()

    def on_submit(self, callback: Callable[[LabelCanvas], Any], remove: bool = False) -> None:
        """Call ``callback(canvas)`` after each Submit (after the project saved it, when bound)."""
        self._submit_callbacks.register_callback(callback, remove=remove)

    @t.validate("mode")
    def _valid_mode(self, proposal):
        if proposal["value"] not in ("segmentation", "classification"):
            raise InvalidTrait(f"mode is 'segmentation' or 'classification', not {proposal['value']!r}")
        return proposal["value"]

    @t.validate("classes")
    def _valid_classes(self, proposal):
        classes = proposal["value"]
        for c in classes:
            if not (isinstance(c, dict) and isinstance(c.get("index"), int) and isinstance(c.get("name"), str)):
                raise InvalidTrait(f"a class is a dict with an index and a name, not {c!r}")
            if not 0 <= c["index"] <= 255:
                raise InvalidTrait(f"class indices are 0-255, not {c['index']}")
            if not is_color(c.get("color")):
                raise InvalidTrait(f"class colors are written #rrggbb, not {c.get('color')!r}")
        if len({c["index"] for c in classes}) != len(classes) or len({c["name"] for c in classes}) != len(classes):
            raise InvalidTrait("class names and indices must be unique")
        return classes

    @t.validate("active_class")
    def _valid_active_class(self, proposal):
        known = [c["index"] for c in self.classes]
        if known and proposal["value"] not in known:
            raise InvalidTrait(f"active_class is one of the class indices {known}, not {proposal['value']!r}")
        return proposal["value"]

    @t.validate("value")
    def _valid_value(self, proposal):
        return self._class_indices(proposal["value"])

    @t.validate("tool")
    def _valid_tool(self, proposal):
        if proposal["value"] not in TOOLS:
            raise InvalidTrait(f"tool is one of {TOOLS}, not {proposal['value']!r}")
        return proposal["value"]

    @t.validate("engine")
    def _valid_engine(self, proposal):
        known = [e["name"] for e in self.engines]
        if proposal["value"] not in known:
            raise InvalidTrait(f"engine is one of {known}, not {proposal['value']!r}")
        return proposal["value"]

    @t.observe("engine")
    def _engine_chosen(self, change) -> None:
        self._prepare_engine()

    @t.validate("plane")
    def _valid_plane(self, proposal):
        if proposal["value"] not in planes_of.PLANES:
            raise InvalidTrait(f"plane is one of {planes_of.PLANES}, not {proposal['value']!r}")
        return proposal["value"]

    @t.validate("slice_index")
    def _valid_slice_index(self, proposal):
        index, vol = proposal["value"], getattr(self, "_volume", None)
        # bounded by the deepest plane: the browser sets plane and slice_index together, in either order
        if vol is not None and not 0 <= index < max(vol.shape):
            raise InvalidTrait(f"slice_index is 0 to {max(vol.shape) - 1} in this volume, not {index!r}")
        return index

    @t.validate("crosshair")
    def _valid_crosshair(self, proposal):
        at, vol = proposal["value"], getattr(self, "_volume", None)
        if vol is not None and not (len(at) == 3 and all(0 <= v < n for v, n in zip(at, vol.shape))):
            raise InvalidTrait(f"the crosshair is a voxel (z, y, x) of the {vol.shape} volume, not {at!r}")
        return at

    @t.validate("brush_size")
    def _valid_size(self, proposal):
        return max(1, min(200, int(proposal["value"])))

    @t.validate("opacity")
    def _valid_opacity(self, proposal):
        return max(0.0, min(1.0, float(proposal["value"])))

    # -- bound to a project ----------------------------------------------------------------

    @classmethod
    def for_example(
        cls,
        project: Project,
        example: Example | str,
        *,
        prediction: bool = True,
        engines: Sequence[Engine] | None = None,
    ) -> LabelCanvas:
        """A canvas that loads and saves one example's label through ``project``.

        Its Smart tool offers the classical engine, the deployed run's click-guided model (runs that
        trained one; chosen first) and ``engines`` (e.g. a ``SamEngine`` loaded once and shared by many
        canvases, or a ``ProjectModelEngine`` of another run, offered instead of the deployed one's).
        """
        ex = project.example(example)
        model = project.model(ex.model_id)
        if ex.is_volume and model.problem_type != "segmentation":
            raise ValidationError(
                f"example {ex.id} is a volume; the canvas labels a volume with a mask (a segmentation model); "
                "classify it with project.submit_label(example, classes=...)"
            )
        label = project.label_to_edit(ex)
        kwargs: dict[str, Any] = {"mode": model.problem_type, "multi_label": model.multi_label}
        if model.problem_type == "segmentation":
            kwargs["mask"] = project.mask_to_edit(ex)
        elif label is not None:
            kwargs["value"] = list(label.classes)
        status = ""
        if prediction and model.deployed:
            try:
                predicted = project.predict(model, ex)
            except PatientMLError as e:
                status = f"No prediction: {e}"
            else:
                if predicted.mask is not None:
                    kwargs["prediction"] = predicted.mask
                else:
                    names = {c.name: c.index for c in model.classes}
                    kwargs["prediction_scores"] = {
                        names[n]: p for n, p in predicted.probabilities.items() if n in names
                    }
                    kwargs["predicted"] = [names[n] for n in predicted.classes if n in names]
        source = ex.source
        window = source.get("window") if isinstance(source.get("window"), dict) else None
        kwargs.update(window=window, window_presets=imaging.window_presets(source), invert=bool(source.get("invert")))
        offered = list(engines or ())
        named = {e.name for e in offered}
        if model.problem_type == "segmentation" and model.deployed and not ex.is_volume and "model" not in named:
            guided = _guided_engine(project, model)  # a project model given in ``engines`` is the one offered
            if guided is not None:
                offered.insert(0, guided)
        canvas = cls(project.volume(ex) if ex.is_volume else project.image(ex), model, engines=offered, **kwargs)
        canvas._project, canvas._example_id = project, ex.id
        if any(e.name == "model" for e in offered):
            canvas.engine = "model"  # the project's own model, once it learned to follow clicks
        if label is not None and label.status != "assigned":
            canvas._time_base = float(label.time_spent or 0.0)
            canvas._made = _Made(label.made_with)
        canvas.bound = True
        canvas.status = status or _describe(label)
        if label is None and project.reading_plan(model)["readers"] > 1:
            canvas.status = f"Not assigned to {project.user}: you can look, not label (a reviewer assigns examples)"
        return canvas

    # -- the wire ----------------------------------------------------------------------------

    def _handle_message(self, _widget, content: dict[str, Any], buffers: list) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        try:
            self._clock(kind, content)
            if kind == "ready":
                if self._volume is not None:
                    self._send_plane(self.plane, self.slice_index, content.get("seq"), reset_history=True)
                else:
                    self._send_mask(self._mask, target="label", reset_history=True)
                    if self._prediction is not None:
                        self._send_mask(self._prediction, target="prediction")
            elif kind == "mask":
                painted = None
                if self._volume is not None:
                    painted = self._receive_volume_region(content, buffers)
                else:
                    self._receive_mask(buffers, content.get("region"))
                self.send({"kind": "ack", "seq": content.get("seq")})  # the mask is current
                self._made.edit(content)
                if painted is not None:
                    self._update_tick(*painted)  # the slider's ticks, after the ack
                if self._project is not None:
                    if self._volume is None:
                        self._save("draft")
                    else:
                        self._unsaved = True  # a volume's draft is saved when the slice changes (below)
            elif kind == "plane" and self._volume is not None:
                self._send_plane(_plane_name(content.get("plane")), content.get("index"), content.get("seq"))
                if self._unsaved and self._project is not None and not content.get("prefetch"):
                    self._save("draft")  # after the answer: the browser is not kept waiting
            elif kind in ("copy_previous", "interpolate", "undo_operation") and self._volume is not None:
                self._volume_operation(kind, content)
                self._made.count(kind)
            elif kind == "prompt" and self.mode == "segmentation":
                self._propose(content)
            elif kind == "propagate" and self._volume is not None:
                self._propagate(content)
            elif kind == "reject_proposal" and self.mode == "segmentation":
                self._made.rejected(self._engine_named(content.get("engine")).name)
            elif kind in ("save", "submit", "delete"):
                self._action(kind, content, buffers)
            else:
                raise ValidationError(f"unknown message from the browser: {kind!r}")
        except Exception as e:  # shown in the widget, never swallowed
            log.exception("LabelCanvas message %r failed", kind)
            self.error = f"{type(e).__name__}: {e}"
            self.send(
                {"kind": "ack", "seq": content.get("seq") if isinstance(content, dict) else None, "error": str(e)}
            )
            self.busy = False

    def _receive_mask(self, buffers: list, region: Any = None) -> None:
        """A whole mask, or (``region`` = [x, y, width, height]) the part a stroke changed."""
        if not buffers:
            raise ValidationError("a mask message carries no mask")
        if region is None:
            shape = (self._shape[0], self._shape[1])  # 2-D: a volume's strokes come by plane and slice
            self._mask = self._check_mask(imaging.decode_mask_wire(bytes(buffers[0]), shape))
        else:
            if not (isinstance(region, list) and len(region) == 4 and all(isinstance(v, int) for v in region)):
                raise ValidationError(f"a mask region is [x, y, width, height], not {region!r}")
            x, y, w, h = region
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > self._shape[1] or y + h > self._shape[0]:
                raise ValidationError(
                    f"the mask region {region} lies outside the {self._shape[1]} x {self._shape[0]} image"
                )
            patch = imaging.decode_mask_wire(bytes(buffers[0]), (h, w))
            imaging.validate_mask(patch, (h, w), [c["index"] for c in self.classes])
            mask = self._mask.copy()  # masks handed out earlier stay as they were
            mask[y : y + h, x : x + w] = patch
            self._mask = mask
        self.error = ""

    def _action(self, kind: str, content: dict[str, Any], buffers: list) -> None:
        try:
            if self.mode == "segmentation" and kind != "delete" and self._volume is None:
                self._receive_mask(buffers)  # a volume's map is current in Python already (stroke by stroke)
            if self.mode == "classification" and "value" in content:
                self.value = self._class_indices(content["value"])
            if self._project is not None:
                self._save({"save": "draft", "submit": "submitted", "delete": "deleted"}[kind])
            elif kind == "submit":
                self.status = f"Submitted {time.strftime('%H:%M:%S')}"
            if kind == "submit":
                self._run_callbacks()
        finally:
            self.busy = False

    def _save(self, status: str) -> None:
        project, example = self._project, self._example_id
        assert project is not None and example is not None
        clock = time.strftime("%H:%M:%S")
        if status == "deleted":
            held = project.label_to_edit(example)
            if held is not None and held.status != "assigned":
                project.delete_label(example)
            self._mask = np.zeros(self._shape, np.uint8)
            self.value = []
            if self._volume is not None:
                self._labels_changed("", new_map=True)
            else:
                self._send_mask(self._mask, target="label", reset_history=True)
            self.status = f"Label deleted {clock}"
            self._unsaved = False
            self._made, self._time_base, self._active_s = _Made(), 0.0, 0.0  # the next label starts anew
            return
        data: dict[str, Any] = {"mask": self._mask} if self.mode == "segmentation" else {"classes": list(self.value)}
        data.update(time_spent=round(self.time_spent, 1), made_with=self.made_with)
        if status == "draft":
            label = project.save_label(example, **data)
            self.status = f"Draft saved {clock} (version {label.version})"
        else:
            label = project.submit_label(example, **data)
            self.status = f"Submitted {clock} (version {label.version})"
        self._unsaved = False
        self.error = ""

    def _run_callbacks(self) -> None:
        run_callbacks(self._submit_callbacks, self, on_error=self._callback_failed)

    def _callback_failed(self, text: str) -> None:
        self.error = f"on_submit callback {text}"

    def _send_mask(self, mask: np.ndarray, *, target: str, reset_history: bool = False) -> None:
        self.send({"kind": "mask", "target": target, "reset_history": reset_history}, [imaging.encode_mask_wire(mask)])

    # -- interactive segmentation: prompts in, a proposal out ----------------------------------

    def _clock(self, kind: Any, content: dict[str, Any]) -> None:
        """Count active time: the gap since the browser's previous action, a long pause as IDLE_S."""
        if kind == "ready" or (kind == "plane" and content.get("prefetch")):
            if self._last_seen is None:
                self._last_seen = time.monotonic()
            return
        now = time.monotonic()
        if self._last_seen is not None:
            self._active_s += min(IDLE_S, max(0.0, now - self._last_seen))
        self._last_seen = now

    def _engine_named(self, name: Any) -> Engine:
        if name is None or name == "":
            name = self.engine
        if name not in self._engines:
            raise ValidationError(f"no interactive engine named {name!r} here (engines: {list(self._engines)})")
        return self._engines[name]

    def _shown_image(self, content: dict[str, Any]) -> tuple[np.ndarray, str | None, int | None]:
        """The 2-D image the prompts were given on (a volume's: the plane and slice they name)."""
        if self._volume is None:
            return self._array, None, None
        layout = self._volume.planes[_plane_name(content.get("plane", self.plane))]
        index = _slice_number(content.get("index", self.slice_index), layout)
        return self._volume.plane_image(layout, index), layout.name, index

    def _propose(self, content: dict[str, Any]) -> None:
        """Run the chosen engine on the prompts; the proposal goes back (an empty one for no prompts)."""
        engine = self._engine_named(content.get("engine"))
        image, plane, index = self._shown_image(content)
        prompts = Prompts.parse(content.get("prompts"), image.shape[:2])
        chosen = np.zeros(image.shape[:2], bool)
        if not prompts.empty:
            chosen = _checked_proposal(engine, engine.propose(image, prompts, window=self.window or None), image)
        self._send_proposal(chosen, content.get("seq"), plane, index)
        self.error = ""

    def _propagate(self, content: dict[str, Any]) -> None:
        """The active class on this slice, as prompts for the next (``step`` +1) or previous (-1) slice:
        the browser moves there and gets the proposal with those prompts, to refine or accept.
        """
        vol = self._require_volume()
        layout = vol.planes[_plane_name(content.get("plane", self.plane))]
        index = _slice_number(content.get("index", self.slice_index), layout)
        step = content.get("step", 1)
        if step not in (1, -1):
            raise ValidationError(f"propagation goes one slice forward (1) or back (-1), not {step!r}")
        target = index + step
        if not 0 <= target < layout.depth:
            end = "last" if step > 0 else "first"
            raise ValidationError(f"slice {index + 1} is the {end} of the {layout.name} plane")
        engine = self._engine_named(content.get("engine"))
        current = planes_of.take(self._mask, layout, index) == self.active_class
        if not current.any():
            name = next(c["name"] for c in self.classes if c["index"] == self.active_class)
            raise ValidationError(f"slice {index + 1} has no {name!r} to propagate: label it, or pick its class")
        prompts = prompts_from_mask(current)
        self.go_to(layout.name, target)
        image = vol.plane_image(layout, target)
        chosen = _checked_proposal(engine, engine.propose(image, prompts, window=self.window or None), image)
        self._send_proposal(chosen, content.get("seq"), layout.name, target, prompts=prompts)
        self._made.count("propagate")
        self.error = ""

    def _send_proposal(
        self, chosen: np.ndarray, seq: Any, plane: str | None, index: int | None, *, prompts: Prompts | None = None
    ) -> None:
        """The proposal's bounding region as a 0/1 mask (no buffer when it is empty)."""
        head: dict[str, Any] = {"kind": "proposal", "seq": seq, "plane": plane, "index": index, "region": None}
        if prompts is not None:
            head["prompts"] = prompts.to_dict()
        rows, cols = np.flatnonzero(chosen.any(axis=1)), np.flatnonzero(chosen.any(axis=0))
        if not len(rows):
            self.send(head)
            return
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        head["region"] = [x0, y0, x1 - x0, y1 - y0]
        self.send(head, [imaging.encode_mask_wire(chosen[y0:y1, x0:x1].astype(np.uint8))])

    def _prepare_engine(self) -> None:
        """Let the chosen engine do its once-per-image work (an embedding) in a thread, before the first click."""
        engine = self._engines.get(self.engine)
        if engine is None or type(engine).prepare is Engine.prepare:
            return
        image = self._array if self._volume is None else None
        if image is None:
            return  # a volume's slices are prepared as they are prompted
        window = dict(self.window) or None

        def work() -> None:
            try:
                engine.prepare(image, window=window)
            except Exception as e:  # shown, never raised in a thread nobody joins
                self.error = f"{engine.label} could not prepare the image: {type(e).__name__}: {e}"

        threading.Thread(target=work, name=f"prepare-{engine.name}", daemon=True).start()

    # -- volumes: planes on request, strokes into the volume, operations ----------------------

    def go_to(self, plane: str, index: int) -> None:
        """Show slice ``index`` of ``plane`` ("axial", "coronal" or "sagittal") - as the slider does."""
        vol = self._require_volume()
        layout = vol.planes[_plane_name(plane)]
        index = _slice_number(index, layout)
        with self.hold_sync():
            self.plane, self.slice_index = layout.name, index
            self._image, self._image_meta = _wire_image(vol.plane_image(layout, index))
            self.labeled_slices = self._ticks(layout.name)
        self.send({"kind": "go", "plane": layout.name, "index": index})

    @t.observe("plane", "slice_index")
    def _followed(self, change) -> None:
        """The browser moved (slider, wheel, keys, plane buttons): the crosshair and the ticks follow.

        A new plane shows the slice through the crosshair; a new slice moves the crosshair along it.
        """
        if self._volume is None or self.plane not in self._volume.planes:
            return
        layout = self._volume.planes[self.plane]
        at = list(self.crosshair or [0, 0, 0])
        if change["name"] == "plane":
            self.labeled_slices = self._ticks(self.plane)
            self.slice_index = at[layout.axis]
        elif 0 <= self.slice_index < layout.depth and at[layout.axis] != self.slice_index:
            at[layout.axis] = self.slice_index
            self.crosshair = at

    def _require_volume(self) -> _Volume:
        if self._volume is None:
            raise ValidationError("this canvas shows a 2-D image, not a volume")
        return self._volume

    def _send_plane(self, plane: str, index: Any, seq: Any, *, reset_history: bool = False) -> None:
        """One slice of one plane: its image, label and prediction, for the browser's cache."""
        vol = self._require_volume()
        layout = vol.planes[plane]
        index = _slice_number(index, layout)
        data, meta = _wire_image(vol.plane_image(layout, index))
        buffers = [data, imaging.encode_mask_wire(planes_of.take(self._mask, layout, index))]
        if self._prediction is not None:
            buffers.append(imaging.encode_mask_wire(planes_of.take(self._prediction, layout, index)))
        head = {"kind": "plane", "plane": plane, "index": index, "seq": seq, "reset_history": reset_history, **meta}
        self.send(head, buffers)

    def _receive_volume_region(self, content: dict[str, Any], buffers: list) -> tuple[planes_of.Plane, int]:
        """A stroke's region of one slice of one plane, written into the (Z, Y, X) map: the plane and slice."""
        vol = self._require_volume()
        if not buffers:
            raise ValidationError("a mask message carries no mask")
        layout = vol.planes[_plane_name(content.get("plane"))]
        index = _slice_number(content.get("index"), layout)
        region = content.get("region")
        if region is None:
            region = [0, 0, layout.width, layout.height]
        if not (isinstance(region, list) and len(region) == 4 and all(type(v) is int for v in region)):
            raise ValidationError(f"a mask region is [x, y, width, height], not {region!r}")
        x, y, width, height = region
        if x < 0 or y < 0 or width < 1 or height < 1 or x + width > layout.width or y + height > layout.height:
            raise ValidationError(
                f"the mask region {region} lies outside the {layout.width} x {layout.height} {layout.name} slice"
            )
        patch = imaging.decode_mask_wire(bytes(buffers[0]), (height, width))
        imaging.validate_mask(patch, (height, width), [c["index"] for c in self.classes])
        planes_of.put(self._mask, layout, index, x, y, patch)
        self.error = ""
        return layout, index

    def _ticks(self, plane: str) -> list[int]:
        """The slices of ``plane`` that hold a class other than the background."""
        layout = self._require_volume().planes[plane]
        others = tuple(a for a in range(3) if a != layout.axis)
        return np.flatnonzero(self._mask.any(axis=others)).tolist()

    def _update_tick(self, layout: planes_of.Plane, index: int) -> None:
        if layout.name != self.plane:
            return
        has = bool(planes_of.take(self._mask, layout, index).any())
        ticks = set(self.labeled_slices)
        if has != (index in ticks):
            self.labeled_slices = sorted(ticks ^ {index})

    def _volume_operation(self, kind: str, content: dict[str, Any]) -> None:
        """Copy the previous slice, interpolate between labeled slices, or undo the last of these."""
        vol = self._require_volume()
        layout = vol.planes[_plane_name(content.get("plane", self.plane))]
        moved = np.moveaxis(self._mask, layout.axis, 0)  # a view: slices of this plane along axis 0
        if kind == "undo_operation":
            if not vol.undo:
                raise ValidationError("there is no operation to undo")
            _name, axis, start, before = vol.undo.pop()
            np.moveaxis(self._mask, axis, 0)[start : start + len(before)] = before
            self._labels_changed(vol.undo[-1][0] if vol.undo else "")
            self._mark_changed()
            return
        if kind == "copy_previous":
            index = _slice_number(content.get("index", self.slice_index), layout)  # a slice's number is its index
            if index == 0:  # along the plane's axis, so "previous" is the slice before on the slider
                raise ValidationError(f"slice 1 is the first of the {layout.name} plane; there is none before it")
            vol.remember("copy the previous slice", layout.axis, index, moved[index : index + 1].copy())
            moved[index] = moved[index - 1]
            self._labels_changed("copy the previous slice")
        else:
            ticks = self._ticks(layout.name)
            if len(ticks) < 2:
                raise ValidationError(
                    f"interpolation needs at least two labeled {layout.name} slices; this plane has {len(ticks)}"
                )
            first, last = min(ticks), max(ticks)
            in_plane = (layout.row_mm, layout.col_mm) if layout.rows < layout.cols else (layout.col_mm, layout.row_mm)
            result = interpolate_slices(moved[first : last + 1], [i - first for i in ticks], spacing=in_plane)
            vol.remember("interpolation", layout.axis, first, moved[first : last + 1].copy())
            moved[first : last + 1] = result
            self._labels_changed("interpolation")
        self._mark_changed()

    def _mark_changed(self) -> None:
        """A volume operation changed the map: the draft is saved with the next slice change, like strokes."""
        self._unsaved = True

    def _labels_changed(self, operation: str, *, new_map: bool = False) -> None:
        """The map changed in Python (an operation, a new mask): the browser drops its labels and asks again.

        ``new_map``: a mask assigned or deleted, which also ends the undo of operations (their
        regions belong to the old map).
        """
        if new_map and self._volume is not None:
            self._volume.undo.clear()
        with self.hold_sync():
            self.last_operation = operation
            if self._volume is not None:
                self.labeled_slices = self._ticks(self.plane)
        if self._volume is not None:
            self.send({"kind": "labels_changed"})
            self._send_plane(self.plane, self.slice_index, None)

    # -- checks ------------------------------------------------------------------------------

    def _check_mask(self, mask: Any) -> np.ndarray:
        """The canvas's own uint8 copy: a volume's strokes are painted in place, never into the caller's array
        (or into the prediction when ``canvas.mask = canvas.prediction``).
        """
        checked = imaging.validate_mask(mask, self._shape, [c["index"] for c in self.classes])
        return checked.copy() if np.may_share_memory(checked, mask) else checked

    def _class_indices(self, values: Sequence[int | str]) -> list[int]:
        by_name = {c["name"]: c["index"] for c in self.classes}
        known = set(by_name.values())
        out: list[int] = []
        for v in values:
            index = by_name.get(v) if isinstance(v, str) else int(v)
            if index is None or index not in known:
                raise ValidationError(f"unknown class {v!r} (classes: {list(by_name)})")
            out.append(index)
        if self.mode == "classification" and not self.multi_label and len(out) > 1:
            raise ValidationError("this canvas takes one class (multi_label=False)")
        return sorted(set(out))


class _Volume:
    """A volume canvas's image (an array, or a project's stored volume read as needed), its planes,
    and the undo of its operations.
    """

    UNDO_BYTES = 512 * 2**20  # the most label bytes the undo of operations keeps

    def __init__(self, image: np.ndarray | imaging.StoredVolume, affine: np.ndarray) -> None:
        self.source = image
        self.shape: tuple[int, ...] = tuple(int(v) for v in image.shape)
        self.planes = planes_of.layout(self.shape, affine)
        self.undo: list[tuple[str, int, int, np.ndarray]] = []

    def middle(self) -> np.ndarray:
        """The middle slice of the first axis (to show while the rest is read)."""
        k = self.shape[0] // 2
        return self.source.slice(k) if isinstance(self.source, imaging.StoredVolume) else self.source[k]

    def plane_image(self, layout: planes_of.Plane, index: int) -> np.ndarray:
        """Slice ``index`` of a plane; a slice of the stored axis is read alone until the whole volume is needed."""
        source = self.source
        if isinstance(source, imaging.StoredVolume):
            if layout.axis == 0 and not source.loaded:
                one = dataclasses.replace(layout, depth=1)
                return planes_of.take(source.slice(_slice_number(index, layout))[None], one, 0)
            return planes_of.take(source.load(), layout, index)
        return planes_of.take(source, layout, index)

    def remember(self, name: str, axis: int, start: int, before: np.ndarray) -> None:
        self.undo.append((name, axis, start, before))
        while len(self.undo) > 1 and sum(u[3].nbytes for u in self.undo) > self.UNDO_BYTES:
            self.undo.pop(0)


class _Made:
    """How a label was made: edits per tool, and per engine the proposals accepted and rejected and the
    prompts they took (``to_dict`` is what the label records). Starts from a saved label's record.
    """

    TOOLS = ("brush", "eraser", "fill", "clear", "prediction", "undo", "redo")

    def __init__(self, record: dict[str, Any] | None = None) -> None:
        saved: dict[str, Any] = record if isinstance(record, dict) else {}
        self.tools: dict[str, int] = {k: int(v) for k, v in (saved.get("tools") or {}).items()}
        self.engines: dict[str, dict[str, int]] = {
            k: {n: int(c) for n, c in v.items()} for k, v in (saved.get("engines") or {}).items()
        }
        self.accepted: list[dict[str, Any]] = list(saved.get("accepted") or [])

    def count(self, tool: str) -> None:
        self.tools[tool] = self.tools.get(tool, 0) + 1

    def edit(self, content: dict[str, Any]) -> None:
        """A mask message from the browser: a stroke of a tool, a fill, an undo, an accepted proposal."""
        reason = content.get("reason")
        if reason == "stroke":
            tool = content.get("tool")
            self.count(tool if tool in ("brush", "eraser") else "brush")
        elif reason == "accept":
            given = content.get("made")
            made: dict[str, Any] = given if isinstance(given, dict) else {}
            engine = str(made.get("engine", "?"))[:64]
            counts = {k: _small_count(made.get(k)) for k in ("positive", "negative", "box", "scribbles")}
            entry = self.engines.setdefault(engine, {"accepted": 0, "rejected": 0, "prompts": 0})
            entry["accepted"] += 1
            entry["prompts"] += sum(counts.values())
            if len(self.accepted) < MAX_ACCEPTS_KEPT:
                self.accepted.append({"engine": engine, **counts})
        elif reason in self.TOOLS:
            self.count(str(reason))

    def rejected(self, engine: str) -> None:
        entry = self.engines.setdefault(engine, {"accepted": 0, "rejected": 0, "prompts": 0})
        entry["rejected"] += 1

    def to_dict(self) -> dict[str, Any]:
        clicks = sum(e["prompts"] for e in self.engines.values())
        return {"tools": dict(self.tools), "engines": {k: dict(v) for k, v in self.engines.items()},
                "accepted": list(self.accepted), "clicks": clicks}  # fmt: skip


def _small_count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    return int(value) if isinstance(value, int) and 0 <= value <= 100_000 else 0


def _checked_proposal(engine: Engine, proba: Any, image: np.ndarray) -> np.ndarray:
    """The engine's map as the proposal (``>= 0.5``), refused unless it is (H, W) and finite."""
    p = np.asarray(proba)
    if p.shape != image.shape[:2] or not np.issubdtype(p.dtype, np.number) or not np.isfinite(p).all():
        raise ValidationError(
            f"{engine.label} gave a {p.dtype} map of shape {p.shape}, not a finite one of the image's {image.shape[:2]}"
        )
    return p >= 0.5


def _guided_engine(project: Project, model: Model) -> Engine | None:
    """The deployed run's click-guided model as an engine (None for a run that trained none, or that fails)."""
    from ..interactive.model import ProjectModelEngine

    if model.champion_run_id is None:
        return None
    try:
        predictor = project.predictor(model.champion_run_id)
    except PatientMLError as e:
        log.warning("no click-guided model for %s: %s", model.name, e)
        return None
    if not getattr(predictor, "guided", False):
        return None
    return ProjectModelEngine(predictor, run=project.run(model.champion_run_id).slug)


def _is_volume(image: Any, spacing: Any, affine: Any) -> bool:
    """A 3-D array with a spacing or affine, or whose last axis cannot be colour, is a volume."""
    if spacing is not None or affine is not None:
        return True
    return isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] not in (1, 3, 4)


def _wire_image(array: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """An image's little-endian bytes, deflated, and what the browser needs to read them."""
    data = zlib.compress(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes(), 1)
    meta = {
        "width": int(array.shape[1]),
        "height": int(array.shape[0]),
        "channels": 1 if array.ndim == 2 else int(array.shape[2]),
        "dtype": str(array.dtype),
    }
    return data, meta


def _plane_info(p: planes_of.Plane) -> dict[str, Any]:
    """A plane's layout for the browser (every field but the name, which is its key)."""
    return {k: v for k, v in dataclasses.asdict(p).items() if k != "name"}


def _plane_name(value: Any) -> str:
    if value not in planes_of.PLANES:
        raise ValidationError(f"a plane is one of {planes_of.PLANES}, not {value!r}")
    return str(value)


def _slice_number(value: Any, layout: planes_of.Plane) -> int:
    if type(value) is not int or not 0 <= value < layout.depth:
        raise ValidationError(f"the {layout.name} plane has slices 0 to {layout.depth - 1}, not {value!r}")
    return value


def _class_dicts(classes: Sequence[str | dict[str, Any] | ClassInfo] | Model) -> list[dict[str, Any]]:
    if isinstance(classes, Model):
        classes = classes.classes
    out = []
    for i, c in enumerate(classes):
        if isinstance(c, ClassInfo):
            out.append({"index": c.index, "name": c.name, "color": c.color, "description": c.description})
        elif isinstance(c, str):
            out.append({"index": i, "name": c, "color": PALETTE[i % len(PALETTE)], "description": ""})
        elif isinstance(c, dict) and "name" in c:
            out.append(
                {
                    "index": int(c.get("index", i)),
                    "name": str(c["name"]),
                    "color": str(c.get("color") or PALETTE[i % len(PALETTE)]),
                    "description": str(c.get("description", "")),
                }
            )
        else:
            raise ValidationError(f"a class is a name, a dict with a name, or a ClassInfo, not {c!r}")
    if len({c["index"] for c in out}) != len(out) or len({c["name"] for c in out}) != len(out):
        raise ValidationError("class names and indices must be unique")
    return out


def _presets(presets: str | Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A modality name (``"CT"``) or a list of ``{"name", "center", "width"}`` as checked presets."""
    if presets is None:
        return []
    if isinstance(presets, str):
        return imaging.window_presets(presets)
    out = []
    for p in presets:
        try:
            name, center, width = str(p["name"]), float(p["center"]), float(p["width"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"a window preset is {{'name', 'center', 'width'}}, not {p!r}") from None
        if not width > 0:
            raise ValidationError(f"window preset {name!r} needs a positive width")
        entry = {"name": name, "center": center, "width": width}
        out.append(entry)
    return out


def _describe(label) -> str:
    if label is None or label.status == "assigned":
        return "Unlabeled" if label is None else f"Assigned to you ({label.reader}): not read yet"
    state = "Submitted" if label.status == "submitted" else "Draft"
    whose = f"your reading ({label.reader})" if label.reader else "label"
    text = f"{state} {whose}, version {label.version}, by {label.author}, {label.updated[:19].replace('T', ' ')} UTC"
    review = label.review or {}
    if review.get("state") == "returned":
        text += f" - returned by {review.get('by')}: {review.get('comment')}"
    elif review.get("state") == "accepted":
        text += f" - accepted by {review.get('by')}"
    return text
