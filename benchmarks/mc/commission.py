"""Commission the pencil beam from Monte Carlo water data of the idealized machine, as a clinic would from
measurements: the reference field's PDD, the in-air spread, the virtual SSD, cutout output factors at each
field's own dmax, and a calibration of 1 cGy/MU at dmax of the reference field at the reference SSD.

Monitor units: the source emits isotropically and each Monte Carlo history starts inside the opening, so dose per
emitted particle is dose per history × the opening's solid angle. One MU is the emission that gives the reference
field 1 cGy at its dmax; every case converts to Gy/MU with that same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

from mc.cases import Case, Voxels, opening, solid_angle, voxels
from mc.montecarlo import MCResult
from rtexport.dose import pdd_metrics
from rtexport.model.site import Applicator, ApplicatorShape, DepthDose, EnergyData, FactorPoint, FieldDepthDose

FloatArray = npt.NDArray[np.float64]

CALIBRATION_CGY_PER_MU = 1.0
# Cutout factors are read over ±2.5 mm (two 2.5 mm bins) of the central y slab: a small-field detector, so a
# 2 × 2 cm field is not averaged over its penumbra.
DETECTOR_HALF_CM = 0.25
# A point source has no in-air spread; the model needs a positive number, and this one blurs by 5 µm.
SIGMA_THETA_RAD = 1e-4
# The idealized collimator sits on the phantom; with no in-air spread its distance from the source changes
# nothing but the engine's "patient reaches the cutout" check, which a 60° oblique phantom would trip at 95 cm.
CUTOUT_DISTANCE_MM = 800.0
# Square fields whose depth doses the site gives (field_pdds), as a clinic measures a few small fields; 4x4 cm is
# left out, so its depth dose is a prediction.
FIELD_PDD_SIDES_CM = (2.0, 3.0, 6.0)
REFERENCE_APPLICATOR = Applicator(
    id="10x10",
    shape=ApplicatorShape.SQUARE,
    opening_mm=(100.0, 100.0),
    source_to_applicator_mm=CUTOUT_DISTANCE_MM,
    source_to_cutout_tray_mm=CUTOUT_DISTANCE_MM,
)


def per_emission(case: Case, result: MCResult) -> FloatArray:
    """Dose per emitted source particle (Gy, up to a constant common to all cases) [x, y, z]."""
    d, (x0, x1, y0, y1) = opening(case)
    return np.asarray(result.dose * solid_angle(d, x0, x1, y0, y1), dtype=np.float64)


def axis_depth_dose(case: Case, dose: FloatArray, x_cm: float = 0.0, half_cm: float = 0.5) -> FloatArray:
    """Depth dose [z] through lateral position x: mean over x bins within ``half_cm`` and the central y slab."""
    vox = voxels(case)
    xc = Voxels.centres(vox.x)
    sel = np.abs(xc - x_cm) < half_cm
    return np.asarray(dose[sel, vox.centre_y, :].mean(axis=0), dtype=np.float64)


def peak(z: FloatArray, d: FloatArray) -> tuple[float, float]:
    """Depth and dose of the maximum: a parabola through the largest point and its two neighbours on each side
    (least squares), which averages the Monte Carlo noise over 1 cm."""
    k = int(np.argmax(d))
    lo, hi = max(k - 2, 0), min(k + 3, len(d))
    c2, c1, c0 = np.polyfit(z[lo:hi], d[lo:hi], 2)
    if c2 >= 0:
        return float(z[k]), float(d[k])
    zm = float(np.clip(-c1 / (2 * c2), z[lo], z[hi - 1]))
    return zm, float(c0 + c1 * zm + c2 * zm * zm)


@dataclass(frozen=True)
class Commissioning:
    """The beam model built from Monte Carlo, and what converts Monte Carlo dose to Gy/MU."""

    energy: EnergyData
    applicator: Applicator
    gy_per_mu_per_emission: float  # multiply dose per emission by this to get Gy/MU
    reference_pdd_mm: tuple[FloatArray, FloatArray]


def _measured(z_mm: FloatArray, dose: FloatArray, window: int = 5) -> tuple[FloatArray, FloatArray]:
    """A Monte Carlo depth dose as a measured one: smoothed (±0.7 % noise per 2 mm bin: a cubic over 1 cm keeps the
    build-up's shape) and starting at the surface, extrapolated from the first two bin centres; % of its max."""
    smooth = np.maximum(signal.savgol_filter(dose, window, 3), 0.0)
    pct = 100.0 * smooth / float(smooth.max())
    surface = max(float(pct[0] - z_mm[0] * (pct[1] - pct[0]) / (z_mm[1] - z_mm[0])), 0.0)
    return np.concatenate([[0.0], z_mm]), np.concatenate([[surface], pct])


def commission(
    reference: tuple[Case, MCResult],
    squares: list[tuple[Case, MCResult]],
    pdd_sides_cm: tuple[float, ...] = FIELD_PDD_SIDES_CM,
) -> Commissioning:
    """EnergyData from the reference field (PDD, calibration) and square cutouts (output factors, and the depth
    doses of those in ``pdd_sides_cm``)."""
    case, result = reference
    vox = voxels(case)
    ref = axis_depth_dose(case, per_emission(case, result))
    ref_max = float(np.maximum(signal.savgol_filter(ref, 5, 3), 0.0).max())
    gy_per_mu = CALIBRATION_CGY_PER_MU / 100.0 / ref_max
    z_mm, pct = _measured(Voxels.centres(vox.z) * 10.0, ref)
    factors = [FactorPoint(side_mm=100.0, factor=1.0)]
    fields = []
    for c, r in squares:
        zc = Voxels.centres(voxels(c).z) * 10.0
        axis = axis_depth_dose(c, per_emission(c, r), half_cm=DETECTOR_HALF_CM)
        _, own = peak(zc, axis)
        factors.append(FactorPoint(side_mm=c.side_cm[0] * 10.0, factor=round(own / ref_max, 4)))
        if c.side_cm[0] in pdd_sides_cm:
            # a wider detector where the field allows it (±5 mm in a 6 cm field): Monte Carlo's noise is the
            # halo's enemy, a few tenths of a percent over centimetres
            half = min(2.0 * DETECTOR_HALF_CM, c.side_cm[0] / 8.0)
            fz, fd = _measured(zc, axis_depth_dose(c, per_emission(c, r), half_cm=half), window=7)
            fields.append(
                FieldDepthDose(
                    side_mm=c.side_cm[0] * 10.0,
                    depth_mm=[float(v) for v in fz],
                    dose_pct=[round(float(v), 3) for v in fd],
                )
            )
    factors.sort(key=lambda p: p.side_mm)
    fields.sort(key=lambda f: f.side_mm)
    energy = EnergyData(
        energy_mev=case.energy_mev,
        pdd=DepthDose(depth_mm=[float(v) for v in z_mm], dose_pct=[round(float(v), 3) for v in pct]),
        reference_applicator=REFERENCE_APPLICATOR.id,
        reference_ssd_mm=case.ssd_cm * 10.0,
        sigma_theta_rad=SIGMA_THETA_RAD,
        virtual_ssd_mm=case.ssd_cm * 10.0,
        applicator_factors={REFERENCE_APPLICATOR.id: 1.0},
        cutout_factors=factors,
        field_pdds=fields,
        calibration_cgy_per_mu=CALIBRATION_CGY_PER_MU,
    )
    pdd_metrics(z_mm, pct)  # refuse a depth dose the engine could not analyse
    return Commissioning(energy, REFERENCE_APPLICATOR, gy_per_mu, (z_mm, pct))
