"""The three planes of a volume (axial, coronal, sagittal) as 2-D images, and writing back into them.

A volume is a (Z, Y, X) array with an affine to RAS+ mm (see ``volumes``). Each anatomical plane
is normal to one array axis: the axis whose direction in the world lies closest to the plane's
normal (S-I for axial, A-P for coronal, R-L for sagittal), so a sagittal MR series shows its own
slices as "sagittal". A plane's image has the other two array axes as rows and columns, in
array order; its rows are flipped where that puts superior (or anterior) at the top, as a
radiologist reads them. :func:`take` and :func:`put` use the same layout, so a stroke painted
on any plane lands on the voxels it was painted over.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["PLANES", "Plane", "layout", "pixel", "put", "take", "voxel"]

PLANES = ("axial", "coronal", "sagittal")


@dataclass(frozen=True)
class Plane:
    """How one plane is cut from the (Z, Y, X) array."""

    name: str
    axis: int  # the array axis the plane is normal to; its index picks the slice
    rows: int  # the array axis down the image
    cols: int  # the array axis across it
    flip_rows: bool  # superior (coronal, sagittal) or anterior (axial) at the top
    flip_cols: bool  # the patient's right on the left (axial, coronal), anterior on the left (sagittal)
    depth: int  # slices in this plane
    height: int
    width: int
    row_mm: float  # spacing down the image and across it
    col_mm: float
    slice_mm: float  # between slices
    #: the world coordinate (RAS mm) along the plane's normal of slice 0's centre, and per slice
    origin_mm: float = 0.0
    step_mm: float = 0.0


def _directions(affine) -> np.ndarray:
    """The world direction of array axes 0, 1, 2 (Z, Y, X), as unit rows."""
    a = np.asarray(affine, float)[:3, :3]
    columns = [a[:, 2], a[:, 1], a[:, 0]]  # the affine's columns are X (i), Y (j), Z (k)
    return np.array([c / (np.linalg.norm(c) or 1.0) for c in columns])


def layout(shape: tuple[int, ...], affine) -> dict[str, Plane]:
    """The three planes of a volume of ``shape`` (Z, Y, X) with ``affine``, by name."""
    directions = _directions(affine)
    a = np.asarray(affine, float)
    spacing = np.linalg.norm(a[:3, :3], axis=0)[::-1]  # (dz, dy, dx)
    # the array axis along each world axis (R-L, A-P, S-I): the assignment that lines them up best
    world_axis = max(
        itertools.permutations(range(3)),
        key=lambda perm: sum(abs(directions[axis][world]) for world, axis in enumerate(perm)),
    )
    along = {"rl": world_axis[0], "ap": world_axis[1], "si": world_axis[2]}
    # (normal, rows, cols, which way is up / left): axial A-P down, R-L across; coronal and sagittal S-I down
    spec = {"axial": ("si", "ap", "rl"), "coronal": ("ap", "si", "rl"), "sagittal": ("rl", "si", "ap")}
    out = {}
    for name, (normal, down, across) in spec.items():
        rows, cols = along[down], along[across]
        d_rows, d_cols = directions[rows], directions[cols]
        out[name] = Plane(
            name=name,
            axis=along[normal],
            rows=rows,
            cols=cols,
            flip_rows=bool(d_rows[_WORLD[down]] > 0),  # up is anterior / superior
            flip_cols=bool(d_cols[_WORLD[across]] > 0),  # left is the patient's right / anterior
            depth=int(shape[along[normal]]),
            height=int(shape[rows]),
            width=int(shape[cols]),
            row_mm=float(spacing[rows]),
            col_mm=float(spacing[cols]),
            slice_mm=float(spacing[along[normal]]),
            origin_mm=float(a[_WORLD[normal], 3]),
            step_mm=float(a[_WORLD[normal], 2 - along[normal]]),
        )
    return out


_WORLD = {"rl": 0, "ap": 1, "si": 2}


def _view(volume: np.ndarray, plane: Plane, index: int) -> np.ndarray:
    """Slice ``index`` of ``plane`` as displayed: a view of ``volume`` (writes go through)."""
    if not 0 <= index < plane.depth:
        raise IndexError(f"the {plane.name} plane has slices 0 to {plane.depth - 1}, not {index}")
    key: list[slice | int] = [slice(None)] * 3
    key[plane.axis] = index
    view = volume[tuple(key)]
    if plane.rows > plane.cols:
        view = view.T
    if plane.flip_rows:
        view = view[::-1]
    if plane.flip_cols:
        view = view[:, ::-1]
    return view


def take(volume: np.ndarray, plane: Plane, index: int) -> np.ndarray:
    """Slice ``index`` of ``plane`` as a contiguous 2-D image (rows, columns as displayed)."""
    return np.ascontiguousarray(_view(volume, plane, index))


def put(volume: np.ndarray, plane: Plane, index: int, x: int, y: int, patch: np.ndarray) -> None:
    """Write ``patch`` (as displayed) at display position (x, y) of slice ``index`` of ``plane``, in place."""
    h, w = patch.shape
    if not (x >= 0 and y >= 0 and x + w <= plane.width and y + h <= plane.height):
        raise IndexError(f"a {w} x {h} region at ({x}, {y}) lies outside the {plane.name} slice {index}")
    _view(volume, plane, index)[y : y + h, x : x + w] = patch


def voxel(plane: Plane, index: int, x: int, y: int) -> tuple[int, int, int]:
    """The (z, y, x) array index of display pixel (x, y) of slice ``index`` of ``plane``."""
    r = plane.height - 1 - y if plane.flip_rows else y
    c = plane.width - 1 - x if plane.flip_cols else x
    out = [0, 0, 0]
    out[plane.axis], out[plane.rows], out[plane.cols] = index, r, c
    return (out[0], out[1], out[2])


def pixel(plane: Plane, at: tuple[int, int, int]) -> tuple[int, int, int]:
    """Where array index ``at`` (z, y, x) shows in ``plane``: (slice, x, y)."""
    r, c = at[plane.rows], at[plane.cols]
    y = plane.height - 1 - r if plane.flip_rows else r
    x = plane.width - 1 - c if plane.flip_cols else c
    return (at[plane.axis], x, y)
