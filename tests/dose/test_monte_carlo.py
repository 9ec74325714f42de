"""The pencil beam against Monte Carlo, from the committed cache (benchmarks/mc-cache): the pencil beam is
recomputed on every run, so a change that makes it depart from Monte Carlo fails here.

The machine is commissioned from Monte Carlo water data as a clinic would from measurements (reference PDD, square
cutout factors at their own dmax, the depth doses of 2, 3 and 6 cm squares); every other field is a prediction.
Tolerances are MPPG 5.b's (3 %/2 mm for homogeneous fields and cutouts, 5 % oblique and irregular surfaces, 7 %
heterogeneities) and gamma 3 %/2 mm over dose > 10 % of the maximum, on the central plane (averaged over the band
of y where neither phantom nor field changes, ``y_band``, so the Monte Carlo's noise does not decide); where a
case still misses, the test holds it to the number docs/dose.md gives, so it cannot get worse unnoticed.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from rtexport.dose import PencilBeamEngine
from rtexport.mucheck import hand_calc

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _bench() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("bench_dose_accuracy")


@cache
def _cases() -> dict[str, Any]:
    return {c.name: c for c in _bench().cases()}


def _monte_carlo(case: Any) -> Any:
    """The case's cached Monte Carlo; never computed here."""
    mc = importlib.import_module("mc.montecarlo")
    path = mc.CACHE / f"{mc.cache_key(case)}.npz"
    assert path.exists(), f"Monte Carlo of {case.name!r} is not in {mc.CACHE}: run benchmarks/bench_dose_accuracy.py"
    return mc.monte_carlo(case)


@cache
def _commissioning(energy: float) -> Any:
    """The beam model of one energy, commissioned from Monte Carlo as the benchmark does."""
    cases = _cases().values()
    ref = next(c for c in cases if c.reference and c.energy_mev == energy)
    squares = [(c, _monte_carlo(c)) for c in cases if c.square and c.energy_mev == energy]
    return _bench().commission((ref, _monte_carlo(ref)), squares)


