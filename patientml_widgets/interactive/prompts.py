"""What the user gave an interactive engine: positive / negative clicks, a box, scribbles.

Coordinates are image pixels: x the column, y the row (the centre of pixel (r, c) is (c, r)).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["MAX_POINTS", "Prompts", "Scribble"]

MAX_POINTS = 20_000  # clicks plus scribble points: more is refused (a browser sends far fewer)


@dataclass(frozen=True)
class Scribble:
    """A polyline painted over the object (positive) or beside it (negative), ``width`` pixels wide."""

    positive: bool
    points: tuple[tuple[float, float], ...]
    width: float = 3.0


@dataclass(frozen=True)
class Prompts:
    """Clicks ``(x, y, positive)``, an optional box ``(x0, y0, x1, y1)`` (corners, x0 <= x1, y0 <= y1)
    and scribbles, in the order the user gave them (the last click is ``points[-1]``).
    """

    points: tuple[tuple[float, float, bool], ...] = ()
    box: tuple[float, float, float, float] | None = None
    scribbles: tuple[Scribble, ...] = field(default=())

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: Any, shape: tuple[int, int]) -> Prompts:
        """Prompts from the browser's JSON ``{"points": [[x, y, positive], ...], "box": [x0, y0, x1, y1] | null,
        "scribbles": [{"positive": bool, "points": [[x, y], ...], "width": w}, ...]}``, checked against an
        image of ``shape`` (H, W): numbers finite, points inside the image, at most MAX_POINTS in all.
        """
        if not isinstance(data, dict):
            raise ValidationError(f"prompts are a dict of points, box and scribbles, not {type(data).__name__}")
        unknown = set(data) - {"points", "box", "scribbles"}
        if unknown:
            raise ValidationError(f"unknown prompt fields {sorted(unknown)} (known: points, box, scribbles)")
        h, w = int(shape[0]), int(shape[1])
        raw_points = _list(data.get("points"), "points")
        raw_scribbles = _list(data.get("scribbles"), "scribbles")
        total = len(raw_points) + sum(len(s.get("points") or []) if isinstance(s, dict) else 0 for s in raw_scribbles)
        if total > MAX_POINTS:
            raise ValidationError(f"{total} prompt points is more than the {MAX_POINTS} an image takes")
        points = []
        for p in raw_points:
            if not (isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[2], bool)):
                raise ValidationError(f"a click is [x, y, positive], not {p!r}")
            x, y = _xy(p[:2], h, w)
            points.append((x, y, p[2]))
        box = None
        if data.get("box") is not None:
            b = data["box"]
            if not (isinstance(b, (list, tuple)) and len(b) == 4):
                raise ValidationError(f"a box is [x0, y0, x1, y1], not {b!r}")
            x0, y0 = _xy(b[:2], h, w)
            x1, y1 = _xy(b[2:], h, w)
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        scribbles = []
        for s in raw_scribbles:
            if not (isinstance(s, dict) and isinstance(s.get("positive"), bool)):
                raise ValidationError(f"a scribble is {{'positive': bool, 'points': [[x, y], ...]}}, not {s!r}")
            pts = tuple(_xy(q, h, w) for q in _list(s.get("points"), "scribble points"))
            if not pts:
                continue
            width = s.get("width", 3.0)
            if not (isinstance(width, (int, float)) and not isinstance(width, bool) and 1 <= width <= 200):
                raise ValidationError(f"a scribble's width is 1-200 pixels, not {width!r}")
            scribbles.append(Scribble(s["positive"], pts, float(width)))
        return cls(tuple(points), box, tuple(scribbles))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :meth:`parse` reads."""
        return {
            "points": [[x, y, p] for x, y, p in self.points],
            "box": list(self.box) if self.box is not None else None,
            "scribbles": [{"positive": s.positive, "points": [list(q) for q in s.points], "width": s.width}
                          for s in self.scribbles],
        }  # fmt: skip

    # -- facts -----------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None and not self.scribbles

    @property
    def positives(self) -> list[tuple[float, float]]:
        return [(x, y) for x, y, p in self.points if p]

    @property
    def negatives(self) -> list[tuple[float, float]]:
        return [(x, y) for x, y, p in self.points if not p]

    @property
    def count(self) -> int:
        """Interactions: each click, each scribble and the box count one."""
        return len(self.points) + len(self.scribbles) + (self.box is not None)

    def with_click(self, x: float, y: float, positive: bool) -> Prompts:
        return Prompts((*self.points, (float(x), float(y), bool(positive))), self.box, self.scribbles)

    def transformed(self, scale_y: float, scale_x: float, top: float = 0.0, left: float = 0.0) -> Prompts:
        """The prompts in a crop starting at (``top``, ``left``), then scaled: x' = (x - left) * scale_x."""

        def tx(x: float) -> float:
            return (x - left) * scale_x

        def ty(y: float) -> float:
            return (y - top) * scale_y

        box = None if self.box is None else (tx(self.box[0]), ty(self.box[1]), tx(self.box[2]), ty(self.box[3]))
        return Prompts(
            tuple((tx(x), ty(y), p) for x, y, p in self.points),
            box,
            tuple(Scribble(s.positive, tuple((tx(x), ty(y)) for x, y in s.points), s.width * min(scale_x, scale_y))
                  for s in self.scribbles),
        )  # fmt: skip

    def extent(self) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) around every click, scribble point and the box; None when empty."""
        xs = [x for x, _, _ in self.points] + [x for s in self.scribbles for x, _ in s.points]
        ys = [y for _, y, _ in self.points] + [y for s in self.scribbles for _, y in s.points]
        if self.box is not None:
            xs += [self.box[0], self.box[2]]
            ys += [self.box[1], self.box[3]]
        if not xs:
            return None
        return min(xs), min(ys), max(xs), max(ys)

    def seed_map(self, shape: tuple[int, int], radius: float = 2.0) -> np.ndarray:
        """uint8 (H, W): 1 under positive clicks (disks of ``radius``) and scribbles, 2 under negative ones,
        0 elsewhere (the box is not drawn). A later prompt overwrites an earlier one where they overlap.
        """
        h, w = int(shape[0]), int(shape[1])
        seeds = np.zeros((h, w), np.uint8)
        strokes: list[tuple[bool, tuple[tuple[float, float], ...], float]] = [
            (s.positive, s.points, s.width / 2) for s in self.scribbles
        ]
        strokes += [(p, ((x, y),), radius) for x, y, p in self.points]
        for positive, pts, r in strokes:
            _polyline(seeds, pts, max(0.5, r), 1 if positive else 2)
        return seeds


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"{what} is a list, not {type(value).__name__}")
    return list(value)


def _xy(pair: Any, h: int, w: int) -> tuple[float, float]:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
        raise ValidationError(f"a point is [x, y], not {pair!r}")
    out = []
    for v, n, name in ((pair[0], w, "x"), (pair[1], h, "y")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValidationError(f"a point's {name} is a finite number, not {v!r}")
        if not -0.5 <= v <= n - 0.5:
            raise ValidationError(f"the point {list(pair)} lies outside the {w} x {h} image")
        out.append(float(v))
    return out[0], out[1]


def _polyline(seeds: np.ndarray, pts: tuple[tuple[float, float], ...], radius: float, value: int) -> None:
    """Paint disks of ``radius`` along the polyline (every half radius), clipped to the map."""
    h, w = seeds.shape
    samples: list[tuple[float, float]] = [pts[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        n = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / max(0.5, radius / 2)))
        samples += [(x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n) for t in range(1, n + 1)]
    r = math.ceil(radius)
    for x, y in samples:
        cx, cy = round(x), round(y)
        r0, r1, c0, c1 = max(0, cy - r), min(h, cy + r + 1), max(0, cx - r), min(w, cx + r + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.ogrid[r0:r1, c0:c1]
        disk = (yy - y) ** 2 + (xx - x) ** 2 <= radius**2
        if not disk.any():  # a radius below one pixel still marks the pixel under the point
            disk[min(max(cy - r0, 0), r1 - r0 - 1), min(max(cx - c0, 0), c1 - c0 - 1)] = True
        seeds[r0:r1, c0:c1][disk] = value
