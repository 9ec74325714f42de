"""Dose per MU at each field's own dose maximum, and the cutout factor of any cutout shape.

The site's tables give output where it is measured (AAPM TG-25, TG-71): the applicator factor at the open
applicator's own dmax, the cutout factor at the cutout's own dmax relative to the open applicator. A field too
small for lateral equilibrium peaks shallower than the reference field, so each beam is normalized at its own
peak in water at the reference SSD: the highest dose of its aperture's pencil-beam sum over depth and across the
field (an off-axis cutout peaks where it keeps most lateral equilibrium).

Which factor a cutout of any shape gets: Khan's lateral build-up ratio with sector integration (Khan et al.,
Phys Med Biol 43:2741, 1998). The output a cutout keeps is the fraction of a 2-D Gaussian of spread σ_r that its
aperture covers around its best point (the sector integral of 1 − exp(−r²/2σ_r²)); its equivalent square is the
square covering the same fraction, and the site's table of square cutouts is read there. σ_r is commissioned from
that same table, by the least-squares fit of factor ∝ erf²(s/(2√2σ_r)) over its sides, so:

- a square gets exactly its measured factor, and the equivalence works where the table changes;
- a narrow or irregular cutout gets the factor of the square that keeps as much lateral equilibrium (for a
  3 × 10 cm field about a 3.7 cm square at 12 MeV, where 4·area/perimeter says 4.6 cm: too much output);
- nothing beyond the table: the pencil beam's own Fermi–Eyges σ near dmax is two to three times smaller than what
  measured tables show (it has no in-air or large-angle scatter), which would leave every cutout above 3-5 cm in
  "full equilibrium"; the equivalent-ellipse method (Biggs et al.) needs measured elongated inserts per energy and
  applicator, which a site file does not hold.

A cutout whose equivalent square lies outside the table is refused with the numbers, never extrapolated, unless
the plan gives the factor measured for that cutout (``cutout_factor = { value = ..., note = "..." }``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import erf, erfinv

from rtexport.dose.commissioning import BroadBeam, broad_beam, water_sigma_mm
from rtexport.errors import DoseError
from rtexport.geometry import polygon
from rtexport.model.plan import Plan, default_cutout
from rtexport.model.site import Applicator, EnergyData, Site

FloatArray = npt.NDArray[np.float64]

PENCIL_MM = 2.5  # pencil spacing of the water model (the engine's default)
_DEPTH_STEP_MM = 0.5
_SIDE_TOLERANCE_MM = 0.05  # an equivalent square this close to the table's end is that end (sampling of the outline)
_SUB = 16  # samples per pencil side for a cutout's pencil weights in the water model: its outline to 0.16 mm
_QUADRATURE = 32  # Gauss–Legendre nodes per edge of the sector integral
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(_QUADRATURE)  # once: they cost more than the integral itself
_SIGMA_R_MM = np.geomspace(0.5, 80.0, 800)  # the σ_r a table is fitted over


@dataclass(frozen=True)
class CutoutOutput:
    """How a beam's aperture sets its dose per MU: the model's peak water dose of the aperture at the reference
    SSD (relative to the reference field's maximum), where it lies, and the cutout factor applied there."""

    peak: float
    peak_depth_mm: float
    factor: float
    equivalent_square_mm: float | None  # None for the open applicator
    measured: bool  # the factor was measured for this cutout (given in the plan)


class CutoutOutOfRange(DoseError):
    """A cutout whose factor the site's table does not give; the message says why and what to do."""


def pencil_weights(poly: FloatArray, uc: FloatArray, vc: FloatArray, h: float, sub: int = 8) -> FloatArray:
    """Fraction of each h × h pencil (centres uc × vc) inside the polygon: [u, v]."""
    off = (np.arange(sub) + 0.5) / sub * h - h / 2
    us = (uc[:, None] + off[None, :]).ravel()
    vs = (vc[:, None] + off[None, :]).ravel()
    m = polygon.fill([poly], us, vs).T  # [u, v]
    return np.asarray(m.reshape(len(uc), sub, len(vc), sub).mean(axis=(1, 3)), dtype=np.float64)


def lattice(poly: FloatArray, h: float) -> tuple[FloatArray, FloatArray]:
    """Pencil centres on multiples of h (so one pencil sits on the central axis) covering the polygon."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    iu = np.arange(math.floor(lo[0] / h - 0.5), math.ceil(hi[0] / h + 0.5) + 1)
    iv = np.arange(math.floor(lo[1] / h - 0.5), math.ceil(hi[1] / h + 0.5) + 1)
    return iu * h, iv * h


def kernels(offsets_out: FloatArray, offsets_in: FloatArray, h: float, sigma: FloatArray) -> FloatArray:
    """G[k, o, i]: fraction of a uniform pencil of width h at offsets_in[i] landing on offsets_out[o] (per unit
    width) for each σ[k]: a pencil-integrated Gaussian."""
    diff = (offsets_out[:, None] - offsets_in[None, :])[None, :, :]
    s = math.sqrt(2.0) * np.maximum(np.asarray(sigma, dtype=np.float64), 1e-6)[:, None, None]
    return np.asarray(0.5 * (erf((diff + h / 2) / s) - erf((diff - h / 2) / s)), dtype=np.float64)


@dataclass(frozen=True)
class _Water:
    """The water model at the reference SSD: depths, the electron part of the broad-beam depth dose, and the
    pencil's Gaussian components (weight and σ projected to the plane of the cutout coordinates, per depth): one
    Fermi–Eyges Gaussian, or the fitted kernel's core and halo."""

    bb: BroadBeam
    depth_mm: FloatArray
    electron: FloatArray
    sigma_iso: FloatArray  # of the core (the only one without a kernel)
    components: tuple[tuple[FloatArray, FloatArray], ...]
    h: float

    @staticmethod
    def of(bb: BroadBeam, sad_mm: float, cutout_distance_mm: float, h: float) -> _Water:
        z = np.arange(0.0, bb.metrics.r80_mm, _DEPTH_STEP_MM)  # any field peaks before R80
        ssd = bb.reference_ssd_mm
        to_iso = sad_mm / (ssd + z)
        if bb.kernel is None:
            sig = water_sigma_mm(bb, z, ssd, cutout_distance_mm) * to_iso
            return _Water(bb, z, bb.electron_dose(z), sig, ((np.ones_like(z), sig),), h)
        w, core, halo = bb.kernel.at(z)
        parts = ((1.0 - w, core * to_iso), (w, halo * to_iso))
        return _Water(bb, z, bb.electron_dose(z), core * to_iso, parts, h)

    def polygon_peak(self, poly: FloatArray) -> tuple[float, float]:
        """Highest dose of an aperture and its depth, over depth and the pencil centres."""
        uc, vc = lattice(poly, self.h)
        w = pencil_weights(poly, uc, vc, self.h, sub=_SUB)
        keep_u, keep_v = w.any(axis=1), w.any(axis=0)
        uc, vc, w = uc[keep_u], vc[keep_v], w[np.ix_(keep_u, keep_v)]
        lateral = np.zeros((len(self.depth_mm), len(uc), len(vc)))
        for weight, sigma in self.components:
            gu = kernels(uc, uc, self.h, sigma)
            gv = kernels(vc, vc, self.h, sigma)
            lateral += weight[:, None, None] * np.matmul(np.matmul(gu, w), np.swapaxes(gv, 1, 2))  # [z, u, v]
        dose = self.electron[:, None, None] * lateral + self.bb.tail * w[None]
        k = int(np.argmax(dose.max(axis=(1, 2))))
        return float(dose[k].max()), float(self.depth_mm[k])

    def square_peaks(self, sides_mm: list[float]) -> FloatArray:
        """The model's peak dose of centred square cutouts (kept per broad beam, which is kept per energy)."""
        key = (id(self.bb), self.h, tuple(sides_mm))
        if key not in _SQUARE_PEAKS:
            _SQUARE_PEAKS[key] = np.array([self.polygon_peak(_square(s))[0] for s in sides_mm])
        return _SQUARE_PEAKS[key]


_SQUARE_PEAKS: dict[tuple[int, float, tuple[float, ...]], FloatArray] = {}


def _square(side: float) -> FloatArray:
    a = side / 2.0
    return np.array([(-a, -a), (a, -a), (a, a), (-a, a)], dtype=np.float64)


def peak_equivalent_square_mm(water: _Water, peak: float, sides_mm: list[float]) -> float:
    """The side of the square cutout whose model peak equals ``peak`` (between the table's squares; below or
    above them, a side beyond the table's ends in proportion)."""
    peaks = water.square_peaks(sides_mm)
    if peak < peaks[0]:
        return float(sides_mm[0] * peak / peaks[0])
    if peak > peaks[-1]:
        return float(sides_mm[-1] * peak / peaks[-1])
    return float(np.interp(peak, np.maximum.accumulate(peaks), sides_mm))


def _range_problem(what: str, energy: EnergyData, how: str) -> str:
    fix = (
        "measure this cutout's factor and give it on the beam: cutout_factor = { value = ..., note = \"how it "
        'was measured" }'
    )
    if not energy.cutout_factors:
        return f"{what}: the site has no cutout factors at {energy.energy_mev:g} MeV; {fix}, or add cutout_factors"
    lo, hi = energy.cutout_factors[0].side_mm, energy.cutout_factors[-1].side_mm
    return (
        f"{what}: {how}, outside the site's cutout factors ({lo:g}-{hi:g} mm at {energy.energy_mev:g} MeV): a "
        f"factor is never extrapolated; {fix}, or add that size to the site's cutout_factors"
    )


def lateral_sigma_mm(energy: EnergyData) -> float | None:
    """σ_r of the energy's cutout table: the least-squares fit of ln(factor) = c + 2 ln erf(s/(2√2σ_r)) over its
    square sides s; None for a table of fewer than two sides."""
    if len(energy.cutout_factors) < 2:
        return None
    sides = np.array([p.side_mm for p in energy.cutout_factors])
    log_f = np.log([p.factor for p in energy.cutout_factors])
    model = 2.0 * np.log(np.maximum(erf(sides[None, :] / (2.0 * math.sqrt(2.0) * _SIGMA_R_MM[:, None])), 1e-300))
    resid = log_f[None, :] - model
    resid -= resid.mean(axis=1, keepdims=True)
    return float(_SIGMA_R_MM[int(np.argmin((resid**2).sum(axis=1)))])


def _sector_integral(poly: FloatArray, points: FloatArray, sigma_mm: float) -> FloatArray:
    """Fraction of a 2-D Gaussian of spread σ centred on each point (n, 2) inside the polygon: the sum over its
    edges of signed sectors ∫ (1 − exp(−r(θ)²/2σ²)) dθ / 2π, r(θ) the distance to the edge along θ (Khan's
    sector integration, exact for a polygon but for the Gauss–Legendre quadrature in θ)."""
    a = poly[None, :, :] - points[:, None, :]  # [point, edge, xy]
    b = np.roll(poly, -1, axis=0)[None, :, :] - points[:, None, :]
    e = b - a
    cross_ab = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    span = np.arctan2(cross_ab, (a * b).sum(axis=-1))  # signed angle the edge subtends
    start = np.arctan2(a[..., 1], a[..., 0])
    a_e = a[..., 0] * e[..., 1] - a[..., 1] * e[..., 0]
    theta = start[..., None] + 0.5 * span[..., None] * (1.0 + _NODES)
    u_e = np.cos(theta) * e[..., 1, None] - np.sin(theta) * e[..., 0, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.abs(u_e) > 1e-300, a_e[..., None] / u_e, 0.0)
    kept = 1.0 - np.exp(-(r * r) / (2.0 * sigma_mm * sigma_mm))
    per_edge = 0.5 * span * (kept * _WEIGHTS).sum(axis=-1)
    return np.asarray(np.abs(per_edge.sum(axis=-1)) / (2.0 * math.pi), dtype=np.float64)


def lateral_fraction(poly: FloatArray, sigma_mm: float) -> float:
    """The largest fraction of a 2-D Gaussian of spread σ that the aperture covers around any of its points (the
    lateral build-up ratio of the aperture, Khan et al. 1998): a lattice search, refined by a compass search."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    step = max(float((hi - lo).max()) / 16.0, 0.25)
    gu, gv = np.meshgrid(np.arange(lo[0], hi[0] + step, step), np.arange(lo[1], hi[1] + step, step))
    inside = polygon.contains([poly], gu, gv)
    candidates = np.column_stack([gu[inside], gv[inside]]) if inside.any() else poly.mean(axis=0, keepdims=True)
    values = _sector_integral(poly, candidates, sigma_mm)
    k = int(np.argmax(values))
    best, value = candidates[k], float(values[k])
    # the best of the eight neighbours at ``step`` while one is better, else half the step: the fraction is smooth
    # around its maximum, so this finds it to _REFINE_MM (numpy alone: an optimizer's import costs more)
    while step > _REFINE_MM:
        around = best + step * _COMPASS
        found = _sector_integral(poly, around, sigma_mm)
        k = int(np.argmax(found))
        if found[k] > value:
            best, value = around[k], float(found[k])
        else:
            step /= 2.0
    return value


_REFINE_MM = 1e-3
_COMPASS = np.array([(du, dv) for du in (-1.0, 0.0, 1.0) for dv in (-1.0, 0.0, 1.0) if du or dv])


def equivalent_square_mm(fraction: float, sigma_mm: float) -> float:
    """The side of the square that covers ``fraction`` of the Gaussian around its centre: erf²(s/(2√2σ)) = f."""
    return float(2.0 * math.sqrt(2.0) * sigma_mm * erfinv(min(math.sqrt(max(fraction, 0.0)), 1.0 - 1e-16)))


def cutout_output(
    energy: EnergyData,
    applicator: Applicator,
    reference: Applicator,
    cutout_mm: FloatArray | None,
    sad_mm: float,
    measured_factor: float | None = None,
    cutout_distance_mm: float | None = None,
    h: float = PENCIL_MM,
    what: str = "cutout",
) -> CutoutOutput:
    """The output of an aperture (``cutout_mm`` in the isocenter plane; None: the open applicator; the cutout
    ``cutout_distance_mm`` from the source, by default the applicator's tray); raise :class:`CutoutOutOfRange`
    for a cutout the table does not cover and no measured factor is given. Kept for the same site objects and
    cutout (checking a plan's cutouts and then computing its dose ask for each twice)."""
    tray = applicator.source_to_cutout_tray_mm if cutout_distance_mm is None else cutout_distance_mm
    cutout = None if cutout_mm is None else np.asarray(cutout_mm, dtype=np.float64)
    key = (
        id(energy), id(applicator), id(reference), None if cutout is None else (cutout.shape, cutout.tobytes()),
        sad_mm, measured_factor, tray, h,
    )  # fmt: skip
    kept = _OUTPUTS.get(key)
    if kept is not None and all(a is b for a, b in zip(kept[0], (energy, applicator, reference), strict=True)):
        return kept[1]
    found = _cutout_output(energy, applicator, reference, cutout, sad_mm, measured_factor, tray, h, what)
    if len(_OUTPUTS) >= _OUTPUTS_KEPT:
        _OUTPUTS.clear()
    _OUTPUTS[key] = ((energy, applicator, reference), found)  # holding them keeps their ids from being reused
    return found


_OutputKey = tuple[int, int, int, tuple[tuple[int, ...], bytes] | None, float, float | None, float, float]
_OUTPUTS: dict[_OutputKey, tuple[tuple[EnergyData, Applicator, Applicator], CutoutOutput]] = {}
_OUTPUTS_KEPT = 64


def _cutout_output(
    energy: EnergyData,
    applicator: Applicator,
    reference: Applicator,
    cutout_mm: FloatArray | None,
    sad_mm: float,
    measured_factor: float | None,
    tray: float,
    h: float,
    what: str,
) -> CutoutOutput:
    bb = broad_beam(energy, reference, sad_mm, tray)
    water = _Water.of(bb, sad_mm, tray, h)
    opening = np.asarray(default_cutout(applicator.shape, applicator.opening_mm), dtype=np.float64)
    if cutout_mm is None:
        peak, depth = water.polygon_peak(opening)
        return CutoutOutput(peak, depth, 1.0, None, False)
    poly = np.asarray(cutout_mm, dtype=np.float64)
    peak, depth = water.polygon_peak(poly)
    if bb.kernel is not None and energy.cutout_factors:
        side = peak_equivalent_square_mm(water, peak, [p.side_mm for p in energy.cutout_factors])
        how = f"its equivalent square (the square of the same peak dose in the fitted kernel) is {side:.1f} mm"
    else:
        # without a table to fit, the pencil beam's own spread at its dmax (never used to read a table)
        sigma = lateral_sigma_mm(energy) or float(water.sigma_iso[int(np.argmin(np.abs(water.depth_mm - depth)))])
        side = equivalent_square_mm(lateral_fraction(poly, sigma), sigma)
        how = f"its equivalent square (by lateral build-up, σ_r {sigma:.1f} mm) is {side:.1f} mm"
    if measured_factor is not None:
        return CutoutOutput(peak, depth, measured_factor, side, True)
    if abs(polygon.area(poly)) >= abs(polygon.area(opening)) * (1.0 - 1e-6):  # it fits in the opening: it is one
        return CutoutOutput(peak, depth, 1.0, None, False)
    table = energy.cutout_factors
    if not table:
        raise CutoutOutOfRange(_range_problem(what, energy, ""))
    sides = [p.side_mm for p in table]
    if not sides[0] - _SIDE_TOLERANCE_MM <= side <= sides[-1] + _SIDE_TOLERANCE_MM:
        raise CutoutOutOfRange(_range_problem(what, energy, how))
    factor = float(np.interp(side, sides, [p.factor for p in table]))
    return CutoutOutput(peak, depth, factor, side, False)


def cutout_problems(plan: Plan, site: Site) -> list[str]:
    """Every beam whose cutout the site's table does not cover and whose plan gives no measured factor (the same
    rule the dose applies), each naming its key; beams on an unknown machine, energy or applicator are left to
    :func:`rtexport.model.plan.plan_problems`."""
    machine = site.machine(plan.machine)
    if machine is None:
        return []
    problems = []
    for i, beam in enumerate(plan.beams):
        energy = machine.energy(beam.energy_mev)
        app = machine.applicator(beam.applicator)
        ref = machine.applicator(energy.reference_applicator) if energy is not None else None
        if beam.cutout_mm is None or beam.cutout_factor is not None or energy is None or app is None or ref is None:
            continue
        try:
            cutout_output(
                energy, app, ref, np.asarray(beam.cutout_mm, dtype=np.float64), machine.source_axis_distance_mm,
                what=f"beam[{i}].cutout_mm: beam {beam.name}",
            )  # fmt: skip
        except CutoutOutOfRange as e:
            problems.append(str(e))
    return problems
