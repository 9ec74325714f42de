"""The TG-71 hand calculation, factor by factor, against arithmetic done here from the site's own tables."""

from __future__ import annotations

import math

import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.model.site import Applicator, EnergyData, Site
from rtexport.mucheck import NotCheckable, equivalent_square_mm, hand_calc

SITE = Site.model_validate(demo_site())
MACHINE = SITE.machines[0]


def energy(mev: float) -> EnergyData:
    e = MACHINE.energy(mev)
    assert e is not None
    return e


def applicator(name: str) -> Applicator:
    a = MACHINE.applicator(name)
    assert a is not None
    return a


def dmax_mm(e: EnergyData) -> float:
    return e.pdd.depth_mm[e.pdd.dose_pct.index(max(e.pdd.dose_pct))]


def test_reference_conditions_give_dose_over_calibration() -> None:
    e = energy(9)
    calc = hand_calc(e, applicator("10x10"), None, e.reference_ssd_mm, dmax_mm(e), 120.0)
    assert calc.pdd_pct == pytest.approx(100.0)
    assert calc.inverse_square == pytest.approx(1.0)
    assert calc.mu == pytest.approx(120.0 / e.calibration_cgy_per_mu)


def test_deeper_point_needs_more_mu_by_the_pdd() -> None:
    e = energy(12)
    k = 30  # a tabulated depth beyond dmax
    depth, pct = e.pdd.depth_mm[k], e.pdd.dose_pct[k]
    calc = hand_calc(e, applicator("10x10"), None, e.reference_ssd_mm, depth, 200.0)
    assert calc.mu == pytest.approx(200.0 / (e.calibration_cgy_per_mu * pct / max(e.pdd.dose_pct)))


def test_applicator_and_cutout_factors_multiply() -> None:
    e = energy(6)
    cutout = [(-30.0, -30.0), (30.0, -30.0), (30.0, 30.0), (-30.0, 30.0)]  # 60 mm: a row of the table
    calc = hand_calc(e, applicator("15x15"), cutout, e.reference_ssd_mm, dmax_mm(e), 200.0)
    cut = next(p.factor for p in e.cutout_factors if p.side_mm == 60.0)
    assert calc.equivalent_square_mm == pytest.approx(60.0)
    assert calc.mu == pytest.approx(200.0 / (e.applicator_factors["15x15"] * cut))


def test_extended_ssd_follows_the_effective_ssd_inverse_square() -> None:
    e = energy(12)
    ref = hand_calc(e, applicator("10x10"), None, 1000.0, dmax_mm(e), 200.0)
    extended = hand_calc(e, applicator("10x10"), None, 1100.0, dmax_mm(e), 200.0)
    f, dm = e.virtual_ssd_mm, dmax_mm(e)
    assert extended.mu / ref.mu == pytest.approx(((f + 100.0 + dm) / (f + dm)) ** 2)


def test_equivalent_square_is_four_area_over_perimeter() -> None:
    assert equivalent_square_mm([(0, 0), (60, 0), (60, 100), (0, 100)]) == pytest.approx(4 * 6000 / 320)
    circle = [(20 * math.cos(math.radians(a)), 20 * math.sin(math.radians(a))) for a in range(0, 360, 2)]
    assert equivalent_square_mm(circle) == pytest.approx(40.0, rel=1e-3)


def test_tables_are_never_extrapolated() -> None:
    e = energy(9)
    with pytest.raises(NotCheckable, match=r"depth 80\.0 mm is outside the site's table \(0–69"):
        hand_calc(e, applicator("10x10"), None, 1000.0, 80.0, 100.0)
    tiny = [(-10.0, -10.0), (10.0, -10.0), (10.0, 10.0), (-10.0, 10.0)]  # 20 mm, the table starts at 30
    with pytest.raises(NotCheckable, match=r"cutout equivalent square 20\.0 mm is outside the site's table"):
        hand_calc(e, applicator("10x10"), tiny, 1000.0, 20.0, 100.0)


def test_a_measured_cutout_factor_replaces_the_table_even_outside_it() -> None:
    e = energy(12)
    tiny = [(-10.0, -10.0), (10.0, -10.0), (10.0, 10.0), (-10.0, 10.0)]  # 20 mm, the table starts at 30
    calc = hand_calc(e, applicator("10x10"), tiny, 1000.0, dmax_mm(e), 200.0, measured_cutout_factor=0.8)
    assert calc.cutout_factor == 0.8 and calc.cutout_factor_measured
    assert calc.mu == pytest.approx(200.0 / (e.calibration_cgy_per_mu * e.applicator_factors["10x10"] * 0.8))
