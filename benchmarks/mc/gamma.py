"""Global gamma index on a regular 2-D grid (Low et al. 1998), numpy only, so CI needs no gamma package.

The reference dose is the Monte Carlo; the evaluated dose is interpolated (bilinear) at offsets on a grid a fifth
of the finer spacing within ``max_gamma`` × the distance criterion, as pymedphys does with ``interp_fraction=5``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FloatArray = npt.NDArray[np.float64]


def gamma_pass_rate(
    axes_mm: tuple[FloatArray, FloatArray],
    reference: FloatArray,
    evaluated: FloatArray,
    dose_pct: float,
    dta_mm: float,
    cutoff_pct: float = 10.0,
    max_gamma: float = 2.0,
) -> float:
    """Share (%) of reference points above ``cutoff_pct`` of the reference maximum with gamma ≤ 1; both doses on
    the same uniform grid ``axes_mm`` (one axis per array dimension)."""
    gamma = gamma_index(axes_mm, reference, evaluated, dose_pct, dta_mm, cutoff_pct, max_gamma)
    scored = ~np.isnan(gamma)
    if not scored.any():
        return math.nan
    return float(100.0 * np.mean(gamma[scored] <= 1.0))


def gamma_index(
    axes_mm: tuple[FloatArray, FloatArray],
    reference: FloatArray,
    evaluated: FloatArray,
    dose_pct: float,
    dta_mm: float,
    cutoff_pct: float = 10.0,
    max_gamma: float = 2.0,
) -> FloatArray:
    """Gamma at every reference point (capped at ``max_gamma``), NaN where the reference is at most
    ``cutoff_pct`` of its maximum."""
    h0 = float(axes_mm[0][1] - axes_mm[0][0])
    h1 = float(axes_mm[1][1] - axes_mm[1][0])
    top = float(reference.max())
    dd = dose_pct / 100.0 * top
    out = np.full(reference.shape, np.nan)
    i0, i1 = np.nonzero(reference > cutoff_pct / 100.0 * top)
    if i0.size == 0:
        return out
    ref = reference[i0, i1]
    step = min(h0, h1) / 5.0
    reach = max_gamma * dta_mm
    k = math.ceil(reach / step)
    grid = step * np.arange(-k, k + 1)
    best = np.full(ref.shape, max_gamma**2)
    for o0 in grid:
        for o1 in grid:
            dist2 = (o0 * o0 + o1 * o1) / (dta_mm * dta_mm)
            if dist2 >= max_gamma**2:
                continue
            coords = np.vstack([i0 + o0 / h0, i1 + o1 / h1])
            val = ndimage.map_coordinates(evaluated, coords, order=1, mode="nearest")
            np.minimum(best, ((val - ref) / dd) ** 2 + dist2, out=best)
    out[i0, i1] = np.sqrt(best)
    return out
