"""Beam-data analysis and the broad-beam model derived from it (Hogstrom 1981, ICRU 35)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rtexport.errors import DoseError
from rtexport.model.site import Applicator, EnergyData

if TYPE_CHECKING:  # the kernel (and scipy.optimize with it) is imported where a site's field PDDs are fitted
    from rtexport.dose.kernel import LateralKernel

FloatArray = npt.NDArray[np.float64]

X0_WATER_CM = 36.08  # radiation length of water, g/cm²
_ES_MEV = 21.2  # Rossi's scattering constant
_HIGHLAND_MEV = 13.6  # Highland's, per projected angle
_ME_MEV = 0.511
_GAUSS_80_20 = 1.683  # 80-20 % width of a Gaussian edge, in σ


@dataclass(frozen=True)
class PDDMetrics:
    """Depths (mm) of a percent depth dose: dmax, R90, R80, R50, practical range Rp; surface and tail (%)."""

    dmax_mm: float
    r90_mm: float
    r80_mm: float
    r50_mm: float
    rp_mm: float
    surface_pct: float
    bremsstrahlung_pct: float


def pdd_metrics(depth_mm: npt.ArrayLike, dose: npt.ArrayLike) -> PDDMetrics:
    """dmax, R90, R80, R50 (distal, interpolated on a 0.05 mm grid) and Rp, where the tangent at the steepest
    point of the fall-off meets the bremsstrahlung tail (the dose at the deepest depth)."""
    z = np.asarray(depth_mm, dtype=np.float64)
    d = np.asarray(dose, dtype=np.float64)
    fine = np.arange(z[0], z[-1], 0.05)
    df = np.interp(fine, z, d)
    imax = int(np.argmax(df))
    df = 100.0 * df / df[imax]
    tail = float(df[-1])

    def distal(level: float) -> float:
        below = np.nonzero(df[imax:] < level)[0]
        if below.size == 0:
            raise DoseError(f"depth dose never falls below {level:g} %")
        k = imax + int(below[0])
        return float(np.interp(level, [df[k], df[k - 1]], [fine[k], fine[k - 1]]))

    grad = np.gradient(df, fine)
    ks = imax + int(np.argmin(grad[imax:]))
    rp = fine[ks] + (tail - df[ks]) / grad[ks]
    return PDDMetrics(
        dmax_mm=float(fine[imax]),
        r90_mm=distal(90.0),
        r80_mm=distal(80.0),
        r50_mm=distal(50.0),
        rp_mm=float(rp),
        surface_pct=float(df[0]),
        bremsstrahlung_pct=tail,
    )


def scattering_power_water(energy_mev: FloatArray) -> FloatArray:
    """Linear scattering power of water (rad²/mm, polar angle) after Rossi: (Es / pβ)² / X0."""
    e = np.maximum(energy_mev, 0.2)
    pbeta = e * (e + 2 * _ME_MEV) / (e + _ME_MEV)
    return np.asarray((_ES_MEV / pbeta) ** 2 / (X0_WATER_CM * 10.0), dtype=np.float64)


@dataclass(frozen=True)
class BroadBeam:
    """The commissioned broad-beam model of one energy, in mm.

    ``dinf`` is the electron part of the infinitely broad field's depth dose (fraction of the reference dmax
    dose), unfolded from the reference field; ``tail`` the bremsstrahlung dose added after the lateral sum.
    """

    depth_mm: FloatArray
    dinf: FloatArray
    tail: float
    metrics: PDDMetrics
    e0_mev: float
    sigma_theta_rad: float
    virtual_ssd_mm: float
    reference_ssd_mm: float
    kernel: LateralKernel | None = None  # the two-Gaussian spread fitted to field_pdds; None: Fermi–Eyges alone

    @property
    def rp_mm(self) -> float:
        return self.metrics.rp_mm

    @property
    def sigma_frozen_mm(self) -> float:
        """Effective depth beyond which σ stops growing: R90. Fermi–Eyges keeps spreading the electrons that are
        left, while Monte Carlo of small fields (12 and 20 MeV, ``benchmarks/bench_dose_accuracy.py``) shows
        their lateral spread saturating near R90; frozen at R80, σ ends 15-20 % too wide and small fields fall
        off 2-4 mm too shallow."""
        return self.metrics.r90_mm

    def energy_at(self, zeff_mm: FloatArray) -> FloatArray:
        """Mean energy at effective depth: E0 (1 − z/Rp), floored at 0.2 MeV."""
        return np.maximum(self.e0_mev * (1.0 - zeff_mm / self.rp_mm), 0.2)

    def electron_dose(self, zeff_mm: FloatArray) -> FloatArray:
        return np.asarray(np.interp(zeff_mm, self.depth_mm, self.dinf, left=self.dinf[0], right=0.0))


def sigma_theta(energy: EnergyData, sad_mm: float, cutout_distance_mm: float) -> float:
    """In-air angular spread: given, or from the 80-20 % penumbra in air at the isocenter plane."""
    if energy.sigma_theta_rad is not None:
        return energy.sigma_theta_rad
    assert energy.penumbra_80_20_mm is not None  # the model requires one of the two
    return energy.penumbra_80_20_mm / _GAUSS_80_20 / (sad_mm - cutout_distance_mm)


def highland_ratio(depth_mm: FloatArray) -> FloatArray:
    """Highland's multiple-scattering angle over Rossi's for a water thickness (Highland 1975, Nucl Instrum
    Methods 129:497, as the PDG gives it): 13.6 MeV (1 + 0.038 ln(L/X0)) against 21.2 MeV / √2 per projected
    angle, L/X0 held within Highland's range (≥ 10⁻³). Rossi's formula has no single-scattering tail correction
    and overstates the Gaussian core's width: 0.81–0.85 of it for the 2–6 cm of water an electron crosses."""
    x = np.maximum(np.asarray(depth_mm, dtype=np.float64) / (X0_WATER_CM * 10.0), 1e-3)
    return np.asarray(np.minimum(_HIGHLAND_MEV * (1.0 + 0.038 * np.log(x)) / (_ES_MEV / math.sqrt(2.0)), 1.0))


