"""The beams' setup kept when a plan is loaded is the one the dose uses: read back exactly, and never another
plan's, course's or site's."""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pytest
import tomli_w

import rtexport.services.aiming as aiming
from rtexport.demo.plan import DEMO_PLAN
from rtexport.geometry.setup import AimedPlan, aim_plan
from rtexport.services.aiming import kept_setup, plan_setup
from rtexport.services.dose import compute_dose
from rtexport.services.plans import load_plan
from rtexport.services.site import site_status
from rtexport.workspace import Workspace
from rtexport.workspace.dicomio import course_contours
from tests.conftest import ACTOR

COARSE_MM = 5.0


def _same(a: AimedPlan, b: AimedPlan) -> None:
    assert [x.name for x in a.beams] == [x.name for x in b.beams]
    for x, y in zip(a.beams, b.beams, strict=True):
        assert x.frame.source_mm == y.frame.source_mm and x.frame.sad_mm == y.frame.sad_mm
        assert np.array_equal(x.frame.axes, y.frame.axes) and np.array_equal(x.cutout_mm, y.cutout_mm)
        assert (x.ssd_mm, x.entry_mm, x.fixed_ssd, x.boli) == (y.ssd_mm, y.entry_mm, y.fixed_ssd, y.boli)
    assert list(a.bolus) == list(b.bolus)
    for name, contours in a.bolus.items():
        assert len(contours) == len(b.bolus[name])
        for c, d in zip(contours, b.bolus[name], strict=True):
            assert np.array_equal(c.points_mm, d.points_mm) and c.geometric_type == d.geometric_type


def test_the_setup_kept_at_load_is_the_setup_computed_bit_for_bit(planned: Workspace) -> None:
    state = planned.plan_state("CW-E1")
    site = site_status(planned).require()
    course = planned.course(state.plan.course)
    kept = kept_setup(planned, site, state.plan, course)
    assert kept is not None  # loading the plan kept it
    _same(kept, aim_plan(state.plan, site, course.ct, course_contours(planned, course)))


def test_the_dose_uses_the_kept_setup_instead_of_setting_the_beams_up_again(
    planned: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> AimedPlan:
        raise AssertionError("the beams were set up again")

    monkeypatch.setattr(aiming, "aim_plan", refuse)
    result = compute_dose(planned, "CW-E1", ACTOR, grid_mm=COARSE_MM)
    assert [b.beam_name for b in result.dose.beams] == ["ANT", "ANT_OBL"]


def test_a_changed_beam_is_set_up_again_and_kept_for_its_revision(planned: Workspace) -> None:
    site = site_status(planned).require()
    data = tomllib.loads(DEMO_PLAN)
    data["beam"][1]["gantry_deg"] = 25
    old = planned.plan_state("CW-E1")
    course = planned.course(old.plan.course)
    state, changed = load_plan(planned, tomli_w.dumps(data), "moved.toml", ACTOR)
    assert changed
    kept = kept_setup(planned, site, state.plan, course)
    assert kept is not None
    fresh = aim_plan(state.plan, site, course.ct, course_contours(planned, course))
    _same(kept, fresh)
    earlier = kept_setup(planned, site, old.plan, course)
    assert earlier is not None
    assert earlier.beam("ANT_OBL").frame.source_mm != fresh.beam("ANT_OBL").frame.source_mm


def test_an_unreadable_or_foreign_entry_is_set_up_again(planned: Workspace) -> None:
    state = planned.plan_state("CW-E1")
    site = site_status(planned).require()
    course = planned.course(state.plan.course)
    key = aiming.aimed_key(site, state.plan, course)
    found = planned.setups.get(key)
    assert found is not None
    found["beams"] = found["beams"][:1]  # another plan's beams under this key
    with planned.transaction():
        planned.setups.put(key, found)
    assert kept_setup(planned, site, state.plan, course) is None
    with planned.transaction():
        planned.setups.put(key, {"beams": "garbled"})
    assert kept_setup(planned, site, state.plan, course) is None
    again = plan_setup(planned, site, state.plan, course, course_contours(planned, course))
    _same(again, aim_plan(state.plan, site, course.ct, course_contours(planned, course)))
    kept = kept_setup(planned, site, state.plan, course)
    assert kept is not None  # and kept again
    _same(kept, again)


def test_the_key_names_the_site_the_course_and_the_code(planned: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    state = planned.plan_state("CW-E1")
    site = site_status(planned).require()
    course = planned.course(state.plan.course)
    key = aiming.aimed_key(site, state.plan, course)
    machine = site.machines[0]
    moved = site.model_copy(
        update={"machines": [machine.model_copy(update={"source_axis_distance_mm": 1010.0}), *site.machines[1:]]}
    )
    assert aiming.aimed_key(moved, state.plan, course) != key
    assert aiming.aimed_key(site, state.plan, dataclasses.replace(course, id="C2")) != key
    more_mu = state.plan.model_copy(update={"beams": [b.model_copy(update={"mu": 99.0}) for b in state.plan.beams]})
    assert aiming.aimed_key(site, more_mu, course) == key  # MU move no beam
    monkeypatch.setattr(aiming, "_code_digest", lambda: "other code")
    assert aiming.aimed_key(site, state.plan, course) != key
