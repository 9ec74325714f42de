"""Sampling volumes indexed [z, y, x] at patient points: the one trilinear (or nearest) sampler.

Axes are the voxel-centre coordinates (x, y, z); x and y are evenly spaced, z may be uneven (CT slices). Outside
the volume a sample is 0 (``outside="zero"``) or the nearest edge value (``outside="edge"``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from rtexport.model.dose import GridGeometry

FloatArray = npt.NDArray[np.float64]
Axes = tuple[FloatArray, FloatArray, FloatArray]
Outside = Literal["zero", "edge"]

_FAR = 1e9  # an index this far out is outside any volume


def _step(axis: FloatArray) -> float:
    return float(axis[1] - axis[0]) if len(axis) > 1 else 1.0


def index_on_axes(axes: Axes, points: FloatArray) -> FloatArray:
    """Fractional [z, y, x] indices (3, ...) of points (..., 3)."""
    xs, ys, zs = axes
    p = np.asarray(points, dtype=np.float64)
    ix = (p[..., 0] - xs[0]) / _step(xs)
    iy = (p[..., 1] - ys[0]) / _step(ys)
    if len(zs) > 1:
        iz = np.interp(p[..., 2], zs, np.arange(len(zs), dtype=np.float64), left=-_FAR, right=_FAR)
    else:
        iz = np.where(np.abs(p[..., 2] - zs[0]) < 1e-6, 0.0, -_FAR)
    return np.stack([iz, iy, ix])


def index_on_grid(grid: GridGeometry, points: FloatArray) -> FloatArray:
    """Fractional [z, y, x] indices (3, ...) of points (..., 3) on an evenly spaced grid."""
    p = np.asarray(points, dtype=np.float64)
    return grid_index(grid, p[..., 0], p[..., 1], p[..., 2])


def grid_index(grid: GridGeometry, x: FloatArray, y: FloatArray, z: FloatArray) -> FloatArray:
    """Fractional [z, y, x] indices (3, ...) of points given by their coordinates (matching shapes)."""
    (ox, oy, oz), (dx, dy, dz) = grid.origin_mm, grid.spacing_mm
    return np.stack([(z - oz) / dz, (y - oy) / dy, (x - ox) / dx])


def sample_at(
    volume: npt.NDArray[np.generic], index: FloatArray, order: int = 1, outside: Outside = "zero"
) -> FloatArray:
    """Samples of ``volume`` at fractional indices (3, ...): trilinear (order 1) or nearest (order 0)."""
    # A mask is read in place as bytes: converting a CT-sized mask to float on every call costs more than sampling.
    vol = volume.view(np.uint8) if volume.dtype == bool else volume
    flat = index.reshape(3, -1)
    mode = "constant" if outside == "zero" else "nearest"
    out = ndimage.map_coordinates(vol, flat, order=order, mode=mode, cval=0.0, prefilter=False, output=np.float64)
    return np.asarray(out, dtype=np.float64).reshape(index.shape[1:])


def sample(
    volume: npt.NDArray[np.generic], axes: Axes, points: FloatArray, order: int = 1, outside: Outside = "zero"
) -> FloatArray:
    """Samples of ``volume`` (on ``axes``) at patient points (..., 3)."""
    return sample_at(volume, index_on_axes(axes, points), order, outside)


def resample(
    volume: npt.NDArray[np.floating] | npt.NDArray[np.integer], axes: Axes, grid: GridGeometry
) -> npt.NDArray[np.float32]:
    """``volume`` trilinearly resampled onto ``grid`` (edge values outside), one output plane at a time so that
    memory stays at two input slices whatever the volume's size."""
    xs, ys, zs = axes
    gx, gy, gz = grid.axes()
    iz = np.interp(gz, zs, np.arange(len(zs), dtype=np.float64)) if len(zs) > 1 else np.zeros(len(gz))
    fy, fx = (gy - ys[0]) / _step(ys), (gx - xs[0]) / _step(xs)
    # only the rows and columns the grid reaches are blended: the coordinates move by whole voxels (exactly), and
    # the window reaches the volume's edge wherever a coordinate does, so "nearest" clamps as on the whole plane
    rows, cols = _window(fy, volume.shape[1]), _window(fx, volume.shape[2])
    yy, xx = np.meshgrid(fy - rows.start, fx - cols.start, indexing="ij")
    out = np.empty(grid.shape, dtype=np.float32)
    last = len(zs) - 1
    for k, zk in enumerate(iz):
        k0 = min(math.floor(zk), last)
        k1 = min(k0 + 1, last)
        f = float(zk - k0)
        plane = (1 - f) * volume[k0, rows, cols].astype(np.float32) + f * volume[k1, rows, cols].astype(np.float32)
        out[k] = ndimage.map_coordinates(plane, [yy, xx], order=1, mode="nearest", prefilter=False)
    return out


def _window(index: FloatArray, n: int) -> slice:
    """The whole-voxel window of an axis of ``n`` voxels that holds every voxel linear interpolation at ``index``
    reads, and one more on each side."""
    if len(index) == 0:
        return slice(0, n)
    lo = max(math.floor(float(index.min())) - 1, 0)
    hi = min(math.floor(float(index.max())) + 3, n)
    return slice(lo, hi) if lo < hi else slice(0, n)
