"""Plan dose: the medium from CT, overrides, External and bolus; MU; the sum over beams.

The skin is where the External's and the boli's contours put it, not where it falls among the dose grid's voxel
centres: the medium carries each voxel's fraction inside (partial volume) and, at the surface, the material of the
voxels fully inside next to it, so a pencil enters at the contour (to about 0.1 mm) and the CT's own partial volume
at the skin does not thin it twice. Dose is reported in every voxel the patient or a bolus reaches into, and
continued one voxel beyond, so that interpolating the grid just under the skin does not mix in air's zero."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from rtexport.dose.commissioning import X0_WATER_CM
from rtexport.dose.engine import BeamSetup, DoseEngine, Medium, PencilBeamEngine
from rtexport.dose.output import cutout_problems
from rtexport.dose.volume import CTVolume
from rtexport.errors import DoseError, PlanError
from rtexport.geometry.contours import PlanarStructure, partial_volume, rasterize
from rtexport.geometry.iec import Point
from rtexport.geometry.sampling import resample, sample
from rtexport.geometry.setup import AimedPlan, aim_plan
from rtexport.model.course import Contour
from rtexport.model.dose import BeamDose, DoseGrid, GridGeometry, PlanDose
from rtexport.model.plan import Beam, Plan
from rtexport.model.site import CTCurve, EnergyData, Machine, Site

FloatArray = npt.NDArray[np.float64]

_MAX_THREADS = 4  # beams computed at once: each holds its own dose-sized temporaries
_AROUND = 3  # voxels kept around the structures' boxes: a partial volume reaches one, the crop one more

# mass density (g/cm³) → X0_water / X0_medium: soft tissue, compact bone (30.5 g/cm²), cortical bone (27.0)
_RHO = [1.05, 1.85, 1.92]
_X0_RATIO = [1.0, X0_WATER_CM / 30.5, X0_WATER_CM / 27.0]


def relative_scattering_power(mass_density: FloatArray) -> FloatArray:
    """T_rel ≈ ρ · X0_water / X0_medium, X0 ratio interpolated on mass density (1 up to soft tissue)."""
    return np.asarray(mass_density * np.interp(mass_density, _RHO, _X0_RATIO), dtype=np.float64)


def _work_grid(ct: CTVolume, grid_mm: float) -> GridGeometry:
    """An even grid from the CT's first voxel centre reaching at least its last one on every axis, so that
    every slice holding the External or a bolus lies within the dose grid."""
    x, y, z = ct.geometry.axes()

    def count(a: FloatArray) -> int:
        return math.ceil(float(a[-1] - a[0]) / grid_mm - 1e-6) + 1

    return GridGeometry(
        origin_mm=(float(x[0]), float(y[0]), float(z[0])),
        spacing_mm=(grid_mm,) * 3,
        shape=(count(z), count(y), count(x)),
    )


def _around(work: GridGeometry, structures: Sequence[PlanarStructure]) -> GridGeometry:
    """The part of ``work`` that can hold any of ``structures``, with room for the partial volumes and the crop:
    voxels farther from every structure's box are air, so the medium needs no work there."""
    boxes = [s.bounds() for s in structures if not s.empty]
    if not boxes:
        return work
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    origin, step = np.asarray(work.origin_mm), np.asarray(work.spacing_mm)
    first = np.floor((lo - origin) / step).astype(int) - _AROUND
    last = np.ceil((hi - origin) / step).astype(int) + _AROUND
    n_xyz = work.shape[::-1]
    first = np.clip(first, 0, np.asarray(n_xyz) - 1)
    last = np.clip(last, first, np.asarray(n_xyz) - 1)
    axes = work.axes()
    return GridGeometry(
        origin_mm=(float(axes[0][first[0]]), float(axes[1][first[1]]), float(axes[2][first[2]])),
        spacing_mm=work.spacing_mm,
        shape=(int(last[2] - first[2] + 1), int(last[1] - first[1] + 1), int(last[0] - first[0] + 1)),
    )


def _curve(curve: CTCurve, hu: npt.NDArray[np.float32]) -> tuple[FloatArray, FloatArray]:
    rho_e = np.interp(hu, curve.hu, curve.rel_electron_density)
    rho = np.interp(hu, curve.hu, curve.mass_density)
    return rho_e, relative_scattering_power(rho)