# case: (gamma 3%/2mm at least, %; largest |local difference| at the reference points, %; MPPG 5.b met)
EXPECTED = {
    "reference 10x10": (95.0, 3.0, True),
    "cutout 4x4": (95.0, 3.0, True),
    "cutout 3x3": (95.0, 3.0, True),
    "cutout 2x2": (95.0, 3.0, True),
    "cutout 2x8": (95.0, 3.0, True),
    "cutout 3x6": (95.0, 3.0, True),
    "cutout 4x10": (95.0, 3.0, True),
    "extended SSD 110": (95.0, 3.0, True),
    "bolus 1 cm": (95.0, 3.0, True),
    "step 40 mm": (91.5, 5.0, True),  # gamma 3%/2mm 91.7 %
    "oblique 30": (95.5, 5.0, True),
    "oblique 45": (95.5, 5.0, True),
    "oblique 60": (96.5, 5.0, True),
    "lung slab 2 cm": (95.0, 7.0, True),
    "bone slab 1 cm": (93.5, 3.0, True),  # gamma 3%/2mm 93.7 %
    "air cavity 1 cm": (95.0, 7.0, True),  # 6.6-6.8 % too little dose behind the cavity (MPPG 5.b: 7 %)
    "bone insert 1 cm": (95.0, 5.0, True),
    "air cavity 1 cm at 3 cm": (95.0, 2.0, True),  # gamma 3%/2mm 95.5 %
    "bone insert 1 cm at 3 cm": (94.5, 10.0, False),  # +9.3 % 15 mm behind it, in the fall-off; gamma 94.8 %
    "20 MeV ref 10x10": (95.0, 3.0, True),
    "20 MeV cutout 4x4": (95.0, 3.0, True),
    "20 MeV circle 3 cm": (95.0, 3.0, True),
    "20 MeV cutout 2x8": (95.0, 3.0, True),
    "6 MeV cutout 2x6": (95.0, 3.0, True),
    "9 MeV cutout 3x8": (95.0, 3.0, True),
    "9 MeV irregular 4x5": (95.0, 3.0, True),
    "6 MeV irregular 4x5": (95.0, 3.0, True),
    "6 MeV cylinder r 8 cm": (95.0, 5.0, True),
    "20 MeV cylinder r 8 cm": (95.0, 5.0, True),
    "6 MeV ref 10x10": (95.0, 3.0, True),
    "6 MeV cutout 4x4": (95.0, 3.0, True),
    "6 MeV circle 3 cm": (95.0, 3.0, True),
    "9 MeV ref 10x10": (95.0, 3.0, True),
    "9 MeV cutout 4x4": (95.0, 3.0, True),
    "9 MeV circle 3 cm": (95.0, 3.0, True),
    "circle 3 cm": (95.0, 3.0, True),
    "circle 5 cm": (95.0, 3.0, True),
    "irregular 4x5": (95.0, 3.0, True),
    "cutout 2x6": (95.0, 3.0, True),
    "cutout 3x10": (95.0, 3.0, True),
    "cutout 4x8": (95.0, 3.0, True),
    "cylinder r 8 cm": (95.0, 5.0, True),
    "6 MeV oblique 30": (96.5, 5.0, True),
    "6 MeV oblique 45": (92.0, 5.0, True),  # 0-4 mm +3.5 %, dmax -3.6 %, gamma 3%/2mm 92.4 %: gamma still short
    "20 MeV oblique 30": (99.0, 5.0, True),
    "20 MeV oblique 45": (98.5, 5.0, True),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_pencil_beam_meets_monte_carlo(name: str) -> None:
    case = _cases()[name]
    row = _bench().compare(case, _monte_carlo(case), _commissioning(case.energy_mev))
    gamma_floor, local_limit, met = EXPECTED[name]
    worst = max(abs(d) for _, d, _ in row.points)
    assert row.gamma32 >= gamma_floor, f"{name}: gamma 3%/2mm {row.gamma32:.1f} % (at least {gamma_floor:g} %)"
    assert worst <= local_limit, f"{name}: {worst:.1f} % off Monte Carlo at a reference point ({local_limit:g} %)"
    if met:
        assert row.met, f"{name}: misses MPPG 5.b: points {row.points}, R90/R50 shifts {row.shifts_mm} mm"


# case: the engine's cutout factor within this fraction of Monte Carlo's (2 %, or the number docs/dose.md gives)
OUTPUT_TOLERANCE = {
    "cutout 2x2": 0.02,
    "cutout 3x3": 0.02,
    "cutout 4x4": 0.02,
    "cutout 2x8": 0.02,
    "cutout 3x6": 0.02,
    "cutout 4x10": 0.02,
    "circle 3 cm": 0.02,
    "circle 5 cm": 0.02,
    "irregular 4x5": 0.02,
    "cutout 2x6": 0.02,
    "cutout 3x10": 0.02,
    "cutout 4x8": 0.02,
    "20 MeV cutout 4x4": 0.02,
    "20 MeV circle 3 cm": 0.02,
    "20 MeV cutout 2x8": 0.02,
    "6 MeV cutout 2x6": 0.02,
    "9 MeV cutout 3x8": 0.02,
    "9 MeV irregular 4x5": 0.02,
    "6 MeV irregular 4x5": 0.02,
    "6 MeV cutout 4x4": 0.02,
    "6 MeV circle 3 cm": 0.02,
    "9 MeV cutout 4x4": 0.02,
    "9 MeV circle 3 cm": 0.02,
}


@pytest.mark.parametrize("name", list(OUTPUT_TOLERANCE))
def test_cutout_output_is_within_2pct_of_monte_carlo(name: str) -> None:
    """The factor the engine gives a cutout (read from the table at its equivalent square) against Monte Carlo's
    dose at the field's own dmax relative to the reference field's."""
    bench = _bench()
    case = _cases()[name]
    comm = _commissioning(case.energy_mev)
    commission = importlib.import_module("mc.commission")
    vox = bench.voxels(case)
    z = bench.Voxels.centres(vox.z) * 10.0
    axis = commission.axis_depth_dose(
        case, commission.per_emission(case, _monte_carlo(case)), half_cm=commission.DETECTOR_HALF_CM
    )
    truth = commission.peak(z, axis)[1] * comm.gy_per_mu_per_emission * 100.0 / comm.energy.calibration_cgy_per_mu
    beam = bench.BeamSetup(
        name,
        bench.frame_toward((0.0, 0.0, 0.0), 0.0, 0.0, 0.0, bench.PatientPosition.HFS, 1000.0, 1000.0),
        bench.outline(case) * 10.0,
        True,
        comm.applicator.source_to_cutout_tray_mm,
        1000.0,
        comm.applicator,
        comm.applicator,
    )
    factor = PencilBeamEngine(lateral_mm=2.5).output(beam, comm.energy).factor
    tolerance = OUTPUT_TOLERANCE[name]
    assert factor == pytest.approx(truth, rel=tolerance), f"{name}: factor {factor:.3f}, Monte Carlo {truth:.3f}"


@pytest.mark.parametrize(
    "name",
    ["cutout 2x2", "cutout 3x3", "cutout 2x8", "cutout 3x6", "circle 3 cm", "6 MeV circle 3 cm", "9 MeV cutout 4x4"],
)
def test_mu_check_meets_the_engine_at_a_small_fields_shallow_dmax(name: str) -> None:
    """The independent check reads the same site data (field_pdds) at the engine's normalization point: one MU's
    dose there gives one MU back, within 3 % (0.99-1.00; the reference PDD alone gives 1.07 for the 2 x 2 cm
    field, read at its 17 mm dmax)."""
    bench = _bench()
    case = _cases()[name]
    comm = _commissioning(case.energy_mev)
    vox = bench.voxels(case)
    xs = bench.Voxels.centres(vox.x)[vox.fine]
    z_mm = bench.Voxels.centres(vox.z) * 10.0
    dose, _ = bench.pencil_beam(case, comm)  # Gy/MU [x, z]
    axis = dose[np.abs(xs) < 0.25].mean(axis=0)
    k = int(np.argmax(axis))
    cutout = [(float(u), float(v)) for u, v in bench.outline(case) * 10.0]
    calc = hand_calc(comm.energy, comm.applicator, cutout, 1000.0, float(z_mm[k]), 100.0 * float(axis[k]))
    assert calc.small_field_pdd
    assert calc.mu == pytest.approx(1.0, rel=0.03), f"{name}: the check gives {calc.mu:.3f} MU for 1 MU"
