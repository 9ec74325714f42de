"""Axial CT orientations: any ±1 row/column cosines along x and y, turned into one canonical grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rtexport.geometry.axial import AxialOrientation, OrientationError


def all_axial() -> list[tuple[int, ...]]:
    out = []
    for (a, b), sa, sb in itertools.product([(0, 1), (1, 0)], (1, -1), (1, -1)):
        row, col = [0, 0, 0], [0, 0, 0]
        row[a], col[b] = sa, sb
        out.append((*row, *col))
    return out


@pytest.mark.parametrize("iop", all_axial())
def test_every_axial_orientation_maps_pixels_to_the_same_canonical_grid(iop: tuple[int, ...]) -> None:
    """Write a known x/y pattern as a scanner with this orientation would, and read it back canonically."""
    o = AxialOrientation.parse([float(v) for v in iop])
    assert o.as_tuple() == iop
    spacing_x, spacing_y, nx, ny = 1.5, 2.0, 7, 5
    xs, ys = -4.0 + spacing_x * np.arange(nx), 10.0 + spacing_y * np.arange(ny)
    value = xs[None, :] * 100 + ys[:, None]  # canonical [y, x]
    row, col = np.array(iop[:3]), np.array(iop[3:])
    along_row_x = row[0] != 0
    n_cols, n_rows = (nx, ny) if along_row_x else (ny, nx)
    col_spacing, row_spacing = (spacing_x, spacing_y) if along_row_x else (spacing_y, spacing_x)
    # the first transmitted pixel is where the row and column directions start
    first = np.array([xs[0] if (row[0] > 0 or col[0] > 0) else xs[-1], ys[0] if (row[1] > 0 or col[1] > 0) else ys[-1]])
    stored = np.empty((n_rows, n_cols))
    for i in range(n_rows):
        for j in range(n_cols):
            p = first + j * col_spacing * row[:2] + i * row_spacing * col[:2]
            stored[i, j] = p[0] * 100 + p[1]
    grid = o.canonical_grid((float(first[0]), float(first[1])), (row_spacing, col_spacing), n_rows, n_cols)
    assert grid.origin_xy_mm == pytest.approx((xs[0], ys[0]))
    assert grid.spacing_yx_mm == (spacing_y, spacing_x)
    assert (grid.rows, grid.columns) == (ny, nx)
    assert np.array_equal(o.canonical_pixels(stored), value)
    # and back, as a scanner (or the demo phantom) writes it
    assert np.array_equal(o.stored_pixels(value), stored)
    assert o.stored_layout(grid) == ((first[0], first[1]), (row_spacing, col_spacing), n_rows, n_cols)


@pytest.mark.parametrize(
    ("iop", "reason"),
    [
        ([1, 0, 0, 0, 0.996, -0.087], "gantry tilt or oblique"),
        ([1, 0, 0, 0, 0, -1], "not axial"),
        ([0.7071, 0.7071, 0, -0.7071, 0.7071, 0], "gantry tilt or oblique"),
        ([1, 0, 0, 1, 0, 0], "not perpendicular"),
    ],
)
def test_what_cannot_be_handled_is_refused_with_the_reason(iop: list[float], reason: str) -> None:
    with pytest.raises(OrientationError, match=reason):
        AxialOrientation.parse(iop)