def water_sigma_mm(beam: BroadBeam, depth_mm: FloatArray, ssd_mm: float, cutout_distance_mm: float) -> FloatArray:
    """Pencil σ (mm, at the depth, not projected) in water on the central axis."""
    z = np.asarray(depth_mm, dtype=np.float64)
    # Fermi–Eyges ∫₀ᶻ T(u)(z − u)² du over 201 points of [0, z], every depth at once (a row each)
    uu = z[:, None] * np.linspace(0.0, 1.0, 201)[None, :]
    t = scattering_power_water(beam.energy_at(np.minimum(uu, beam.sigma_frozen_mm)))
    sig2 = np.where(z > 0, 0.5 * np.trapezoid(t * (z[:, None] - uu) ** 2, uu, axis=-1), 0.0)
    air = beam.sigma_theta_rad * (ssd_mm - cutout_distance_mm + z)
    zc = np.minimum(z, beam.sigma_frozen_mm)  # σ stops growing there
    if np.any(z > beam.sigma_frozen_mm):
        k = np.searchsorted(z, beam.sigma_frozen_mm)
        sig2 = np.where(z > beam.sigma_frozen_mm, np.interp(zc, z[: k + 1], sig2[: k + 1]), sig2)
    return np.asarray(np.sqrt(sig2 + air**2), dtype=np.float64)


