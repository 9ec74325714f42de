"""The dose-engine interface and a Hogstrom Gaussian pencil-beam engine (Phys Med Biol 26:445, 1981).

Work happens in the beam's fan grid: rays through a square lattice of pencils in the isocenter plane, sampled
in planes perpendicular to the central axis. Along each pencil's ray, cumulative sums give the effective depth
z_eff = ∫ S_rel dℓ and the moments A_n = Σ T ℓⁿ Δℓ of the scattering power, so
σ² = ½(ℓ²A0 − 2ℓA1 + A2) + in-air spread, ℓ the geometric path (air gaps inside the patient lengthen the lever
arm). Each pencil's fluence falls with the inverse square of the distance from the virtual source, whatever the
surface it crossed (Hogstrom's per-pencil inverse square): D∞(z_eff)·((f + z_eff)/(f + d − SSD_ref))², f the
virtual SSD and d the plane's distance from the source, so an irregular surface, obliquity, bolus and an extended
SSD each change the dose of every pencil by its own air gap. Each depth plane is spread laterally with Gaussian
pencil kernels; pencils' σ are binned on a geometric ladder (neighbouring rungs share a pencil linearly) so one
dense, separable matrix pair per rung does the sum. What a heterogeneity narrower than about a centimetre
does beside the pencils is carried from its own plane (:mod:`rtexport.dose.redefinition`). The fan grid is then
read at every voxel of the patient (:mod:`rtexport.dose.fan`).

Output: each beam is normalized at its own peak in water at the reference SSD (:mod:`rtexport.dose.output`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.special import erf

from rtexport.dose import ladder, redefinition, surface
from rtexport.dose.commissioning import BroadBeam, broad_beam, scattering_power_water, water_sigma_mm
from rtexport.dose.fan import to_patient
from rtexport.dose.output import CutoutOutput, cutout_output, lattice, pencil_weights
from rtexport.errors import DoseError
from rtexport.geometry import polygon
from rtexport.geometry.iec import BeamFrame
from rtexport.geometry.sampling import sample_at
from rtexport.model.dose import GridGeometry
from rtexport.model.site import Applicator, EnergyData

FloatArray = npt.NDArray[np.float64]

_PENCILS_ACROSS = 32
_HALO_RATIO = 1.15  # the halo's σ ladder: a smooth, low component needs fewer rungs
_RATIO_FLOOR_MM2 = 0.25  # σ² below (0.5 mm)² is no ratio to scale by: near the surface medium and water agree


@dataclass(frozen=True)
class Medium:
    """What the beam passes through, on an axial grid [z, y, x]: relative stopping power (S_rel ≈ ρ_e) and
    relative linear scattering power (T_rel); ``inside`` marks where dose is reported.

    Without ``occupancy`` the medium is what ``stopping`` and ``scattering`` say (0 in air), between voxel centres
    interpolated. With it, ``occupancy`` is the fraction of each voxel inside the patient or bolus and the other
    two give the material there, continued a voxel beyond the surface: the medium is occupancy × material, which
    puts the skin where the contours put it, not at a voxel boundary."""

    grid: GridGeometry
    stopping: npt.NDArray[np.float32]
    scattering: npt.NDArray[np.float32]
    inside: npt.NDArray[np.bool_]
    occupancy: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        for name in ("stopping", "scattering", "inside", "occupancy"):
            a = getattr(self, name)
            if a is not None and a.shape != self.grid.shape:
                raise DoseError(f"medium {name} has shape {a.shape}, grid is {self.grid.shape}")


@dataclass(frozen=True)
class BeamSetup:
    """One beam as the engine needs it: geometry (from :func:`rtexport.geometry.setup.aim_plan`), aperture (BEV
    polygon in the plane ``frame.sad_mm`` from the source), the central axis's source-to-surface distance (for
    the record: the dose follows each pencil's own surface), the applicator and the reference applicator of the
    beam data, and a cutout factor measured for this cutout (from the plan) if any."""

    name: str
    frame: BeamFrame
    cutout_mm: FloatArray
    custom_cutout: bool
    cutout_distance_mm: float
    ssd_mm: float
    applicator: Applicator
    reference_applicator: Applicator
    cutout_factor: float | None = None


class DoseEngine(Protocol):
    """Anything that turns a medium and a beam into dose per monitor unit (Gy/MU) on ``medium.grid``."""

    def beam_dose(self, medium: Medium, beam: BeamSetup, energy: EnergyData) -> npt.NDArray[np.float32]: ...


def _kernel(offsets_out: FloatArray, offsets_in: FloatArray, h: float, sigma: float) -> FloatArray:
    """G[o, i] = fraction of a uniform pencil of width h at offsets_in[i] landing on offsets_out[o] (per unit
    width, i.e. a pencil-integrated Gaussian). On one lattice of step h (the engine's), G[o, i] depends on o − i
    only: the erf runs once per difference."""
    s = math.sqrt(2.0) * max(sigma, 1e-6)
    n_out, n_in = len(offsets_out), len(offsets_in)
    steps = np.concatenate([np.diff(offsets_out), np.diff(offsets_in)])
    if n_out > 1 and n_in > 1 and np.all(np.abs(steps - h) <= 1e-9 * h):
        diff = offsets_out[0] - offsets_in[-1] + h * np.arange(n_out + n_in - 1)
        g = 0.5 * (erf((diff + h / 2) / s) - erf((diff - h / 2) / s))
        return np.asarray(g[np.arange(n_out)[:, None] + (n_in - 1 - np.arange(n_in))[None, :]], dtype=np.float64)
    diff = offsets_out[:, None] - offsets_in[None, :]
    return np.asarray(0.5 * (erf((diff + h / 2) / s) - erf((diff - h / 2) / s)), dtype=np.float64)


class PencilBeamEngine:
    """Hogstrom pencil beam. ``lateral_mm``: pencil spacing in the isocenter plane (default: the grid's finest
    spacing, at most 2.5 mm); ``depth_mm``: plane spacing along the axis (default half that); ``sigma_ratio``:
    ratio of neighbouring σ rungs."""

    def __init__(
        self, lateral_mm: float | None = None, depth_mm: float | None = None, sigma_ratio: float = 1.08
    ) -> None:
        self.lateral_mm = lateral_mm
        self.depth_mm = depth_mm
        self.sigma_ratio = sigma_ratio

    def beam_dose(self, medium: Medium, beam: BeamSetup, energy: EnergyData) -> npt.NDArray[np.float32]:
        scale = self.gy_per_mu_scale(beam, energy)  # first: it refuses a cutout the site's table does not cover
        return (self.relative_dose(medium, beam, energy) * scale).astype(np.float32)

    # --- output ------------------------------------------------------------------------------------------------
    def output(self, beam: BeamSetup, energy: EnergyData) -> CutoutOutput:
        """Where this aperture peaks in water at the reference SSD and the cutout factor that holds there."""
        return cutout_output(
            energy,
            beam.applicator,
            beam.reference_applicator,
            beam.cutout_mm if beam.custom_cutout else None,
            beam.frame.sad_mm,
            beam.cutout_factor,
            cutout_distance_mm=beam.cutout_distance_mm,
            h=self._lateral(None),
            what=f"beam {beam.name}",
        )

    def gy_per_mu_scale(self, beam: BeamSetup, energy: EnergyData) -> float:
        """Gy/MU per unit relative dose: calibration × applicator factor × cutout factor at the aperture's own
        peak in water at the reference SSD, divided by the model's dose there (the factors are measured there)."""
        app = energy.applicator_factors.get(beam.applicator.id)
        if app is None:
            raise DoseError(
                f"beam {beam.name}: no applicator factor for applicator {beam.applicator.id!r} at "
                f"{energy.energy_mev:g} MeV; add it to the site's applicator_factors"
            )
        out = self.output(beam, energy)
        return energy.calibration_cgy_per_mu / 100.0 * app * out.factor / out.peak

    def _broad(self, beam: BeamSetup, energy: EnergyData) -> BroadBeam:
        return broad_beam(energy, beam.reference_applicator, beam.frame.sad_mm, beam.cutout_distance_mm)

    def _lateral(self, grid: GridGeometry | None) -> float:
        if self.lateral_mm is not None:
            return self.lateral_mm
        return 2.5 if grid is None else min(min(grid.spacing_mm), 2.5)

    # --- the pencil-beam sum ------------------------------------------------------------------------------------
    def relative_dose(self, medium: Medium, beam: BeamSetup, energy: EnergyData) -> npt.NDArray[np.float32]:
        """Dose relative to the reference field's maximum, on ``medium.grid`` (0 outside ``inside``)."""
        bb = self._broad(beam, energy)
        base = self._lateral(medium.grid)
        dstep = self.depth_mm if self.depth_mm is not None else base / 2.0
        # at least 32 pencils across a small field: its dose peaks between pencils, where planes are interpolated,
        # and near the surface (σ under a millimetre) its edge is where the edge pencils' cells put it, within h/2
        h = min(base, polygon.equivalent_square(beam.cutout_mm) / _PENCILS_ACROSS)
        d, clipped = _planes(medium, beam, dstep)
        uc, vc, w = _pencils(beam, h)
        rays = _trace(medium, beam, bb, (uc, vc), (d, clipped), dstep)
        q = w[..., None] * rays.fluence  # [u, v, d]
        if not (q > 0).any():
            raise DoseError(f"beam {beam.name}: no pencil reaches the medium")
        sad = beam.frame.sad_mm
        components = _components(bb, rays, beam.cutout_distance_mm, d, sad)
        # 4 σ of the core; the halo (at most a tenth of a pencil where it is wide) to 3 σ
        reach = max(
            n_sigma * float(sig[q * wt > 0].max(initial=0.0))
            for (wt, sig), n_sigma in zip(components, (4.0, 3.0), strict=False)
        )
        margin = math.ceil(reach / h) * h
        uo = np.arange(uc[0] - margin, uc[-1] + margin + h / 2, h)
        vo = np.arange(vc[0] - margin, vc[-1] + margin + h / 2, h)
        out = np.zeros((len(d), len(uo), len(vo)), dtype=np.float32)
        ahead = surface.ahead_air(rays.ahead, rays.inside, (uc, vc, uo, vo, h))
        for (weight, sigma), ratio in zip(components, (self.sigma_ratio, _HALO_RATIO), strict=False):
            qc = q * weight
            if ahead is not None:
                qc = qc / surface.kept_share(ahead, rays.keeps * (qc > 0), sigma, (uc, vc, uo, vo, h), ratio, _kernel)
            out += _spread(qc, sigma, uc, vc, uo, vo, h, ratio)
        iu0 = round((uc[0] - uo[0]) / h)
        iv0 = round((vc[0] - vo[0]) / h)
        if rays.sharp.any():  # what lies beside the pencils, from the plane where it lies
            moments = redefinition.plane_moments(rays.scattering, rays.ell, rays.inside)
            kept = redefinition.range_change(
                bb,
                rays.zeff,
                rays.excess,
                w[..., None] * rays.entered,
                moments,
                (d, sad, h),
                bb.sigma_theta_rad**2,
                (rays.scattering, rays.ell),
            )
            out[:, iu0 : iu0 + len(uc), iv0 : iv0 + len(vc)] += np.moveaxis(kept, -1, 0).astype(np.float32)
            np.maximum(out, 0.0, out=out)
            out *= redefinition.fluence_ratio(
                rays.sharp, rays.inside, moments, (d, sad, h), (uo, vo, iu0, iv0), bb.sigma_theta_rad**2
            ).astype(np.float32)

        # bremsstrahlung: the tail dose inside the geometric aperture (the pencils' block), where the ray has
        # entered the medium
        out[:, iu0 : iu0 + len(uc), iv0 : iv0 + len(vc)] += bb.tail * np.moveaxis(w[..., None] * rays.entered, -1, 0)
        fan = GridGeometry(origin_mm=(vo[0], uo[0], d[0]), spacing_mm=(h, h, dstep), shape=out.shape)
        return to_patient(out, fan, medium.grid, medium.inside, beam.frame)


@dataclass(frozen=True)
class _Rays:
    """What each pencil's ray meets, per plane [u, v, d]: effective depth, the Fermi–Eyges σ² of scattering in
    the medium along its path (at the depth, not projected), the geometric path since the cutout, and its
    fluence × broad-beam electron dose × inverse square (0 where it is not in the medium)."""

    zeff: FloatArray
    sig2: FloatArray
    air_path: FloatArray
    fluence: FloatArray
    entered: npt.NDArray[np.bool_]
    inside: npt.NDArray[np.bool_]  # in the patient (the redefinition's domain)
    sharp: FloatArray  # the scattering's lateral structure the pencils do not carry (redefinition)
    scattering: FloatArray  # all of it, per plane (polar angle²)
    ell: FloatArray  # the geometric path from the first plane
    excess: FloatArray  # the effective depth the heterogeneities added (redefinition)
    ahead: FloatArray  # 1 in air the ray crosses just before it enters the patient
    keeps: FloatArray  # how much of what its Gaussian puts in such air the pencil keeps (surface)


def _planes(medium: Medium, beam: BeamSetup, dstep: float) -> tuple[FloatArray, bool]:
    """Plane distances from the source covering the medium, from just beyond the cutout, and whether the
    medium begins nearer than that."""
    grid = medium.grid
    xs, ys, zs = grid.axes()
    rows = np.any(medium.inside, axis=2)  # [z, y]: the medium's extent along each axis, without its indices
    columns = np.any(medium.inside, axis=(0, 1))
    zi, yi, xi = (np.nonzero(a)[0] for a in (np.any(rows, axis=1), np.any(rows, axis=0), columns))
    if zi.size == 0:
        raise DoseError(f"beam {beam.name}: the medium is empty (no voxel inside the External or bolus)")
    lo = np.array([xs[xi[0]], ys[yi[0]], zs[zi[0]]]) - np.asarray(grid.spacing_mm)
    hi = np.array([xs[xi[-1]], ys[yi[-1]], zs[zi[-1]]]) + np.asarray(grid.spacing_mm)
    near, far = beam.frame.depth_range(lo, hi)
    d0 = max(near, beam.cutout_distance_mm + dstep)  # nothing scatters before the cutout
    d = np.arange(d0, far + dstep, dstep)
    return np.asarray(d, dtype=np.float64), d0 > near


def _pencils(beam: BeamSetup, h: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Lattice through the central axis covering the cutout, and each pencil's share inside it."""
    uc, vc = lattice(beam.cutout_mm, h)
    w = pencil_weights(beam.cutout_mm, uc, vc, h)
    keep_u, keep_v = w.any(axis=1), w.any(axis=0)
    uc, vc, w = uc[keep_u], vc[keep_v], w[np.ix_(keep_u, keep_v)]
    if w.sum() <= 0:
        raise DoseError(f"beam {beam.name}: the cutout lets no pencil through")
    return uc, vc, w


def _trace(
    medium: Medium,
    beam: BeamSetup,
    bb: BroadBeam,
    pencils: tuple[FloatArray, FloatArray],
    planes: tuple[FloatArray, bool],
    dstep: float,
) -> _Rays:
    frame, grid = beam.frame, medium.grid
    (uc, vc), (d, clipped) = pencils, planes
    uu, vv = np.meshgrid(uc, vc, indexing="ij")
    stretch = frame.ray_length(uu, vv, 1.0)  # ray length per unit axis distance
    idx = _ray_index(grid, frame, (uc, vc), d)
    volumes = (medium.stopping, medium.scattering, medium.inside if medium.occupancy is None else medium.occupancy)
    with ThreadPoolExecutor(len(volumes)) as pool:  # scipy's sampler releases the GIL
        s_rel, t_rel, occ = pool.map(lambda volume: sample_at(volume, idx), volumes)
    if medium.occupancy is not None:
        s_rel *= occ
        t_rel *= occ
    if clipped and np.any(occ[..., 0] >= 0.5):
        raise DoseError(
            f"beam {beam.name}: the patient or bolus reaches the cutout ({beam.cutout_distance_mm:g} mm from "
            "the source); increase the SSD"
        )
    dl = (dstep * stretch)[..., None]

    # trapezoid ∫ S_rel dℓ from the first plane
    zeff = dl * (np.cumsum(s_rel, axis=-1) - 0.5 * (s_rel + s_rel[..., :1]))
    entered = zeff > 1e-6
    # the redefinition sees the material (not the skin's partial volume) where the pencil is in the patient
    inside = entered & (occ > 0.5)
    cells = float(uc[1] - uc[0]) if len(uc) > 1 else 1.0
    # behind bone: longer tracks per unit depth
    zeff, obliquity = redefinition.obliquity(bb, zeff, (s_rel, t_rel, dl), inside, cells)

    # multiple scattering about the geometric path ℓ (from the first plane), frozen beyond R90
    ell = (d - d[0])[None, None, :] * stretch[..., None]
    tw_all = scattering_power_water(bb.energy_at(zeff)) * t_rel * dl
    t_mat = np.where(inside, t_rel / np.maximum(occ, 0.5), 0.0)
    water = dl * (np.cumsum(occ, axis=-1) - 0.5 * (occ + occ[..., :1]))  # the same path all in water
    sharp = redefinition.sharp_scattering(bb, (zeff, water), t_mat, tw_all, ell, inside, cells) * dl
    tw = tw_all - sharp
    a0 = np.cumsum(tw, axis=-1)
    a1 = np.cumsum(tw * ell, axis=-1)
    a2 = np.cumsum(tw * ell * ell, axis=-1)
    sig2 = np.maximum(0.5 * (ell * ell * a0 - 2.0 * ell * a1 + a2), 0.0)
    beyond = zeff > bb.sigma_frozen_mm
    last = np.maximum.accumulate(np.where(beyond, 0, np.arange(len(d))[None, None, :]), axis=-1)
    sig2 = np.take_along_axis(sig2, last, axis=-1)
    air_path = (d[None, None, :] - beam.cutout_distance_mm) * stretch[..., None]

    # fluence from the virtual source: each pencil's own air gap, bolus or extended SSD (Hogstrom)
    fv = bb.virtual_ssd_mm
    to_source = fv + (d - bb.reference_ssd_mm)[None, None, :]
    # A pencil deposits where its ray is in the medium (and, like the skin, a voxel on): one that has left the
    # patient (a tangential edge, the end of the CT) carries no dose on through the air, nor a σ that keeps
    # growing there into every lateral kernel.
    reach = max(1, math.ceil(max(grid.spacing_mm) / dstep))
    in_medium = ndimage.maximum_filter1d(occ > 0, size=2 * reach + 1, axis=-1, mode="constant")
    entered &= in_medium
    fluence = bb.electron_dose(zeff) * ((fv + zeff) / to_source) ** 2 * entered * obliquity
    ahead, keeps = surface.reentry(occ, zeff, inside, (dstep, dl, cells))
    return _Rays(
        zeff,
        sig2,
        air_path,
        fluence,
        entered,
        inside,
        sharp,
        tw_all,
        ell,
        zeff - water,
        ahead,
        keeps,
    )


def _ray_index(
    grid: GridGeometry, frame: BeamFrame, pencils: tuple[FloatArray, FloatArray], d: FloatArray
) -> FloatArray:
    """Fractional [z, y, x] indices (3, u, v, d) on ``grid`` of the pencils' points in every plane: the sums of
    :meth:`BeamFrame.from_fan` one coordinate at a time, without the (..., 3) points."""
    uc, vc = pencils
    s = (d / frame.sad_mm)[None, None, :]
    us, vs = uc[:, None, None] * s, vc[None, :, None] * s
    direction, x_b, y_b = frame.direction, frame.axes[:, 0], frame.axes[:, 1]
    idx = np.empty((3, len(uc), len(vc), len(d)), dtype=np.float64)
    for c in range(3):
        along = frame.source_mm[c] + d[None, None, :] * direction[c]
        point = along + us * x_b[c] + vs * y_b[c]
        np.subtract(point, grid.origin_mm[c], out=idx[2 - c])
        idx[2 - c] /= grid.spacing_mm[c]
    return idx


def _components(
    bb: BroadBeam, rays: _Rays, cutout_distance_mm: float, d: FloatArray, sad_mm: float
) -> list[tuple[FloatArray, FloatArray]]:
    """(weight, σ in the isocenter plane) per Gaussian component of each pencil, [u, v, d]."""
    to_iso = (sad_mm / d)[None, None, :]
    air2 = (bb.sigma_theta_rad * rays.air_path) ** 2
    if bb.kernel is None:
        return [(np.ones_like(rays.sig2), np.sqrt(rays.sig2 + air2) * to_iso)]
    # the kernel is water's at the reference SSD, in-air spread included: the medium scales the core's scattering
    # by its Fermi–Eyges ratio to water at the same effective depth (scaling the halo as well puts 2-5 % too little
    # dose beyond a lung slab against Monte Carlo), and the pencil's own air path adds its own spread
    z_tab = np.arange(0.0, float(rays.zeff.max()) + 2.0, 0.5)
    ssd_ref = bb.reference_ssd_mm
    air_ref = bb.sigma_theta_rad * (ssd_ref - cutout_distance_mm + z_tab)
    water2 = np.interp(rays.zeff, z_tab, water_sigma_mm(bb, z_tab, ssd_ref, cutout_distance_mm) ** 2 - air_ref**2)
    ratio2 = (rays.sig2 + _RATIO_FLOOR_MM2) / (np.maximum(water2, 0.0) + _RATIO_FLOOR_MM2)
    air_ref2 = np.interp(rays.zeff, z_tab, air_ref**2)
    w, core, halo = bb.kernel.at(rays.zeff)
    return [
        (1.0 - w, np.sqrt(np.maximum(core**2 - air_ref2, 0.0) * ratio2 + air2) * to_iso),
        (w, np.sqrt(np.maximum(halo**2 - air_ref2, 0.0) + air2) * to_iso),
    ]


def _spread(
    q: FloatArray,
    sigma_iso: FloatArray,
    uc: FloatArray,
    vc: FloatArray,
    uo: FloatArray,
    vo: FloatArray,
    h: float,
    ratio: float,
) -> FloatArray:
    """Lateral spread of every plane [u, v, d] → [d, uo, vo]: σ binned on a geometric ladder (neighbouring rungs
    share a pencil linearly), one separable matrix pair per rung, all planes at once."""
    nd = q.shape[-1]
    out = np.zeros((nd, len(uo), len(vo)), dtype=np.float64)
    active = q > 0
    if not active.any():
        return out
    smin = float(sigma_iso[active].min())
    qd = np.moveaxis(q, -1, 0)  # [d, u, v]
    planes = np.nonzero(qd.reshape(nd, -1).any(axis=1))[0]
    qd = qd[planes]
    lit = qd > 0
    for near, lam, sig_r in ladder.rungs(np.moveaxis(sigma_iso, -1, 0)[planes], lit, smin, ratio):
        hit = (lam * lit[near]).reshape(near.size, -1).any(axis=1)
        sel, lam = near[hit], lam[hit]
        if sel.size == 0:
            continue
        gu = _kernel(uo, uc, h, sig_r)
        gv = _kernel(vo, vc, h, sig_r)
        out[planes[sel]] += gu @ (qd[sel] * lam) @ gv.T
    return out
