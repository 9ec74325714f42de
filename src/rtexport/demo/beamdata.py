"""Illustrative electron beam data (NOT FOR CLINICAL USE).

Depth doses are synthesised through the broad-field points of a public TrueBeam-like data set
(10×10 applicator, SSD 100 cm): surface dose, dmax, R90, R80, R50 and Rp, with a bremsstrahlung tail.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.interpolate import CubicHermiteSpline, PchipInterpolator

# nominal MeV: (dmax, Ds %, R90, R80, R50, Rp) in cm, from shared/reference/dose-engine.md
REFERENCE_TABLE: dict[int, tuple[float, float, float, float, float, float]] = {
    6: (1.3, 76.6, 1.81, 2.00, 2.40, 3.02),
    9: (2.1, 80.4, 2.77, 3.03, 3.58, 4.40),
    12: (2.8, 85.5, 3.90, 4.27, 5.01, 6.08),
    16: (2.9, 90.4, 5.07, 5.61, 6.63, 8.04),
    20: (2.2, 92.0, 5.80, 6.67, 8.13, 10.03),
}
# Bremsstrahlung tail (% of max) and in-air angular spread (rad) per energy: typical magnitudes.
BREMSSTRAHLUNG_PCT = {6: 0.7, 9: 1.2, 12: 2.0, 16: 3.0, 20: 4.0}
SIGMA_THETA_RAD = {6: 0.060, 9: 0.045, 12: 0.036, 16: 0.029, 20: 0.024}
VIRTUAL_SSD_MM = {6: 880.0, 9: 910.0, 12: 930.0, 16: 945.0, 20: 955.0}

APPLICATORS = {"6x6": 60.0, "10x10": 100.0, "15x15": 150.0, "20x20": 200.0, "25x25": 250.0}
# Machine geometry of the kind a vendor fixes: jaws (field at the isocenter plane) opened 10 cm beyond each
# applicator, 5 cm beyond the small ones at 16 MeV and more; upper Y and lower X jaws' distance from the source.
SOURCE_TO_JAWS_MM = {"x": 367.0, "y": 280.0}
JAW_MARGIN_MM = 100.0
HIGH_ENERGY_JAW_MARGIN_MM = {"6x6": 50.0, "10x10": 50.0}


def _jaws(side: float, margin: float) -> dict[str, list[float]]:
    half = (side + margin) / 2
    return {"x": [-half, half], "y": [-half, half]}


def depth_dose(energy: int, step_mm: float = 1.0) -> tuple[list[float], list[float]]:
    """Synthesised PDD (depth mm, % of max) through the table's points."""
    dmax, ds, r90, r80, r50, rp = REFERENCE_TABLE[energy]
    dx = BREMSSTRAHLUNG_PCT[energy]
    # The fall-off is steepest at R50, where its tangent meets the bremsstrahlung tail at Rp; beyond R50 a
    # parabola joins the tail smoothly at Rp + (Rp - R50).
    steepest = (50.0 - dx) / (rp - r50)
    knots_cm = np.array([0.0, 0.45 * dmax, dmax, r90, r80, r50, rp + (rp - r50), rp + 2.5])
    knots_pct = np.array([ds, ds + 0.75 * (100.0 - ds), 100.0, 90.0, 80.0, 50.0, dx, dx])
    slopes = PchipInterpolator(knots_cm, knots_pct).derivative()(knots_cm)
    slopes[5], slopes[6], slopes[7] = -steepest, 0.0, 0.0
    curve = CubicHermiteSpline(knots_cm * 10.0, knots_pct, slopes / 10.0)
    depths = np.arange(0.0, (rp + 2.5) * 10.0 + 1e-9, step_mm)
    return [round(float(d), 3) for d in depths], [round(float(v), 3) for v in curve(depths)]