def _crop(grid: GridGeometry, mask: npt.NDArray[np.bool_]) -> tuple[GridGeometry, tuple[slice, ...]]:
    idx = np.nonzero(mask)
    sl = tuple(slice(max(int(i.min()) - 1, 0), min(int(i.max()) + 2, n)) for i, n in zip(idx, grid.shape, strict=True))
    xs, ys, zs = grid.axes()
    origin = (float(xs[sl[2].start]), float(ys[sl[1].start]), float(zs[sl[0].start]))
    shape = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, sl[2].stop - sl[2].start)
    return GridGeometry(origin_mm=origin, spacing_mm=grid.spacing_mm, shape=shape), sl


def _normalization(
    dose: npt.NDArray[np.float32], grid: GridGeometry, inside: npt.NDArray[np.bool_], setup: BeamSetup
) -> tuple[tuple[float, float, float], float]:
    """Point of maximum dose on the central axis inside the medium, and the dose there."""
    fr = setup.frame
    xs, ys, zs = grid.axes()
    near, far = fr.depth_range((xs[0], ys[0], zs[0]), (xs[-1], ys[-1], zs[-1]))
    s = np.arange(max(near, 1.0), far, 0.5)
    pts = np.asarray(fr.source_mm) + s[:, None] * fr.direction
    axes = (xs, ys, zs)
    vals = sample(dose, axes, pts) * (sample(inside, axes, pts, order=0) > 0.5)
    k = int(np.argmax(vals))
    if vals[k] <= 0:
        raise DoseError(f"beam {setup.name}: no dose on the central axis inside the patient")
    p = pts[k]
    return (float(p[0]), float(p[1]), float(p[2])), float(vals[k])


