"""Loading a plan that is already the last revision, checked against the same site and course: nothing is set up
again (the answer is at once), nothing changes, and what the views read is what setting the beams up finds."""

from __future__ import annotations

from typing import Any

import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import PlanError
from rtexport.services.plans import load_plan
from rtexport.services.planview import _compute_setups, beam_setups
from rtexport.services.site import load_site
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, edit_site_toml

REFORMATTED = DEMO_PLAN.replace("fractions = 25", "fractions   =   25  # same")


def _no_setup(*args: object, **kwargs: object) -> None:
    raise AssertionError("the beams were set up again")


def test_an_unchanged_load_sets_nothing_up(course_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    monkeypatch.setattr("rtexport.geometry.setup.aim_plan", _no_setup)
    monkeypatch.setattr("rtexport.dose.output.cutout_problems", _no_setup)
    state, changed = load_plan(course_ws, REFORMATTED, "plan.toml", ACTOR)
    assert not changed and state.revision == first.revision
    assert [e["action"] for e in course_ws.audit_log.entries("CW-E1")].count("plan-load") == 1


def test_the_kept_setups_are_those_setting_the_beams_up_finds(course_ws: Workspace) -> None:
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    state, changed = load_plan(course_ws, REFORMATTED, "plan.toml", ACTOR)
    site, course = load_site(course_ws), course_ws.course(state.plan.course)
    setups, own = beam_setups(course_ws, site, state, course)
    fresh = _compute_setups(course_ws, site, state, course)
    assert not changed and own == fresh["own"] and own  # the demo's beams carry their own bolus
    assert {name: s.isocenter_mm for name, s in setups.items()} == {
        name: tuple(b["isocenter_mm"]) for name, b in fresh["beams"].items()
    }
    assert {name: [list(p) for p in s.aperture_mm] for name, s in setups.items()} == {
        name: b["aperture_mm"] for name, b in fresh["beams"].items()
    }
    assert {name: (s.ssd_mm, s.entry_mm, list(s.boli)) for name, s in setups.items()} == {
        name: (b["ssd_mm"], tuple(b["entry_mm"]), b["boli"]) for name, b in fresh["beams"].items()
    }


def _drop_16_mev(site: dict[str, Any]) -> None:
    machine = site["machines"][0]
    machine["energies"] = [e for e in machine["energies"] if e["energy_mev"] != 16]


def test_an_unchanged_plan_is_checked_again_when_the_site_changed(course_ws: Workspace) -> None:
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    edit_site_toml(course_ws.home, _drop_16_mev)
    with pytest.raises(PlanError, match="plan does not fit the site or course") as refused:
        load_plan(course_ws, REFORMATTED, "plan.toml", ACTOR)
    assert any("has no 16 MeV" in p for p in refused.value.problems)


def test_a_new_weight_reuses_the_cutout_check_a_new_cutout_does_not(
    course_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtexport.dose import output

    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    solved: list[str] = []
    real = output.cutout_output

    def counted(*args: Any, **kwargs: Any) -> output.CutoutOutput:
        solved.append(str(kwargs["what"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(output, "cutout_output", counted)
    state, changed = load_plan(course_ws, DEMO_PLAN.replace("fractions = 25", "fractions = 20"), "plan.toml", ACTOR)
    assert changed and state.revision.number == 2 and solved == []
    smaller = DEMO_PLAN.replace("[[-65, -50], [65, -50]", "[[-60, -50], [65, -50]")
    state, changed = load_plan(course_ws, smaller, "plan.toml", ACTOR)
    assert changed and state.revision.number == 3 and len(solved) == len(state.plan.beams)


def test_a_new_weight_reuses_the_setup_a_new_angle_does_not(
    course_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    monkeypatch.setattr("rtexport.geometry.setup.aim_plan", _no_setup)
    state, changed = load_plan(course_ws, DEMO_PLAN.replace("weight = 0.6", "weight = 0.65"), "plan.toml", ACTOR)
    assert changed and state.revision.number == 2 and state.plan.beams[0].weight == 0.65
    site, course = load_site(course_ws), course_ws.course(state.plan.course)
    monkeypatch.undo()
    setups, own = beam_setups(course_ws, site, state, course)
    fresh = _compute_setups(course_ws, site, state, course)
    assert own == fresh["own"]
    kept = {name: (s.isocenter_mm, s.ssd_mm, s.entry_mm, list(s.boli)) for name, s in setups.items()}
    assert kept == {
        name: (tuple(b["isocenter_mm"]), b["ssd_mm"], tuple(b["entry_mm"]), b["boli"])
        for name, b in fresh["beams"].items()
    }
    monkeypatch.setattr("rtexport.geometry.setup.aim_plan", _no_setup)
    with pytest.raises(AssertionError, match="set up again"):
        load_plan(course_ws, DEMO_PLAN.replace("gantry_deg = 20", "gantry_deg = 25"), "plan.toml", ACTOR)