def energy_data(energy: int) -> dict[str, Any]:
    depths, pct = depth_dose(energy)
    lo = 0.04 * (20 - energy) / 14  # low energies lose more output in small cutouts
    return {
        "energy_mev": float(energy),
        "reference_applicator": "10x10",
        "reference_ssd_mm": 1000.0,
        "sigma_theta_rad": SIGMA_THETA_RAD[energy],
        "virtual_ssd_mm": VIRTUAL_SSD_MM[energy],
        "calibration_cgy_per_mu": 1.0,
        "dose_rate_mu_per_min": 600.0,
        "applicator_factors": {"6x6": 0.97 - lo, "10x10": 1.0, "15x15": 0.99, "20x20": 0.98, "25x25": 0.96},
        "applicator_jaws_mm": (
            {a: _jaws(APPLICATORS[a], m) for a, m in HIGH_ENERGY_JAW_MARGIN_MM.items()} if energy >= 16 else {}
        ),
        "cutout_factors": [
            {"side_mm": 30.0, "factor": round(0.86 - 2 * lo, 3)},
            {"side_mm": 40.0, "factor": round(0.93 - lo, 3)},
            {"side_mm": 60.0, "factor": round(0.98 - lo / 2, 3)},
            {"side_mm": 80.0, "factor": 0.995},
            {"side_mm": 100.0, "factor": 1.0},
            {"side_mm": 250.0, "factor": 1.0},
        ],
        "pdd": {"depth_mm": depths, "dose_pct": pct},
    }


# The materials of the demo site (name, densities and stopping and scattering powers relative to water).
DEMO_MATERIALS: list[dict[str, Any]] = [
    {
        "name": "Water",
        "mass_density": 1.0,
        "rel_electron_density": 1.0,
        "rel_stopping_power": 1.0,
        "rel_scattering_power": 1.0,
    },
    {
        "name": "Superflab",
        "mass_density": 1.02,
        "rel_electron_density": 1.0,
        "rel_stopping_power": 1.0,
        "rel_scattering_power": 1.0,
    },
    {
        "name": "Wax",
        "mass_density": 0.93,
        "rel_electron_density": 0.96,
        "rel_stopping_power": 0.96,
        "rel_scattering_power": 0.9,
    },
    {
        "name": "CompactBone",
        "mass_density": 1.85,
        "rel_electron_density": 1.65,
        "rel_stopping_power": 1.65,
        "rel_scattering_power": 2.19,
    },
    {
        "name": "Lung",
        "mass_density": 0.26,
        "rel_electron_density": 0.26,
        "rel_stopping_power": 0.26,
        "rel_scattering_power": 0.26,
    },
    {
        "name": "Cerrobend",
        "mass_density": 9.38,
        "rel_electron_density": 7.6,
        "rel_stopping_power": 5.5,
        "rel_scattering_power": 40.0,
    },
]


def demo_site(export_folder: str = "dicom-export") -> dict[str, Any]:
    """The demo site configuration as TOML-ready data."""
    return {
        "uid_root": None,
        "manufacturer": "rtexport demo (NOT FOR CLINICAL USE)",
        "machines": [
            {
                "name": "DemoLinac",
                "source_axis_distance_mm": 1000.0,
                "source_to_jaws_mm": dict(SOURCE_TO_JAWS_MM),
                "applicators": [
                    {
                        "id": app_id,
                        "shape": "square",
                        "opening_mm": [side, side],
                        "source_to_applicator_mm": 950.0,
                        "source_to_cutout_tray_mm": 947.9,
                        "default_cutout_material": "Cerrobend",
                        "cutout_thickness_mm": 12.0,
                        "jaws_mm": _jaws(side, JAW_MARGIN_MM),
                    }
                    for app_id, side in APPLICATORS.items()
                ],
                "energies": [energy_data(e) for e in REFERENCE_TABLE],
            }
        ],
        "ct_curves": [
            {
                "name": "Default",
                "hu": [-1000.0, -800.0, -100.0, 0.0, 100.0, 1000.0, 3000.0],
                "rel_electron_density": [0.001, 0.2, 0.93, 1.0, 1.07, 1.55, 2.6],
                "mass_density": [0.0012, 0.2, 0.93, 1.0, 1.09, 1.62, 2.9],
            }
        ],
        "materials": [dict(m) for m in DEMO_MATERIALS],
        "dicom": {
            "export_folder": export_folder,
            "local_ae_title": "RTEXPORT",
            "servers": [],
            "export_roots": [export_folder],
        },
    }
