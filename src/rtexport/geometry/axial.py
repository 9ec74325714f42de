"""Axial CT image orientations (PS3.3 C.7.6.2.1.1) and the canonical grid the rest of the system uses.

A slice's ImageOrientationPatient gives the patient-space direction of a row (increasing column index) and of a
column (increasing row index). Scanners write each cosine as ±1 along x or y, in either order, depending on the
patient position (a prone scan is [-1,0,0,0,-1,0]); all are axial. The canonical grid has x increasing along
columns and y along rows: reading pixels into it is a transpose and flips, never an interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_TOLERANCE = 1e-3


class OrientationError(ValueError):
    """An image orientation that no axial grid describes; the message says why."""


@dataclass(frozen=True)
class CanonicalGrid:
    """A slice's pixels on the canonical axial grid: centre of the first pixel (min x, min y), spacing
    (dy, dx) in PixelSpacing order, and the number of rows (y) and columns (x)."""

    origin_xy_mm: tuple[float, float]
    spacing_yx_mm: tuple[float, float]
    rows: int
    columns: int


@dataclass(frozen=True)
class AxialOrientation:
    """Row and column direction cosines of an axial slice, each a unit vector along ±x or ±y."""

    row: tuple[int, int, int]
    column: tuple[int, int, int]

    @classmethod
    def parse(cls, iop: Sequence[float]) -> AxialOrientation:
        """Raise :class:`OrientationError` for anything but an axial orientation."""
        values = [float(v) for v in iop]
        if len(values) != 6:
            raise OrientationError(f"ImageOrientationPatient needs 6 values, got {len(values)}")
        rounded = [round(v) for v in values]
        if any(abs(v - r) > _TOLERANCE or r not in (-1, 0, 1) for v, r in zip(values, rounded, strict=True)):
            raise OrientationError(
                f"ImageOrientationPatient {values} is tilted (gantry tilt or oblique reconstruction); "
                "reconstruct the series as axial slices"
            )
        row = (rounded[0], rounded[1], rounded[2])
        column = (rounded[3], rounded[4], rounded[5])
        for name, v in (("row", row), ("column", column)):
            if sum(abs(c) for c in v) != 1:
                raise OrientationError(f"ImageOrientationPatient {values}: the {name} direction is not a unit vector")
        if row[2] or column[2]:
            raise OrientationError(
                f"ImageOrientationPatient {values} is not axial (a coronal or sagittal slice); import axial CT"
            )
        if abs(row[0]) == abs(column[0]):
            raise OrientationError(f"ImageOrientationPatient {values}: row and column are not perpendicular")
        return cls(row, column)

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (*self.row, *self.column)

    @property
    def transposed(self) -> bool:
        """True when rows run along y (and columns along x)."""
        return self.row[0] == 0

    def canonical_pixels(self, pixels: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """A stored slice [row, column] as [y, x], x and y increasing (a view where possible)."""
        a = pixels.T if self.transposed else pixels
        flip_y = (self.row[1] if self.transposed else self.column[1]) < 0
        flip_x = (self.column[0] if self.transposed else self.row[0]) < 0
        if flip_y:
            a = a[::-1, :]
        if flip_x:
            a = a[:, ::-1]
        return a

    def canonical_grid(
        self, first_xy_mm: tuple[float, float], pixel_spacing: tuple[float, float], rows: int, columns: int
    ) -> CanonicalGrid:
        """The canonical grid of a slice whose first stored pixel is at ``first_xy_mm``; ``pixel_spacing`` is
        PixelSpacing (row spacing, column spacing) of the stored image."""
        row_spacing, column_spacing = pixel_spacing
        # (count, spacing, sign) along x and y
        if self.transposed:
            x = (rows, row_spacing, self.column[0])
            y = (columns, column_spacing, self.row[1])
        else:
            x = (columns, column_spacing, self.row[0])
            y = (rows, row_spacing, self.column[1])

        def start(first: float, axis: tuple[int, float, int]) -> float:
            n, step, sign = axis
            return first if sign > 0 else first - (n - 1) * step

        return CanonicalGrid(
            origin_xy_mm=(start(first_xy_mm[0], x), start(first_xy_mm[1], y)),
            spacing_yx_mm=(y[1], x[1]),
            rows=y[0],
            columns=x[0],
        )

    def stored_pixels(self, canonical: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """The inverse of :meth:`canonical_pixels`: a canonical slice [y, x] as this orientation stores it."""
        a = canonical
        if (self.column[0] if self.transposed else self.row[0]) < 0:
            a = a[:, ::-1]
        if (self.row[1] if self.transposed else self.column[1]) < 0:
            a = a[::-1, :]
        return a.T if self.transposed else a

    def stored_layout(self, grid: CanonicalGrid) -> tuple[tuple[float, float], tuple[float, float], int, int]:
        """The inverse of :meth:`canonical_grid`: (first stored pixel x, y; PixelSpacing; Rows; Columns)."""
        (x0, y0), (dy, dx) = grid.origin_xy_mm, grid.spacing_yx_mm
        x_sign = self.column[0] if self.transposed else self.row[0]
        y_sign = self.row[1] if self.transposed else self.column[1]
        first = (
            x0 if x_sign > 0 else x0 + (grid.columns - 1) * dx,
            y0 if y_sign > 0 else y0 + (grid.rows - 1) * dy,
        )
        if self.transposed:
            return first, (dx, dy), grid.columns, grid.rows
        return first, (dy, dx), grid.rows, grid.columns
