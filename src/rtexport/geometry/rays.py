"""Rays meeting surfaces: one ray exactly on the contours, or many rays on a voxel mask.

:func:`first_entry` traces a line through structures (by the contour rule of :mod:`rtexport.geometry.contours`)
and refines the crossing to a micrometre: that is where a beam's central axis meets the skin or the bolus, as a
receiving system rebuilds it from the structure set. :func:`surface_distances` traces a fan of rays through a
mask, for bolus and for each pencil's own source-to-surface distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rtexport.geometry.contours import PlanarStructure
from rtexport.geometry.iec import BeamFrame
from rtexport.geometry.sampling import Axes, sample

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_RAYS_PER_CHUNK = 2048
_DEPTHS_PER_BLOCK = 16  # coarse samples per block: most rays meet the surface in the first one or two
_REFINE = 64  # points per refinement pass: each pass shrinks the bracket 63-fold
_PRECISION_MM = 1e-6


def _inside_any(structures: Sequence[PlanarStructure], points: FloatArray) -> BoolArray:
    out = np.zeros(points.shape[:-1], dtype=bool)
    for s in structures:
        out |= s.contains(points)
    return out


def first_entry(
    structures: Sequence[PlanarStructure],
    start: FloatArray,
    direction: FloatArray,
    length_mm: float,
    step_mm: float = 0.25,
) -> float | None:
    """Distance from ``start`` along the unit ``direction`` to where the line first enters any of ``structures``
    (0 if it starts inside), within ``length_mm``; None if it never does. Features thinner than ``step_mm`` along
    the line may be missed."""
    start = np.asarray(start, dtype=np.float64)
    direction = np.asarray(direction, dtype=np.float64)
    s = np.arange(0.0, length_mm + step_mm, step_mm)
    inside = _inside_any(structures, start + s[:, None] * direction)
    hits = np.nonzero(inside)[0]
    if hits.size == 0:
        return None
    k = int(hits[0])
    if k == 0:
        return 0.0
    lo, hi = float(s[k - 1]), float(s[k])
    while hi - lo > _PRECISION_MM:
        t = np.linspace(lo, hi, _REFINE)
        inside = _inside_any(structures, start + t[:, None] * direction)
        j = int(np.argmax(inside))  # inside[-1] holds: hi is inside
        lo, hi = float(t[j - 1]), float(t[j])
    return hi


def _first_crossing(vals: FloatArray, ds: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Where each row of mask samples ``vals`` [ray, d] first reaches 0.5, interpolated; and whether it does."""
    hit = vals >= 0.5
    first = np.argmax(hit, axis=-1)
    any_hit: BoolArray = np.asarray(hit.any(axis=-1), dtype=bool)
    k = np.maximum(first, 1)
    i = np.arange(len(vals))
    prev, cur = vals[i, k - 1], vals[i, k]
    f = np.clip((0.5 - prev) / np.maximum(cur - prev, 1e-9), 0.0, 1.0)
    dk = ds[..., k - 1] if ds.ndim == 1 else ds[i, k - 1]
    dn = ds[..., k] if ds.ndim == 1 else ds[i, k]
    first_d = ds[0] if ds.ndim == 1 else ds[:, 0]
    d: FloatArray = np.asarray(np.where(first == 0, first_d, dk + f * (dn - dk)), dtype=np.float64)
    return d, any_hit


def _nearest_depth(frame: BeamFrame, mask: BoolArray, axes: Axes) -> float | None:
    """A central-axis distance before which every sample of ``mask`` is exactly 0: the near side of the box of
    its occupied voxels grown by one voxel (trilinear samples reach no further). None for an empty mask."""
    found = [np.nonzero(mask.any(axis=other))[0] for other in ((1, 2), (0, 2), (0, 1))]  # z, y, x
    if any(len(f) == 0 for f in found):
        return None
    lo, hi = [], []
    for axis, f in zip((axes[2], axes[1], axes[0]), found, strict=True):
        step = float(axis[1] - axis[0]) if len(axis) > 1 else 1.0
        lo.append(float(axis[max(f[0] - 1, 0)]) - abs(step))
        hi.append(float(axis[min(f[-1] + 1, len(axis) - 1)]) + abs(step))
    return frame.depth_range((lo[2], lo[1], lo[0]), (hi[2], hi[1], hi[0]))[0]


