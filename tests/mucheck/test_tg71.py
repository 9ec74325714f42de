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


def _square(side: float) -> list[tuple[float, float]]:
    a = side / 2.0
    return [(-a, -a), (a, -a), (a, a), (-a, a)]


def _with_field_pdd(e: EnergyData, side: float, dmax: float) -> EnergyData:
    """The energy with one small square's depth dose: the reference PDD moved shallower by (reference dmax − dmax)."""
    shift = dmax_mm(e) - dmax
    depths = [float(d) for d in e.pdd.depth_mm]
    pct = [float(v) for v in e.pdd.dose_pct]
    shifted = [pct[0]] + [_interp(d + shift, depths, pct) for d in depths[1:]]
    field = {"side_mm": side, "depth_mm": depths, "dose_pct": shifted}
    return EnergyData.model_validate({**e.model_dump(), "field_pdds": [field]})


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    if x >= xs[-1]:
        return ys[-1]
    k = max(i for i, v in enumerate(xs) if v <= x)
    return ys[k] + (ys[k + 1] - ys[k]) * (x - xs[k]) / (xs[k + 1] - xs[k])


def test_every_calculation_says_which_corrections_it_does_not_make() -> None:
    e = energy(12)
    open_field = hand_calc(e, applicator("10x10"), None, 1000.0, dmax_mm(e), 200.0)
    cutout = hand_calc(e, applicator("10x10"), _square(40.0), 1000.0, dmax_mm(e), 200.0)
    for calc in (open_field, cutout):
        assert [n.split(":")[0] for n in calc.not_made[:3]] == ["obliquity", "heterogeneity", "surface irregularity"]
    assert not any(n.startswith("small-field") for n in open_field.not_made)
    assert cutout.not_made[-1].startswith("small-field depth dose") and not cutout.small_field_pdd


def test_a_small_field_is_read_from_its_own_depth_dose_at_its_shallow_dmax() -> None:
    """With the site's field_pdds, a 30 mm cutout normalized at its own (shallower) dmax gets PDD 100 % and that
    d_m; the reference PDD there would give fewer percent and so more MU."""
    base = energy(12)
    e = _with_field_pdd(base, 30.0, dmax_mm(base) - 12.0)
    own_dmax = dmax_mm(base) - 12.0
    calc = hand_calc(e, applicator("10x10"), _square(30.0), 1000.0, own_dmax, 200.0)
    without = hand_calc(base, applicator("10x10"), _square(30.0), 1000.0, own_dmax, 200.0)
    assert calc.small_field_pdd and not any(n.startswith("small-field") for n in calc.not_made)
    assert calc.pdd_pct == pytest.approx(100.0, abs=0.5)
    assert calc.dmax_mm == pytest.approx(own_dmax, abs=1.0)
    assert calc.mu == pytest.approx(200.0 / (0.814 * e.calibration_cgy_per_mu), rel=0.005)
    assert without.pdd_pct < 98.0 and without.mu > 1.02 * calc.mu


def test_between_field_pdds_the_depth_dose_is_interpolated_in_the_side() -> None:
    base = energy(12)
    e = _with_field_pdd(base, 30.0, dmax_mm(base) - 12.0)
    depth = dmax_mm(base) - 12.0
    small = hand_calc(e, applicator("10x10"), _square(30.0), 1000.0, depth, 200.0).pdd_pct
    # the reference applicator (10 × 10 cm) stands for the reference field; 65 mm lies halfway
    ref = hand_calc(base, applicator("10x10"), None, 1000.0, depth, 200.0).pdd_pct
    mid = hand_calc(e, applicator("10x10"), _square(65.0), 1000.0, depth, 200.0, reference_side_mm=100.0).pdd_pct
    assert mid == pytest.approx(0.5 * small + 0.5 * ref, rel=1e-6)
