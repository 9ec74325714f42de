"""The MU check of a plan: it agrees with the dose engine where a hand calculation is exact (a water box), and it
says so, with the numbers, where it does not or cannot."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.dose import CTVolume, compute_plan_dose
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from rtexport.mucheck import BeamCheck, check_beams

SITE = Site.model_validate(demo_site())
SURFACE_Y = -80.0  # the water box's anterior surface (HFS: anterior is -y)
SAD = 1000.0


def water_box() -> tuple[CTVolume, dict[str, list[Contour]]]:
    """Water |x|, |z| <= 80, -80 <= y <= 80 mm in a CT reaching 120 mm in front of the surface (air)."""
    xs = -120.0 + 2.0 * np.arange(121)
    ys = -200.0 + 2.0 * np.arange(161)
    zs = tuple(float(z) for z in -90.0 + 3.0 * np.arange(61))
    geom = CTGeometry("2.25.1", "2.25.2", (-120.0, -200.0, -90.0), (2.0, 2.0), 161, 121, zs)
    inside = (np.abs(ys)[:, None] <= 80.0) & (np.abs(xs)[None, :] <= 80.0)
    hu = np.where((np.abs(np.asarray(zs)) <= 80.0)[:, None, None] & inside[None], 0.0, -1000.0)
    square = [[-80.0, -80.0], [80.0, -80.0], [80.0, 80.0], [-80.0, 80.0]]
    body = [Contour(np.array([[x, y, z] for x, y in square])) for z in zs if abs(z) <= 80.0]
    return CTVolume(geom, hu.astype(np.float32)), {"BOX": body}


def one_beam_plan(**beam: Any) -> Plan:
    b: dict[str, Any] = {"name": "B1", "applicator": "10x10", "gantry_deg": 0.0}
    b.update(beam)
    return Plan.model_validate(
        {
            "format": 1, "id": "T", "label": "T", "course": "C", "machine": "DemoLinac", "ct_curve": "Default",
            "external": "BOX", "fractions": 1, "prescription_gy": 2.0, "dose_grid_mm": 2.0, "beam": [b],
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    ("energy", "ssd", "cutout"),
    [
        (9.0, 1000.0, None),  # reference conditions
        (12.0, 1100.0, None),  # 10 cm air gap
        (6.0, 1000.0, [[-20.0, -20.0], [20.0, -20.0], [20.0, 20.0], [-20.0, 20.0]]),  # 4×4 cutout
        (12.0, 1000.0, [[-15.0, -15.0], [15.0, -15.0], [15.0, 15.0], [-15.0, 15.0]]),  # the table's smallest
    ],
)
def test_agrees_with_the_engine_in_water(energy: float, ssd: float, cutout: list[list[float]] | None) -> None:
    row = checked(one_beam_plan(energy_mev=energy, ssd_mm=ssd, cutout_mm=cutout, isocenter_mm=iso(ssd)), ssd)
    assert row.not_checkable == ""
    assert row.difference_pct == pytest.approx(0.0, abs=1.0)


def iso(ssd: float) -> list[float]:
    """The isocenter SAD − SSD in front of the surface: the surface is at the SSD whichever way the engine aims."""
    return [0.0, SURFACE_Y - (ssd - SAD), 0.0]


def checked(plan: Plan, ssd: float) -> BeamCheck:
    volume, contours = water_box()
    beam = compute_plan_dose(plan, SITE, volume, contours).beams[0]
    depth = beam.normalization_point_mm[1] - SURFACE_Y
    record = dataclasses.replace(beam, ssd_mm=ssd, normalization_depth_mm=depth)
    return check_beams(plan, SITE, [record]).beams[0]


def test_a_factor_measured_for_the_cutout_is_the_checks_factor_too() -> None:
    """A 2 × 2 cm cutout, below the site's table, computed with the factor the plan gives: the hand calculation
    uses that same factor and agrees within the action level (instead of calling the beam not checkable); it
    reads the reference field's PDD at the small field's shallower dmax, a few per cent under its own 100 %."""
    cutout = [[-10.0, -10.0], [10.0, -10.0], [10.0, 10.0], [-10.0, 10.0]]
    measured = {"value": 0.8, "note": "Markus chamber at 12 mm, 2027-01-05"}
    plan = one_beam_plan(energy_mev=12.0, ssd_mm=SAD, cutout_mm=cutout, cutout_factor=measured, isocenter_mm=iso(SAD))
    row = checked(plan, SAD)
    assert row.calc is not None and row.calc.cutout_factor == 0.8 and row.calc.cutout_factor_measured
    assert row.difference_pct == pytest.approx(0.0, abs=3.0)


@dataclasses.dataclass(frozen=True)
class Record:
    """What a stored dose record says of one beam."""

    beam_name: str
    mu_per_fraction: float
    dose_per_fraction_gy: float
    ssd_mm: float | None = 1000.0
    normalization_depth_mm: float | None = 21.0  # 9 MeV's dmax


def test_beyond_the_action_level_is_flagged_with_both_numbers() -> None:
    plan = one_beam_plan(energy_mev=9.0, isocenter_mm=[0.0, 0.0, 0.0])
    ok = check_beams(plan, SITE, [Record("B1", 121.0, 1.2)])
    assert not ok.needs_acknowledgement and ok.findings() == []
    off = check_beams(plan, SITE, [Record("B1", 130.0, 1.2)])  # the hand calculation gives 120 MU for 120 cGy
    assert off.needs_acknowledgement
    assert off.findings() == [
        "beam B1: engine 130.0 MU, hand calculation 120.0 MU (+8.3 % beyond the action level of 5 %)"
    ]
    tighter = SITE.model_copy(update={"checks": SITE.checks.model_copy(update={"mu_check_action_level_pct": 0.5})})
    assert check_beams(plan, tighter, [Record("B1", 121.0, 1.2)]).needs_acknowledgement


def test_a_beam_without_setup_data_is_not_checkable_and_says_why() -> None:
    plan = one_beam_plan(energy_mev=9.0, isocenter_mm=[0.0, 0.0, 0.0])
    check = check_beams(plan, SITE, [Record("B1", 120.0, 1.2, None, None)])
    row = check.beams[0]
    assert row.check_mu is None and row.engine_mu == 120.0
    assert check.needs_acknowledgement
    assert check.findings() == [
        "beam B1: not checkable: the dose record does not give this beam's SSD and the depth of its normalization "
        "point (the dose engine did not report them); check this beam by hand"
    ]