def _coarse_crossing(
    frame: BeamFrame, mask: BoolArray, axes: Axes, cu: FloatArray, cv: FloatArray, d: FloatArray, first: int
) -> tuple[FloatArray, BoolArray]:
    """:func:`_first_crossing` of the rays (cu, cv) marched along ``d`` (the samples up to index ``first`` are
    known to be 0), a block of depths at a time, each ray only until it has met the mask."""
    rough = np.full(len(cu), d[0])
    hit = np.zeros(len(cu), dtype=bool)
    todo = np.arange(len(cu))
    start = max(first, 1)
    while todo.size and start < len(d):
        seg = d[start - 1 : start + _DEPTHS_PER_BLOCK]  # with the sample before: the crossing interpolates from it
        vals = sample(mask, axes, frame.from_fan(cu[todo, None], cv[todo, None], seg[None, :]))
        r, h = _first_crossing(vals, seg)
        rough[todo[h]], hit[todo[h]] = r[h], True
        todo = todo[~h]
        start += _DEPTHS_PER_BLOCK
    return rough, hit


def surface_distances(
    frame: BeamFrame,
    mask: BoolArray,
    axes: Axes,
    u: FloatArray,
    v: FloatArray,
    d_range: tuple[float, float],
    step_mm: float,
) -> FloatArray:
    """For each ray through beam's-eye-view points (u, v) (any matching shapes), the central-axis distance d from
    the source at which it first enters ``mask`` (the 50 % crossing of the interpolated mask); NaN if it does not
    within ``d_range``. ``frame.ray_length(u, v, d)`` turns it into the ray's own source-to-surface distance.

    Rays march coarsely (2 mm, finer than any body outline feature that matters here) from the near side of the
    mask's box, a block of depths at a time until each has met it, and are then refined at ``step_mm`` inside
    the coarse interval, in chunks, so memory stays bounded whatever the mask's size."""
    uu, vv = np.broadcast_arrays(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))
    u_flat, v_flat = uu.ravel(), vv.ravel()
    d_hit = np.full(u_flat.shape, np.nan)
    near = _nearest_depth(frame, mask, axes)
    if near is None:
        return d_hit.reshape(uu.shape)
    coarse = max(2.0, step_mm)
    d_coarse = np.arange(d_range[0], d_range[1] + coarse, coarse)
    first = max(int(np.searchsorted(d_coarse, near, side="left")) - 1, 0)  # every sample before is 0
    # the coarse crossing is interpolated between two samples: the true one is within a coarse step of it
    fine = np.arange(0.0, 2.0 * coarse + step_mm, step_mm)
    for lo in range(0, len(u_flat), _RAYS_PER_CHUNK):
        cu, cv = u_flat[lo : lo + _RAYS_PER_CHUNK], v_flat[lo : lo + _RAYS_PER_CHUNK]
        rough, any_hit = _coarse_crossing(frame, mask, axes, cu, cv, d_coarse, first)
        start = np.maximum(rough - coarse, d_coarse[0])
        ds = start[:, None] + fine[None, :]
        vals = sample(mask, axes, frame.from_fan(cu[:, None], cv[:, None], ds))
        exact, fine_hit = _first_crossing(vals, ds)
        exact = np.where(fine_hit, exact, rough)
        d_hit[lo : lo + _RAYS_PER_CHUNK] = np.where(any_hit, exact, np.nan)
    return d_hit.reshape(uu.shape)
