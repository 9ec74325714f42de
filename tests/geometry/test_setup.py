"""One setup model for isocenter and SSD, stated as a physicist checks it on a water box (|x|,|y|,|z| <= 80)."""

from __future__ import annotations

import pytest

from rtexport.errors import PlanError
from rtexport.geometry.setup import aim_plan, plan_structures
from rtexport.model.course import PatientPosition
from rtexport.model.site import Site

from .conftest import box, box_ct, make_plan, outline

CT = box_ct()
BODY = {"BODY": box(80.0, CT.slice_z_mm), "PTV": box(10.0, CT.slice_z_mm)}


def test_ssd_setup_aimed_at_a_target_puts_the_source_ssd_before_the_skin(site: Site) -> None:
    g = aim_plan(make_plan([{"target": "PTV", "ssd_mm": 1000.0}]), site, CT, BODY).beam("B0")
    assert g.fixed_ssd
    assert g.entry_mm == pytest.approx((0.0, -80.0, 0.0), abs=1e-5)  # the anterior skin, exactly
    assert g.source_mm == pytest.approx((0.0, -1080.0, 0.0), abs=1e-5)
    assert g.ssd_mm == 1000.0
    assert g.isocenter_mm == pytest.approx((0.0, -80.0, 0.0), abs=1e-5)  # SSD = SAD: the isocenter on the skin


def test_extended_ssd_puts_the_isocenter_in_air(site: Site) -> None:
    plan = make_plan([{"aim_mm": [10.0, 0.0, 0.0], "ssd_mm": 1100.0, "gantry_deg": 90.0}])
    g = aim_plan(plan, site, CT, BODY).beam("B0")
    # gantry 90 on a head-first-supine patient comes from the left (+x)
    assert g.entry_mm == pytest.approx((80.0, 0.0, 0.0), abs=1e-5)
    assert g.source_mm == pytest.approx((1180.0, 0.0, 0.0), abs=1e-5)
    assert g.isocenter_mm == pytest.approx((180.0, 0.0, 0.0), abs=1e-5)


def test_ssd_defaults_to_the_source_axis_distance(site: Site) -> None:
    g = aim_plan(make_plan([{"target": "PTV"}]), site, CT, BODY).beam("B0")
    assert g.ssd_mm == site.machines[0].source_axis_distance_mm


def test_given_isocenter_gives_the_ssd_by_tracing_the_central_axis(site: Site) -> None:
    g = aim_plan(make_plan([{"isocenter_mm": [0.0, -30.0, 0.0]}]), site, CT, BODY).beam("B0")
    assert not g.fixed_ssd
    assert g.source_mm == pytest.approx((0.0, -1030.0, 0.0), abs=1e-5)
    assert g.ssd_mm == pytest.approx(950.0, abs=1e-5)
    assert g.entry_mm == pytest.approx((0.0, -80.0, 0.0), abs=1e-5)
    agreeing = aim_plan(make_plan([{"isocenter_mm": [0.0, -30.0, 0.0], "ssd_mm": 950.4}]), site, CT, BODY)
    assert agreeing.beam("B0").ssd_mm == pytest.approx(950.0, abs=1e-5)


def test_isocenter_and_ssd_that_disagree_are_refused_with_both_numbers(site: Site) -> None:
    with pytest.raises(PlanError, match=r"beam\[0\]\.ssd_mm: beam B0: ssd_mm is 1000 but .* 950\.0 mm from the source"):
        aim_plan(make_plan([{"isocenter_mm": [0.0, -30.0, 0.0], "ssd_mm": 1000.0}]), site, CT, BODY)


def test_an_aim_point_in_air_is_refused(site: Site) -> None:
    in_air = r"beam\[0\]\.aim_mm: the aim point \(0\.0, -95\.0, 0\.0\) mm of beam B0 is outside .*'BODY' \(in air\)"
    with pytest.raises(PlanError, match=in_air):
        aim_plan(make_plan([{"aim_mm": [0.0, -95.0, 0.0]}]), site, CT, BODY)


