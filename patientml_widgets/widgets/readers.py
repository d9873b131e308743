"""ReaderComparison and AgreementChart: an example's readings side by side with their consensus, and how well
each reader agrees with the others (bqplot). Both show only what the current user may see (blind reading).
"""

from __future__ import annotations

import io
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np
from PIL import Image

from .. import imaging
from ..errors import PermissionDenied
from ..project import Project
from ..records import Label, Model
from .base import Notice, View, message, run_callbacks
from .label_canvas import LabelCanvas
from .markup import HTML, escape, html, number, table

__all__ = ["AgreementChart", "ReaderComparison"]

#: one colour per reader, in the outline view (the consensus is drawn in white)
READER_COLORS = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#e52592", "#5f6368"]
TILE_PX = 240


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], np.float32)


def _base(image: np.ndarray, source: dict[str, Any]) -> np.ndarray:
    """The image as RGB float for drawing on (windowed as the canvas shows it)."""
    window = source.get("window") if isinstance(source.get("window"), dict) else None
    gray = imaging.apply_window(image if image.ndim == 2 else image[..., :3], window)
    rgb = np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray
    return rgb.astype(np.float32)


def tinted(image: np.ndarray, mask: np.ndarray, colors: dict[int, str], alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: ``image`` (H, W, 3 float) with each class of ``mask`` blended in its colour."""
    out = image.copy()
    for index, color in colors.items():
        where = mask == index
        if index and where.any():
            out[where] = (1 - alpha) * out[where] + alpha * _rgb(color)
    return np.clip(out, 0, 255).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of the foreground that touch another class (4-neighbourhood)."""
    edge = np.zeros(mask.shape, bool)
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    return edge & (mask > 0)


def outlines(image: np.ndarray, masks: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """RGB uint8: ``image`` with each mask's outline in its colour (later ones on top)."""
    out = image.copy()
    for mask, color in masks:
        out[outline(mask)] = _rgb(color)
    return np.clip(out, 0, 255).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _tile(rgb: np.ndarray, caption: str) -> w.VBox:
    picture = w.Image(value=png(rgb), format="png", layout=w.Layout(width=f"{TILE_PX}px", height="auto"))
    caption_html = HTML(html("<div style='font-size:12px;max-width:{}px'>{}</div>", TILE_PX, caption))
    return w.VBox([picture, caption_html], layout=w.Layout(margin="0 8px 8px 0"))


class ReaderComparison(View, w.VBox):
    """One example's readings: each reader's mask side by side, all outlines over the image, the consensus and
    the agreement figures; for classes, a table of what each reader chose. A reviewer settles it here: pick a
    reader's label, accept the consensus, or return the readings with a comment.
    """

    def __init__(self, project: Project, example: Any, *, slice_index: int | None = None) -> None:
        self.project = project
        self.example = project.example(example)
        self.model: Model = project.model(self.example.model_id)
        self.slice_index = slice_index
        self.notice = Notice()
        self.body = w.VBox()
        self.actions = w.VBox()
        self.editor: LabelCanvas | None = None
        self._settled = w.CallbackDispatcher()
        self.follow(project, lambda _: self.refresh(), model_id=self.model.id, tables=("labels", "readings", "members"))
        super().__init__([self.body, self.actions, self.notice])
        self.refresh()

    # -- what the user may see -----------------------------------------------------------------

    def _label(self) -> Label | PermissionDenied | None:
        try:
            return self.project.label(self.example)
        except PermissionDenied as e:
            return e

    def refresh(self) -> None:
        readings = [r for r in self.project.readings(self.example) if r.status in ("draft", "submitted")]
        found = self._label()
        hidden = isinstance(found, PermissionDenied)
        label = None if isinstance(found, PermissionDenied) else found
        parts: list[w.Widget] = [
            HTML(html("<b>Readings of {}</b> ({} shown)", self.example.id, len(readings))),
        ]
        mine = next((r for r in self.project.readings(self.example) if r.reader == self.project.user), None)
        if hidden or (
            mine is not None and mine.status != "submitted" and self.project.reading_plan(self.model)["blind"]
        ):
            parts.append(message("Blind reading: the other readers' labels are shown once yours is submitted."))
        if self.model.problem_type == "segmentation":
            parts += self._masks(readings, label)
        else:
            parts.append(self._classes(readings, label))
        self.body.children = parts
        self.actions.children = self._settle_controls(readings, label)

    # -- masks ---------------------------------------------------------------------------------

    def _plane(self, mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None or mask.ndim == 2:
            return mask
        k = self._slice(mask)
        return mask[k]

    def _slice(self, mask: np.ndarray) -> int:
        if self.slice_index is None:  # the slice where the readers drew most
            self.slice_index = int(np.argmax((mask > 0).reshape(len(mask), -1).sum(1)))
        return min(max(self.slice_index, 0), len(mask) - 1)

    def _masks(self, readings: list[Label], label: Label | None) -> list[w.Widget]:
        masks = {str(r.reader): self.project.reading_mask(self.example, r.reader) for r in readings}
        consensus = self.project.mask(self.example) if label is not None else None
        ref = next((m for m in [consensus, *masks.values()] if m is not None), None)
        if ref is not None and ref.ndim == 3:
            self._slice(ref)
            image = self.project.image_slice(self.example, self._slice(ref))
        else:
            image = self.project.image(self.example)
        base = _base(image, self.example.source)
        colors = {c.index: c.color for c in self.model.classes}
        consensus_2d = self._plane(consensus)
        tiles = []
        for n, (reader, full) in enumerate(masks.items()):
            plane = self._plane(full)
            if plane is None:
                continue
            caption = html(
                "<span style='color:{}'>&#9632;</span> <b>{}</b> - {} v{}{}",
                READER_COLORS[n % len(READER_COLORS)],
                reader,
                next(r.status for r in readings if r.reader == reader),
                next(r.version for r in readings if r.reader == reader),
                "" if consensus_2d is None else f", Dice with the consensus {number(_dice(full, consensus), '.3f')}",
            )
            tiles.append(_tile(tinted(base, plane, colors), caption))
        if consensus_2d is not None and label is not None:
            tiles.append(_tile(tinted(base, consensus_2d, colors), escape(_consensus_caption(label))))
        drawn = [(self._plane(m), READER_COLORS[n % len(READER_COLORS)]) for n, m in enumerate(masks.values())]
        lines = [(m, c) for m, c in drawn if m is not None]
        if consensus_2d is not None:
            lines.append((consensus_2d, "#ffffff"))
        out: list[w.Widget] = [w.HBox(tiles, layout=w.Layout(flex_flow="row wrap"))]
        if lines:
            out.append(_tile(outlines(base, lines), escape("All outlines over the image (white: the consensus)")))
        if ref is not None and ref.ndim == 3:
            out.insert(0, message(f"Slice {self._slice(ref) + 1} of {len(ref)} (the one the readers drew most on)"))
        out.append(self._figures(list(masks), [m for m in masks.values() if m is not None]))
        return out

    def _figures(self, readers: list[str], masks: list[np.ndarray]) -> HTML:
        if len(masks) < 2:
            return HTML(html("<i>{}</i>", "Agreement needs two submitted readings you may see."))
        from .. import agreement

        pairs = agreement.pairwise_mask_agreement(masks)
        rows = [[f"{readers[i]} / {readers[j]}", number(v["dice"], ".3f"), number(v["iou"], ".3f")]
                for (i, j), v in pairs.items()]  # fmt: skip
        return HTML(table(["readers", "Dice", "IoU"], rows))

    # -- classes -------------------------------------------------------------------------------

    def _classes(self, readings: list[Label], label: Label | None) -> HTML:
        names = {c.index: c.name for c in self.model.classes}

        def chosen(classes) -> str:
            return ", ".join(names.get(c, f"({c})") for c in classes) or "-"

        rows = [[r.reader, chosen(r.classes), f"{r.status} v{r.version}"] for r in readings]
        if label is not None:
            rows.append([html("<b>{}</b>", "the example's label"), chosen(label.classes), _consensus_caption(label)])
        return HTML(table(["reader", "classes", "status"], rows))

    # -- settling (reviewers) ------------------------------------------------------------------

    def _settle_controls(self, readings: list[Label], label: Label | None) -> list[w.Widget]:
        submitted = [r.reader for r in readings if r.status == "submitted"]
        if not submitted:
            return []
        allowed = self.project.can("reviewer")
        why = (
            ""
            if allowed
            else f"settling readings needs the reviewer role ({self.project.user} is a {self.project.role})"
        )
        # the reading to take: a menu (its options are text; a button's description would be typeset)
        self.pick = w.Dropdown(options=submitted, value=submitted[0], disabled=not allowed,
                               layout=w.Layout(width="160px"))  # fmt: skip
        use = w.Button(description="Use this reading", disabled=not allowed,
                       tooltip=why or "adjudicate: the chosen reader's label becomes the example's")  # fmt: skip
        use.on_click(self.guarded(lambda _b: self._adjudicate(str(self.pick.value))))
        picks = [self.pick, use]
        accept = w.Button(description="Accept consensus", button_style="success", tooltip=why,
                          disabled=not allowed or label is None or label.status != "submitted")  # fmt: skip
        accept.on_click(self.guarded(lambda _b: self._accept()))
        self.comment = w.Text(placeholder="What should the readers change?", disabled=not allowed)
        back = w.Button(description="Return readings", button_style="danger", disabled=not allowed, tooltip=why)
        back.on_click(self.guarded(lambda _b: self._return()))
        row = [*picks, accept]
        if self.model.problem_type == "segmentation":
            edit = w.Button(description="Edit the consensus", disabled=not allowed, tooltip=why)
            edit.on_click(self.guarded(lambda _b: self._edit()))
            row.append(edit)
        return [w.HBox(row), w.HBox([self.comment, back])]

    def on_settle(self, callback, remove: bool = False) -> None:
        """Call ``callback(view)`` after a reviewer settled the example here (adjudicated, accepted, returned)."""
        self._settled.register_callback(callback, remove=remove)

    def _done(self, text: str) -> None:
        self.notice.show(text, "green")
        run_callbacks(self._settled, self, on_error=lambda e: self.notice.error(e))

    def _adjudicate(self, reader: str) -> None:
        self.project.adjudicate(self.example, reader=reader, comment=self.comment.value)
        self._done(f"{reader}'s label is the example's label now (adjudicated)")

    def _accept(self) -> None:
        self.project.review(self.example, "accept", self.comment.value)
        self._done("Consensus accepted")

    def _return(self) -> None:
        self.project.review(self.example, "return", self.comment.value)
        self._done("Readings returned to their readers")

    def _edit(self) -> None:
        """A canvas on the consensus (or the first reading): the mask a reviewer draws becomes the label."""
        start = self.project.mask(self.example)
        if start is None:
            first = next((r for r in self.project.readings(self.example) if r.status == "submitted"), None)
            start = None if first is None else self.project.reading_mask(self.example, first.reader)
        image = self.project.volume(self.example) if self.example.is_volume else self.project.image(self.example)
        self.editor = LabelCanvas(image, self.model, mask=start)
        use = w.Button(description="Adjudicate with this mask", button_style="primary")
        use.on_click(self.guarded(lambda _b: self._use_edit()))
        self.actions.children = [*self.actions.children[:2], self.editor, use]

    def _use_edit(self) -> None:
        assert self.editor is not None
        self.project.adjudicate(self.example, mask=self.editor.mask, comment=self.comment.value)
        self._done("The edited mask is the example's label now (adjudicated)")


def _dice(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    from .. import agreement

    return agreement.mask_agreement(a, b)["dice"]


def _consensus_caption(label: Label) -> str:
    made = {"consensus": "consensus", "adjudicated": "adjudicated", "import": "imported"}.get(
        label.source, label.source
    )
    agreed = f", agreement {label.agreement:.3f}" if label.agreement is not None else ""
    review = f", {label.review['state']} by {label.review.get('by')}" if label.review else ""
    return f"The example's label: {made} of {', '.join(label.readers) or '-'} ({label.status}{agreed}{review})"


class AgreementChart(View, w.VBox):
    """Per reader, how well they agree with each of the others (bars: Dice for masks, Cohen's kappa for single-
    label classes, else the share of examples read alike), with the per-pair table and Fleiss' kappa.
    """

    def __init__(self, project: Project, model: Model | str) -> None:
        self.project = project
        self._model = project.model(model)
        self.x = bq.OrdinalScale()
        self.y = bq.LinearScale(min=0.0, max=1.0)
        self.bars = bq.Bars(x=[], y=[], scales={"x": self.x, "y": self.y}, type="grouped", labels=[],
                            display_legend=True, colors=READER_COLORS)  # fmt: skip
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[bq.Axis(scale=self.x, label="reader"), bq.Axis(scale=self.y, side="left", label="")],
            title="Agreement per reader", legend_location="top-right",
            fig_margin={"top": 40, "bottom": 50, "left": 60, "right": 140},
            layout=w.Layout(width="100%", height="340px"),
        )  # fmt: skip
        self.table = HTML()
        self.notice = Notice()
        self.follow(project, lambda _: self.refresh(), model_id=self._model.id, tables=("readings",))
        super().__init__([self.figure, self.table, self.notice])
        self.refresh()

    def refresh(self) -> None:
        figures = self.project.agreement(self._model.id)
        pairs = figures["pairs"]
        measure = "dice" if self._model.problem_type == "segmentation" else "kappa"
        if pairs and measure not in next(iter(pairs.values())):
            measure = "agree"
        readers = sorted({r for key in pairs for r in key.split(" / ")})
        by_pair = {tuple(key.split(" / ")): v for key, v in pairs.items()}

        # one group of bars per reader: their figure with each other reader (0 where they read nothing together)
        def between(a: str, b: str) -> float:
            found = by_pair.get((a, b)) or by_pair.get((b, a)) or {}
            return float(found.get(measure, np.nan)) if a != b else np.nan

        values = [[between(r, other) for r in readers] for other in readers]
        label = {"dice": "mean Dice", "kappa": "Cohen's kappa", "agree": "share read alike"}[measure]
        self.y.min = -1.0 if measure == "kappa" else 0.0
        self.figure.axes[1].label = label
        if readers:
            self.bars.x = readers
            self.bars.y = np.nan_to_num(np.array(values), nan=0.0)
            self.bars.labels = [f"with {r}" for r in readers]
        else:
            self.bars.x, self.bars.y, self.bars.labels = [], [], []
        rows = [[key, number(v.get(measure), ".3f"), v["examples"]] for key, v in sorted(pairs.items())]
        fleiss = figures.get("fleiss_kappa")
        kappa = (
            html("<p>Fleiss' kappa over all readers: <b>{}</b></p>", number(fleiss, ".3f"))
            if fleiss is not None
            else ""
        )
        self.table.value = html("{}{}", table(["readers", label, "examples"], rows), kappa)
        if not readers:
            self.notice.show("No example has two submitted readings yet.")
        else:
            self.notice.clear()
