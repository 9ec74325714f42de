"""Electrons that cross air beside a sloped surface: a pencil keeps what its Gaussian puts in that air.

The engine (:mod:`rtexport.dose.engine`) spreads each pencil in planes perpendicular to the central axis. Where
the surface slopes across the beam, a plane cuts it: a pencil in the patient near that line puts part of its
Gaussian on the air side, where no voxel reads it, and that part of its fluence is lost. Hogstrom's pencil beam
(Phys Med Biol 26:445, 1981) spreads each pencil in the medium; a pencil's electrons that a Gaussian places in
the air beyond a sloped surface leave the patient and, travelling on mostly forward, enter it again a few
millimetres further down the slope (what Monte Carlo shows at 6 MeV and 45°: without this the dose 5–13 mm under
the surface is 5–8 % cold). Here a pencil keeps them: its weight in that plane is divided by the share of its
Gaussian that stays in the patient (at least a half), so its fluence is conserved, for

- air whose ray enters the patient within ``REENTRY_MM`` further on (the air just in front of a sloped surface,
  not the air beside the patient, from which electrons do not come back);
- a surface that slopes by at most ``MAX_SLOPE`` between neighbouring rays, and air not within ``REENTRY_MM`` of
  a steeper one (a step's or a bolus's side face sends its electrons across the air to a surface centimetres
  away: they are the patient's loss there);
- pencils within ``NEAR_MM`` of their own entry, that stay in the patient ``REENTRY_MM`` on (not at an exit
  surface), fully from ``RAMP_MM`` of effective depth on (from none at the entry: the first millimetre under the
  skin then does not depend on where the skin falls within a cell of the fan grid).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from rtexport.dose import ladder

FloatArray = npt.NDArray[np.float64]
Kernel = Callable[[FloatArray, FloatArray, float, float], FloatArray]

REENTRY_MM = 5.0  # air this near the patient along its ray: the electrons re-enter close by
NEAR_MM = 20.0  # pencils this near their own entry keep them
RAMP_MM = 3.0  # and keep them fully from this effective depth on
MAX_SLOPE = 2.0  # tan 63°: a steeper change of the entry depth between neighbouring rays is a side face


def reentry(
    occ: FloatArray, zeff: FloatArray, inside: npt.NDArray[np.bool_], steps: tuple[float, FloatArray, float]
) -> tuple[FloatArray, FloatArray]:
    """(air, keeps) [u, v, d] from the pencils' occupancy ``occ`` along their rays: 1 in air in front of a
    sloped surface, and how much of what its Gaussian puts there each pencil keeps; ``steps``: the plane step
    along the axis, along each ray ([u, v, 1]) and the pencil spacing."""
    dstep, dl, cells = steps
    solid = occ > 0.5
    plane = np.arange(occ.shape[-1])
    big = np.where(solid, plane, 2 * len(plane))
    following = np.flip(np.minimum.accumulate(np.flip(big, axis=-1), axis=-1), axis=-1)  # next plane inside
    entry = following[..., 0] * dstep
    du, dv = np.gradient(entry, cells) if min(entry.shape) > 1 else (np.zeros_like(entry),) * 2
    slope = np.hypot(du, dv)
    gentle = (ndimage.maximum_filter(slope, size=3, mode="nearest") <= MAX_SLOPE)[..., None]
    # no air within REENTRY_MM of a side face: its electrons are the face's, not a slope's
    wide = 2 * math.ceil(REENTRY_MM / cells) + 1
    clear = (ndimage.maximum_filter(slope, size=wide, mode="nearest") <= MAX_SLOPE)[..., None]
    air = np.where(((following - plane) * dl < REENTRY_MM) & clear, (~solid).astype(np.float64), 0.0)
    keeps = np.clip(zeff / RAMP_MM, 0.0, 1.0) * (inside & (zeff < NEAR_MM) & _stays(solid, dstep) & gentle)
    return air, keeps


def _stays(solid: npt.NDArray[np.bool_], dstep: float) -> npt.NDArray[np.bool_]:
    """[u, v, d]: the ray stays in the patient for REENTRY_MM on from this plane (it does not leave through an
    exit surface there, the underside of a bolus or the far side of a thin part)."""
    n = math.ceil(REENTRY_MM / dstep)
    gone = np.concatenate([np.zeros_like(solid[..., :1], dtype=np.int64), np.cumsum(~solid, axis=-1)], axis=-1)
    ahead = np.concatenate([gone[..., n + 1 :], np.repeat(gone[..., -1:], min(n, solid.shape[-1]), axis=-1)], axis=-1)
    return np.asarray(solid & (ahead[..., : solid.shape[-1]] == gone[..., :-1]), dtype=np.bool_)


def ahead_air(
    air_rays: FloatArray,
    inside: npt.NDArray[np.bool_],
    lattices: tuple[FloatArray, FloatArray, FloatArray, FloatArray, float],
) -> FloatArray | None:
    """[d, uo, vo]: 1 where a plane's cell is air its ray crosses before it enters the patient, extended beyond
    the pencils' block by the nearest pencil; None if no plane has such air beside a pencil in the patient."""
    uc, vc, uo, vo, h = lattices
    mixed = (air_rays > 0).any(axis=(0, 1)) & inside.any(axis=(0, 1))
    if not mixed.any():
        return None
    iu0 = round((uc[0] - uo[0]) / h)
    iv0 = round((vc[0] - vo[0]) / h)
    pad = ((iu0, len(uo) - iu0 - len(uc)), (iv0, len(vo) - iv0 - len(vc)), (0, 0))
    air = np.pad(air_rays, pad, mode="edge")
    air[..., ~mixed] = 0.0
    return np.ascontiguousarray(np.moveaxis(air, -1, 0))


def kept_share(
    air: FloatArray,
    keeping: FloatArray,
    sigma_iso: FloatArray,
    lattices: tuple[FloatArray, FloatArray, FloatArray, FloatArray, float],
    ratio: float,
    kernel: Kernel,
) -> FloatArray:
    """[u, v, d]: 1 − the share of each pencil's Gaussian that lands in ``air`` in its plane, for the pencils
    that keep it (in the share ``keeping``), at least a half; 1 for the others."""
    uc, vc, uo, vo, h = lattices
    nd = keeping.shape[-1]
    lost = np.zeros(keeping.shape, dtype=np.float64)
    active = keeping > 0
    planes = np.nonzero(air.reshape(nd, -1).any(axis=1) & active.reshape(-1, nd).any(axis=0))[0]
    if planes.size == 0:
        return np.ones_like(keeping)
    smin = max(float(sigma_iso[active].min()), 1e-3)
    lit = np.moveaxis(active[..., planes], -1, 0)  # [p, u, v]
    lost_p = np.zeros(lit.shape, dtype=np.float64)
    # as the engine's spread: σ on its ladder, each rung only for the planes whose pencils reach it
    for near, lam, sig_r in ladder.rungs(np.moveaxis(sigma_iso[..., planes], -1, 0), lit, smin, ratio):
        gu = kernel(uo, uc, h, sig_r)
        gv = kernel(vo, vc, h, sig_r)
        lost_p[near] += lam * lit[near] * (gu.T @ air[planes[near]] @ gv)
    lost[..., planes] = np.moveaxis(lost_p, 0, -1)
    return np.where(active, np.maximum(1.0 - lost * keeping, 0.5), 1.0)