def test_a_surface_nearer_than_the_applicator_end_is_refused(site: Site) -> None:
    # demo applicators end 950 mm from the source
    with pytest.raises(PlanError, match=r"beam\[0\]\.ssd_mm: .* 940\.0 mm from the source .* applicator 10x10 \(950"):
        aim_plan(make_plan([{"target": "PTV", "ssd_mm": 940.0}]), site, CT, BODY)
    with pytest.raises(PlanError, match=r"beam\[0\]\.isocenter_mm: .* 920\.0 mm from the source"):
        aim_plan(make_plan([{"isocenter_mm": [0.0, 0.0, 0.0]}]), site, CT, BODY)


def test_the_whole_field_is_checked_against_the_applicator(site: Site) -> None:
    """A step 20 mm proud of the skin beyond x = 30: the central axis clears the applicator, the field does not."""
    step = outline([(-80, -80), (30, -80), (30, -100), (80, -100), (80, 80), (-80, 80)], CT.slice_z_mm)
    contours = {"BODY": step, "PTV": BODY["PTV"]}
    aim_plan(make_plan([{"target": "PTV", "ssd_mm": 975.0, "applicator": "6x6"}]), site, CT, contours)
    with pytest.raises(
        PlanError, match=r"inside the field the surface comes to 9[45]\d\.\d mm .* \(at beam's-eye view \(3\d"
    ):
        aim_plan(make_plan([{"target": "PTV", "ssd_mm": 965.0}]), site, CT, contours)


def test_gantry_0_on_a_prone_patient_enters_the_back(site: Site) -> None:
    g = aim_plan(make_plan([{"target": "PTV"}]), site, box_ct(PatientPosition.HFP), BODY).beam("B0")
    assert g.entry_mm == pytest.approx((0.0, 80.0, 0.0), abs=1e-5)
    assert g.source_mm == pytest.approx((0.0, 1080.0, 0.0), abs=1e-5)


def test_own_bolus_is_the_first_surface_and_every_crossing_beam_references_it(site: Site) -> None:
    bolus = {"thickness_mm": 10.0, "margin_mm": 10.0, "material": "Superflab"}
    plan = make_plan(
        [
            {"target": "PTV", "ssd_mm": 1000.0, "bolus": bolus},
            {"target": "PTV", "ssd_mm": 1000.0, "gantry_deg": 15.0},  # crosses B0's bolus on the anterior skin
            {"target": "PTV", "ssd_mm": 1000.0, "gantry_deg": 90.0},  # from the left: misses it
        ]
    )
    geometry = aim_plan(plan, site, CT, BODY)
    ant, oblique, lateral = (geometry.beam(f"B{i}") for i in range(3))
    assert ant.entry_mm == pytest.approx((0.0, -90.0, 0.0), abs=0.5)  # on the bolus, 10 mm before the skin
    assert ant.source_mm[1] == pytest.approx(ant.entry_mm[1] - 1000.0, abs=1e-6)
    assert (ant.boli, oblique.boli, lateral.boli) == (("B0",), ("B0",), ())
    # the oblique beam's central axis meets the bolus first, so its SSD is measured to the bolus
    assert oblique.entry_mm[1] < -85.0
    zs = {float(c.points_mm[0, 2]) for c in geometry.bolus["B0"]}
    assert zs <= set(CT.slice_z_mm) and max(zs) < 80.0


def test_a_bolus_the_field_never_meets_is_refused(site: Site) -> None:
    """An off-axis cutout whose field passes beside the body: there is no skin to put the bolus on."""
    bolus = {"thickness_mm": 10.0, "margin_mm": 0.0, "material": "Superflab"}
    cutout = [[60.0, -20.0], [95.0, -20.0], [95.0, 20.0], [60.0, 20.0]]
    plan = make_plan([{"aim_mm": [70.0, 0.0, 0.0], "bolus": bolus, "applicator": "20x20", "cutout_mm": cutout}])
    with pytest.raises(PlanError, match=r"beam\[0\]\.bolus: the bolus of beam B0 covers nothing"):
        aim_plan(plan, site, CT, BODY)


def test_plan_structures_are_the_external_and_the_targets() -> None:
    plan = make_plan([{"target": "PTV"}, {"aim_mm": [0.0, 0.0, 0.0]}])
    assert plan_structures(plan) == {"BODY", "PTV"}
