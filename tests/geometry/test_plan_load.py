"""Setup contradictions are refused when the plan is loaded, with the numbers, and nothing is stored."""

from __future__ import annotations

import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import PlanError
from rtexport.services.plans import load_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR

ANT_SETUP = 'target = "PTV"\nssd_mm = 1000\nweight = 0.6'


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        # an isocenter inside the phantom with SSD 100 cm: the old README example, which no geometry can have
        (
            "isocenter_mm = [0.0, -100.0, 0.0]\nssd_mm = 1000\nweight = 0.6",
            r"beam\[0\]\.ssd_mm: beam ANT: ssd_mm is 1000 but the isocenter \(0\.0, -100\.0, 0\.0\) mm puts the "
            r"surface 98\d\.\d mm from the source",
        ),
        (
            "aim_mm = [0.0, -130.0, 0.0]\nssd_mm = 1000\nweight = 0.6",
            r"beam\[0\]\.aim_mm: the aim point \(0\.0, -130\.0, 0\.0\) mm of beam ANT is outside the External "
            r"'OUTLINE2' \(in air\)",
        ),
        (
            "isocenter_mm = [0.0, -60.0, 0.0]\nweight = 0.6",  # 45 mm deep under 10 mm of bolus: SSD 945
            r"beam\[0\]\.isocenter_mm: beam ANT: the surface is 94\d\.\d mm from the source on the central axis, "
            r"nearer than the end of applicator 15x15 \(950 mm\)",
        ),
    ],
)
def test_contradictory_setups_are_refused_at_plan_load(course_ws: Workspace, setup: str, message: str) -> None:
    text = DEMO_PLAN.replace(ANT_SETUP, setup)
    assert text != DEMO_PLAN
    with pytest.raises(PlanError, match=message):
        load_plan(course_ws, text, "plan.toml", ACTOR)
    assert course_ws.plans.ids() == []


def test_the_demo_plan_loads(course_ws: Workspace) -> None:
    state, changed = load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    assert changed and [b.target for b in state.plan.beams] == ["PTV", "PTV"]