def _grow(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``mask`` grown by one voxel to all 26 neighbours (nothing beyond the grid): three passes along the axes."""
    out = mask
    for axis in range(3):
        grown = out.copy()
        a, b = np.moveaxis(grown, axis, 0), np.moveaxis(out, axis, 0)
        a[1:] |= b[:-1]
        a[:-1] |= b[1:]
        out = grown
    return out


def _box_sums(at: npt.NDArray[np.bool_], *volumes: npt.NDArray[np.generic]) -> list[FloatArray]:
    """For the voxels ``at`` marks (in C order), each volume's sum over their 3×3×3 neighbourhood, the grid's edge
    voxels repeated beyond it (the 'reflect' border of a uniform filter). Gathered at those voxels only: they are a
    surface's few, not the grid's many."""
    shape = at.shape
    idx = np.nonzero(at)
    flat = [np.ravel(v) for v in volumes]
    sums = [np.zeros(len(idx[0])) for _ in volumes]
    steps = [np.clip(i[None, :] + np.arange(-1, 2)[:, None], 0, n - 1) for i, n in zip(idx, shape, strict=True)]
    for kz in steps[0]:
        for ky in steps[1]:
            row = (kz * shape[1] + ky) * shape[2]
            for kx in steps[2]:
                where = row + kx
                for total, v in zip(sums, flat, strict=True):
                    total += v[where]
    return sums


def _continue_material(values: Sequence[npt.NDArray[np.float32]], occupancy: npt.NDArray[np.float32]) -> None:
    """Give the voxels a surface cuts (and the layer just outside them) the mean material of their neighbours fully
    inside, in place: the engine multiplies the material by the interpolated occupancy, so the material must not
    fall off across the surface as well."""
    solid = occupancy >= 1.0 - 1e-3
    band = _grow(occupancy > 0) & ~solid
    known = solid
    for _ in range(2):  # the cut voxels from the solid ones, then the layer outside from both
        todo = band & ~known
        count, *totals = _box_sums(todo, known, *(np.where(known, v, 0.0) for v in values))
        has = count > 0.5
        grow = np.zeros_like(todo)
        grow[todo] = has
        if not has.any():
            break
        for v, total in zip(values, totals, strict=True):
            v[grow] = total[has] / count[has]
        known = known | grow


def _continue_dose(dose: npt.NDArray[np.float32], occupied: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """The dose with the layer of voxels just outside the patient and bolus given the mean of their occupied
    neighbours: a reader interpolating at a point under the skin then never mixes in a voxel of air's zero."""
    shell = _grow(occupied) & ~occupied
    count, total = _box_sums(shell, occupied, np.where(occupied, dose, 0.0))
    out = dose.copy()
    out[shell] = total / count
    return out


def _setups(plan: Plan, machine: Machine, aimed: AimedPlan) -> list[tuple[Beam, BeamSetup, EnergyData]]:
    out = []
    for b in plan.beams:
        energy = machine.energy(b.energy_mev)
        app = machine.applicator(b.applicator)
        if energy is None or app is None:
            what = f"{b.energy_mev:g} MeV" if energy is None else f"applicator {b.applicator!r}"
            raise DoseError(f"beam {b.name}: machine {machine.name} has no {what}")
        ref = machine.applicator(energy.reference_applicator)
        if ref is None:
            raise DoseError(f"{energy.energy_mev:g} MeV: unknown reference applicator {energy.reference_applicator!r}")
        g = aimed.beam(b.name)
        setup = BeamSetup(
            name=b.name,
            frame=g.frame,
            cutout_mm=g.cutout_mm,
            custom_cutout=b.cutout_mm is not None,
            cutout_distance_mm=app.source_to_cutout_tray_mm,
            ssd_mm=g.ssd_mm,
            applicator=app,
            reference_applicator=ref,
            cutout_factor=b.cutout_factor.value if b.cutout_factor is not None else None,
        )
        out.append((b, setup, energy))
    return out


@dataclass(frozen=True)
class _Material:
    """The medium on (the part around the patient and boli of) the work grid before it is cropped: stopping and
    scattering power, and occupancy."""

    grid: GridGeometry
    stopping: FloatArray
    scattering: FloatArray
    occupancy: npt.NDArray[np.float32]

    def crop(self) -> Medium:
        """The medium on the smallest grid holding every occupied voxel and one more around them."""
        inside = self.occupancy > 0
        grid, sl = _crop(self.grid, inside)
        stopping, scattering = self.stopping[sl].astype(np.float32), self.scattering[sl].astype(np.float32)
        occ = self.occupancy[sl]
        _continue_material((stopping, scattering), occ)
        return Medium(grid=grid, stopping=stopping, scattering=scattering, inside=inside[sl], occupancy=occ)


def _material(
    plan: Plan,
    site: Site,
    ct: CTVolume,
    contours: Mapping[str, Sequence[Contour]],
    aimed: AimedPlan,
    work: GridGeometry,
) -> _Material:
    """CT through the curve, the overrides inside the External, air outside it, then each beam's bolus."""
    curve = site.ct_curve(plan.ct_curve)
    if curve is None:
        raise DoseError(f"plan {plan.id}: unknown CT curve {plan.ct_curve!r}")
    spacing = ct.geometry.slice_spacing_mm
    boli = [PlanarStructure(aimed.bolus[b.name], spacing) for b in plan.beams if b.bolus is not None]
    work = _around(work, [PlanarStructure(contours[plan.external], spacing), *boli])
    external = rasterize(contours[plan.external], work, spacing)
    if not external.any():
        raise DoseError(f"plan {plan.id}: the External {plan.external!r} encloses no voxel of the CT")
    occupancy = partial_volume(contours[plan.external], work, spacing).astype(np.float32)
    # air outside the External is zero whatever the CT says there: the curve runs inside it only
    rho_e, t_rel = np.zeros(work.shape), np.zeros(work.shape)
    rho_e[external], t_rel[external] = _curve(curve, resample(ct.hu, ct.geometry.axes(), work)[external])
    for i, ov in enumerate(plan.overrides):
        mat = site.material(ov.material)
        if mat is None:
            raise DoseError(f"override[{i}]: unknown material {ov.material!r}")
        if ov.structure not in contours:
            raise DoseError(f"override[{i}]: structure {ov.structure!r} has no contours")
        m = rasterize(contours[ov.structure], work, spacing) & external
        rho_e[m], t_rel[m] = mat.rel_stopping_power, mat.rel_scattering_power
    for b in plan.beams:  # in plan order: where boli overlap, the later one's material holds
        if b.bolus is None:
            continue
        mat = site.material(b.bolus.material)
        if mat is None:
            raise DoseError(f"beam {b.name}: unknown bolus material {b.bolus.material!r}")
        bm = rasterize(aimed.bolus[b.name], work, spacing) & ~external
        if not bm.any():
            raise DoseError(f"beam {b.name}: the bolus covers no voxel of the dose grid ({work.spacing_mm[0]:g} mm)")
        rho_e[bm], t_rel[bm] = mat.rel_stopping_power, mat.rel_scattering_power
        occupancy = np.minimum(occupancy + partial_volume(aimed.bolus[b.name], work, spacing), 1.0, dtype=np.float32)
    return _Material(work, rho_e, t_rel, occupancy)


@dataclass(frozen=True)
class _PerMU:
    """One beam's dose per MU, its normalization point and the dose per MU there."""

    beam: Beam
    dose: npt.NDArray[np.float32]
    point: Point
    gy_per_mu: float


def _per_mu(engine: DoseEngine, medium: Medium, b: Beam, setup: BeamSetup, energy: EnergyData) -> _PerMU:
    """One beam's dose per MU from the engine, continued one voxel beyond the medium, and its normalization."""
    d = engine.beam_dose(medium, setup, energy)
    if not np.all(np.isfinite(d)):
        raise DoseError(f"beam {b.name}: the dose engine returned non-finite dose")
    d = _continue_dose(d, medium.inside)
    return _PerMU(b, d, *_normalization(d, medium.grid, medium.inside, setup))


def _beams_per_mu(
    engine: DoseEngine, medium: Medium, setups: Sequence[tuple[Beam, BeamSetup, EnergyData]]
) -> list[_PerMU]:
    """Every beam's dose per MU, in plan order. The beams are independent and numpy lets go of the interpreter in
    their array work, so cores share them; each beam's matrix products then run on one BLAS thread: BLAS's own
    threads on top of the beams' would outnumber the cores, and its idle threads spin (on two cores shared with
    other work, BLAS at its default took more than twice the processor time and wall time of one thread each)."""
    workers = min(len(setups), os.cpu_count() or 1, _MAX_THREADS)
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            return [_per_mu(engine, medium, *one) for one in setups]
        with ThreadPoolExecutor(workers, thread_name_prefix="beam-dose") as pool:
            futures = [pool.submit(_per_mu, engine, medium, *one) for one in setups]
            return [f.result() for f in futures]  # in plan order: the first beam's error is the one raised


def _beam_dose(plan: Plan, aimed: AimedPlan, grid: GridGeometry, frame_uid: str, one: _PerMU, mu: float) -> BeamDose:
    """The beam's dose for ``mu`` MU per fraction."""
    gy = (one.dose * np.float32(mu * plan.fractions)).astype(np.float32)
    g = aimed.beam(one.beam.name)
    return BeamDose(
        beam_name=one.beam.name,
        mu_per_fraction=float(mu),
        dose=DoseGrid(grid, gy, frame_uid),
        normalization_point_mm=one.point,
        dose_per_fraction_gy=float(mu * one.gy_per_mu),
        ssd_mm=g.ssd_mm,
        surface_entry_mm=g.entry_mm,
        normalization_depth_mm=float(np.dot(np.asarray(one.point) - np.asarray(g.entry_mm), g.frame.direction)),
    )


def compute_plan_dose(
    plan: Plan,
    site: Site,
    ct: CTVolume,
    contours: Mapping[str, Sequence[Contour]],
    grid_mm: float | None = None,
    engine: DoseEngine | None = None,
    aimed: AimedPlan | None = None,
) -> PlanDose:
    """Dose of every beam of ``plan`` and their sum, on an axial grid of the CT's Frame of Reference covering
    the body and bolus. MU from the plan, or from the prescription at each beam's normalization point.
    ``aimed``: the beams as :func:`~rtexport.geometry.setup.aim_plan` set them up on these contours (else they
    are set up here). Beams are computed on up to :data:`_MAX_THREADS` threads at once: ``engine`` must not change
    shared state in :meth:`~rtexport.dose.engine.DoseEngine.beam_dose`."""
    engine = engine or PencilBeamEngine()
    machine = site.machine(plan.machine)
    if machine is None:
        raise DoseError(f"plan {plan.id}: unknown machine {plan.machine!r}")
    if site.ct_curve(plan.ct_curve) is None:
        raise DoseError(f"plan {plan.id}: unknown CT curve {plan.ct_curve!r}")
    aimed = aimed or aim_plan(plan, site, ct.geometry, contours)
    problems = cutout_problems(plan, site)
    if problems:
        raise PlanError(f"plan {plan.id}: the site's cutout factors do not cover every cutout", problems)
    work = _work_grid(ct, grid_mm or plan.dose_grid_mm)
    material = _material(plan, site, ct, contours, aimed, work)
    setups = _setups(plan, machine, aimed)
    medium = material.crop()
    per_mu = _beams_per_mu(engine, medium, setups)

    weights = [one.beam.weight if one.beam.weight is not None else 1.0 for one in per_mu]
    total_w = sum(weights)
    plan_gy = np.zeros(medium.grid.shape, dtype=np.float32)
    frame_uid = ct.geometry.frame_of_reference_uid
    beams: list[BeamDose] = []
    for one, wgt in zip(per_mu, weights, strict=True):
        b = one.beam
        mu = b.mu if b.mu is not None else plan.prescription_per_fraction_gy * wgt / total_w / one.gy_per_mu
        beams.append(_beam_dose(plan, aimed, medium.grid, frame_uid, one, mu))
        plan_gy += beams[-1].dose.gy
    return PlanDose(beams=tuple(beams), plan=DoseGrid(medium.grid, plan_gy, frame_uid))