def _fermi_eyges_beam(energy: EnergyData, reference: Applicator, sad_mm: float, cutout_distance_mm: float) -> BroadBeam:
    """Unfold the infinitely broad field from the reference-applicator depth dose:
    D∞(z) = (D_ref(z) − D_x) / (erf(a/√2σ) erf(b/√2σ)), with a, b the half sides projected to the depth."""
    from scipy.special import erf  # imported where used: the beam-data analysis above needs no scipy

    z = np.asarray(energy.pdd.depth_mm, dtype=np.float64)
    d = np.asarray(energy.pdd.dose_pct, dtype=np.float64)
    metrics = pdd_metrics(z, d)
    dref = d / d.max()
    tail = metrics.bremsstrahlung_pct / 100.0
    ssd = energy.reference_ssd_mm
    provisional = BroadBeam(
        depth_mm=z,
        dinf=dref,
        tail=tail,
        metrics=metrics,
        e0_mev=2.33 * metrics.r50_mm / 10.0,
        sigma_theta_rad=sigma_theta(energy, sad_mm, cutout_distance_mm),
        virtual_ssd_mm=energy.virtual_ssd_mm,
        reference_ssd_mm=ssd,
    )
    sig = water_sigma_mm(provisional, z, ssd, cutout_distance_mm)
    scale = (sad_mm + 0.0) / (ssd + z)  # σ projected back to the isocenter plane, where the opening is given
    a, b = reference.opening_mm[0] / 2.0, reference.opening_mm[1] / 2.0
    ff = erf(a / (math.sqrt(2.0) * sig * scale)) * erf(b / (math.sqrt(2.0) * sig * scale))
    dinf = np.maximum(dref - tail, 0.0) / ff
    return BroadBeam(
        depth_mm=z,
        dinf=dinf,
        tail=tail,
        metrics=metrics,
        e0_mev=provisional.e0_mev,
        sigma_theta_rad=provisional.sigma_theta_rad,
        virtual_ssd_mm=energy.virtual_ssd_mm,
        reference_ssd_mm=ssd,
    )


_CACHE: dict[tuple[str, tuple[float, float], float, float], BroadBeam] = {}


def broad_beam(energy: EnergyData, reference: Applicator, sad_mm: float, cutout_distance_mm: float) -> BroadBeam:
    """The broad-beam model of an energy: Fermi–Eyges alone, or, where the site gives square fields' depth doses
    (``field_pdds``), with the two-Gaussian kernel fitted to them (:mod:`rtexport.dose.kernel`) and D∞ unfolded
    with it. Fitted once per energy and geometry in a process."""
    key = (energy.model_dump_json(), reference.opening_mm, sad_mm, cutout_distance_mm)
    found = _CACHE.get(key)
    if found is None:
        found = _fermi_eyges_beam(energy, reference, sad_mm, cutout_distance_mm)
        if energy.field_pdds:
            found = _with_kernel(found, energy, reference, sad_mm, cutout_distance_mm)
        _CACHE[key] = found
    return found


def _with_kernel(
    bb: BroadBeam, energy: EnergyData, reference: Applicator, sad_mm: float, cutout_distance_mm: float
) -> BroadBeam:
    from rtexport.dose.kernel import KNOT_MM, FieldData, fit_kernel, unfold

    ssd = bb.reference_ssd_mm
    knots = np.arange(0.0, bb.depth_mm[-1], KNOT_MM)

    def to_iso(z: FloatArray) -> FloatArray:
        return np.asarray(sad_mm / (ssd + z), dtype=np.float64)

    ref_half = (reference.opening_mm[0] / 2.0, reference.opening_mm[1] / 2.0)
    ref_dose = np.asarray(energy.pdd.dose_pct, dtype=np.float64) / max(energy.pdd.dose_pct)
    sides = [p.side_mm for p in energy.cutout_factors]
    factors = [p.factor for p in energy.cutout_factors]
    fields = [FieldData(*ref_half, np.interp(knots, bb.depth_mm, ref_dose))]
    for f in energy.field_pdds:
        scale = float(np.interp(f.side_mm, sides, factors)) / max(f.dose_pct)
        dose = np.interp(knots, f.depth_mm, np.asarray(f.dose_pct) * scale, right=0.0)
        fields.append(FieldData(f.side_mm / 2.0, f.side_mm / 2.0, dose))
    first = water_sigma_mm(bb, knots, ssd, cutout_distance_mm)
    # the core never narrower than multiple scattering with Highland's angle (the in-air spread as it is)
    air2 = (bb.sigma_theta_rad * (ssd - cutout_distance_mm + knots)) ** 2
    floor = np.sqrt(highland_ratio(knots) ** 2 * np.maximum(first**2 - air2, 0.0) + air2)
    dinf = bb.dinf
    kernel: LateralKernel | None = None
    for _ in range(2):  # D∞ depends on the kernel through the reference field's own lateral loss
        dk = np.interp(knots, bb.depth_mm, dinf)
        kernel = fit_kernel(knots, dk, bb.tail, fields, first, floor, to_iso(knots), kernel)
        dinf = unfold(ref_half, bb.depth_mm, ref_dose, bb.tail, kernel, to_iso)
    return dataclasses.replace(bb, dinf=dinf, kernel=kernel)
