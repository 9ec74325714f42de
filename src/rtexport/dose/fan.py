"""The beam's fan grid to the patient's grid: the one resampling every beam's dose goes through.

The engine sums pencils in the fan grid (planes perpendicular to the central axis, at distances d from the source;
lateral coordinates u, v projected to the isocenter plane). Each patient voxel reads it trilinearly at its fan
coordinates, which are linear in the voxel's x, y and z but for one division by d, so they are built from one term
per axis; voxels where the fan grid holds no dose are never visited.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from rtexport.geometry.iec import BeamFrame
from rtexport.model.dose import GridGeometry

FloatArray = npt.NDArray[np.float64]

_THREADS = 2  # slabs sampled at once: they fill disjoint voxels, and numpy and scipy's sampler release the GIL


def to_patient(
    out: npt.NDArray[np.float32],
    fan: GridGeometry,
    grid: GridGeometry,
    inside: npt.NDArray[np.bool_],
    frame: BeamFrame,
) -> npt.NDArray[np.float32]:
    """The fan grid ``out`` [d, u, v] (on ``fan``: origin and spacing given as (v, u, d)) sampled trilinearly at
    every voxel of ``grid`` where ``inside`` is set, 0 elsewhere and below 0. Only voxels near the fan's dose are
    sampled (trilinear sampling gives 0 elsewhere): the planes are taken in slabs, each with the box around the
    part of the frustum where its planes hold dose, and a voxel belongs to the slab its distance falls in."""
    result = np.zeros(grid.shape, dtype=np.float32)
    (v0, u0, d0), (h, _, dstep), (nd, _, _) = fan.origin_mm, fan.spacing_mm, fan.shape
    # fan coordinates are linear in the voxel's x, y and z before the division by d: one term per axis
    src, sad = np.asarray(frame.source_mm), frame.sad_mm
    rel = [a - src[c] for c, a in enumerate(grid.axes())]
    terms = [[r * frame.direction[c] for c, r in enumerate(rel)]]
    terms += [[r * (frame.axes[c, k] * sad / h) for c, r in enumerate(rel)] for k in (0, 1)]
    lit = out != 0
    lit_u, lit_v = np.any(lit, axis=2), np.any(lit, axis=1)  # [d, u], [d, v]
    slab = max(4, math.ceil(nd / 16))
    starts = list(range(0, nd, slab))
    bounds = [-math.inf] + [d0 + a * dstep for a in starts[1:]] + [math.inf]
    slabs = []
    for k, a in enumerate(starts):
        planes = slice(a, min(a + slab, nd - 1) + 1)  # a voxel of this slab reads the next slab's first plane
        us, vs = np.nonzero(np.any(lit_u[planes], axis=0))[0], np.nonzero(np.any(lit_v[planes], axis=0))[0]
        if us.size == 0 or vs.size == 0:
            continue
        cells = ((u0 + (us[0] - 1) * h, v0 + (vs[0] - 1) * h), (u0 + (us[-1] + 1) * h, v0 + (vs[-1] + 1) * h))
        depths = (d0 + (a - 1) * dstep, d0 + (a + slab + 1) * dstep)
        box = _patient_box(grid, *frame.field_box(*cells, depths))
        if box is not None:
            slabs.append((box, (bounds[k], bounds[k + 1])))
    with ThreadPoolExecutor(_THREADS) as pool:  # the slabs fill disjoint voxels; the sampler releases the GIL
        for _ in pool.map(lambda job: _sample_box(out, fan, inside, terms, job[0], job[1], result), slabs):
            pass
    return result


def _patient_box(grid: GridGeometry, lo: FloatArray, hi: FloatArray) -> list[tuple[int, int]] | None:
    """Index ranges [first, last) along x, y, z of the voxels in the patient box [lo, hi] and one voxel
    beyond; None if there are none."""
    box = []
    for c, (o, s, n) in enumerate(zip(grid.origin_mm, grid.spacing_mm, grid.shape[::-1], strict=True)):
        first = max(0, math.floor((lo[c] - o) / s) - 1)
        last = min(n, math.ceil((hi[c] - o) / s) + 2)
        if first >= last:
            return None
        box.append((first, last))
    return box


def _sample_box(
    out: npt.NDArray[np.float32],
    fan: GridGeometry,
    inside: npt.NDArray[np.bool_],
    terms: list[list[FloatArray]],
    box: list[tuple[int, int]],
    between: tuple[float, float],
    result: npt.NDArray[np.float32],
) -> None:
    """``out`` sampled at the voxels of ``box`` inside the medium whose distance d lies in [between)."""
    (v0, u0, d0), (h, _, dstep) = fan.origin_mm, fan.spacing_mm
    (x0, x1), (y0, y1), (z0, z1) = box
    (dx, dy, dz), (ux, uy, uz), (vx, vy, vz) = ([tx[x0:x1], ty[y0:y1], tz[z0:z1]] for tx, ty, tz in terms)
    d_zy = dz[:, None] + dy[None, :]
    chunk = max(1, 2_000_000 // ((y1 - y0) * (x1 - x0)))
    for k0 in range(0, z1 - z0, chunk):
        k1 = min(k0 + chunk, z1 - z0)
        d = d_zy[k0:k1, :, None] + dx[None, None, :]
        mask = inside[z0 + k0 : z0 + k1, y0:y1, x0:x1] & (d >= between[0]) & (d < between[1])
        kz, ky, kx = np.nonzero(mask)
        if kz.size == 0:
            continue
        dd = d[mask]
        kz += k0
        idx = np.empty((3, kz.size), dtype=np.float64)  # out is [d, u, v]
        np.subtract(dd, d0, out=idx[0])
        idx[0] /= dstep
        np.add(ux[kx], uy[ky], out=idx[1])
        idx[1] += uz[kz]
        idx[1] /= dd
        idx[1] -= u0 / h
        np.add(vx[kx], vy[ky], out=idx[2])
        idx[2] += vz[kz]
        idx[2] /= dd
        idx[2] -= v0 / h
        vals = ndimage.map_coordinates(out, idx, order=1, mode="constant", cval=0.0, prefilter=False)
        result[kz + z0, ky + y0, kx + x0] = np.maximum(vals, 0.0)
