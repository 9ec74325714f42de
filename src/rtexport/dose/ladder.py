"""The σ ladder of the lateral spread: each pencil's σ binned on a geometric ladder, neighbouring rungs sharing it
linearly, so one separable matrix pair per rung serves every pencil near it. Used by the spread itself
(:mod:`rtexport.dose.engine`) and by what a sloped surface keeps (:mod:`rtexport.dose.surface`)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def rungs(
    sigma: FloatArray, lit: npt.NDArray[np.bool_], smin: float, ratio: float
) -> Iterator[tuple[npt.NDArray[np.intp], FloatArray, float]]:
    """For planes [p, u, v] of pencils' σ (``lit``: the pencils that carry anything), each rung r in turn:
    the planes whose pencils' span of rungs reaches it, each pencil's share of that rung there (not yet masked by
    ``lit``) and the rung's σ (``smin`` × ``ratio``^r). A rung looks only at the planes it reaches."""
    t = np.log(np.maximum(sigma, smin) / smin) / math.log(ratio)
    rung = np.floor(t).astype(np.int64)
    frac = t - rung
    span_lo = np.where(lit, rung, np.iinfo(np.int64).max).min(axis=(1, 2))
    span_hi = np.where(lit, rung, -1).max(axis=(1, 2)) + 1
    for r in range(max(int(span_lo.min()), 0), int(span_hi.max()) + 1):
        near = np.nonzero((span_lo <= r) & (r <= span_hi))[0]
        if near.size == 0:
            continue
        rn, fn = rung[near], frac[near]
        yield near, np.where(rn == r, 1.0 - fn, 0.0) + np.where(rn == r - 1, fn, 0.0), smin * ratio**r
