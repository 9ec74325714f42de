"""The built-in demo is a plan a physicist would sign: its target covered by the 90 % isodose, no hot spot."""

from __future__ import annotations

from pathlib import Path

from rtexport.demo.plan import DEMO_PLAN_ID
from rtexport.model.people import Actor
from rtexport.services.demo import build_demo_workspace
from rtexport.services.dose import compute_dose
from rtexport.services.views import course_volume, plan_dvh


def test_the_demo_plan_covers_its_target_as_a_clinic_would_accept(tmp_path: Path) -> None:
    ws = build_demo_workspace(tmp_path / "demo")  # the phantom and plan 'rtexport demo' makes
    state = compute_dose(ws, DEMO_PLAN_ID, Actor("pat", "pat-os", "test")).state
    assert state.dose is not None
    course = ws.course(state.plan.course)
    curves = {c.name: c for c in plan_dvh(course_volume(ws, course), state.dose.plan.load(), course, state.plan)}
    ptv, rx = curves["PTV"], state.plan.prescription_gy
    assert ptv.volume_at_least(0.90 * rx) >= 98.0  # the 90 % isodose covers the PTV
    assert ptv.d95_gy >= 0.93 * rx
    assert ptv.max_gy <= 1.07 * rx and max(c.max_gy for c in curves.values()) <= 1.07 * rx  # no hot spot
    ws.close()
