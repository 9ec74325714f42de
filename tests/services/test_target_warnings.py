"""A warning a physicist expects: a beam whose energy cannot reach its target (R90 of the site's beam data short of
the target's distal depth along the central axis) and a target the dose does not cover (D95 below the site's
threshold), in `dose`, the plan view (plan show, the page, the report), acknowledged at approval."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import PlanError
from rtexport.services.approval import approve
from rtexport.services.dose import compute_dose
from rtexport.services.plans import load_plan
from rtexport.services.planview import plan_view
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE, PHYS

SHALLOW = "CW-E12"


def test_the_demo_plan_reaches_and_covers_its_target(planned: Workspace) -> None:
    """No false warning on a good plan (on the session's coarse dose; the clinical engine's coverage of the demo,
    V90 >= 98 % and D95 >= 93 %, is held by tests/cli/test_demo.py)."""
    warnings = plan_view(planned, "CW-E1").warnings
    assert not [w for w in warnings if "cannot reach" in w or "D95" in w]


def test_12_mev_aimed_at_the_deep_ptv_is_warned_of_and_acknowledged_at_approval(planned: Workspace) -> None:
    text = DEMO_PLAN.replace('id = "CW-E1"', f'id = "{SHALLOW}"').replace("energy_mev = 16", "energy_mev = 12")
    load_plan(planned, text, "plan.toml", ACTOR)
    result = compute_dose(planned, SHALLOW, ACTOR, engine=COARSE)  # D95 far below 90 % either way
    reach = [w for w in result.warnings if "cannot reach" in w]
    # 1 cm of bolus over a PTV 9-37 mm deep (ANT_OBL's axis crosses ANT's bolus too); 12 MeV's R90 is 39 mm
    assert [w.split(" deep")[0] for w in reach] == [
        "beam ANT: 12 MeV cannot reach its target PTV: R90 is 39 mm in the site's beam data, the target's distal "
        "edge lies 46 mm",
        "beam ANT_OBL: 12 MeV cannot reach its target PTV: R90 is 39 mm in the site's beam data, the target's "
        "distal edge lies 49 mm",
    ]
    (coverage,) = [w for w in result.warnings if "D95" in w]
    assert coverage.startswith("target PTV: D95 is ") and "(the site warns below 90 %)" in coverage
    view = plan_view(planned, SHALLOW)
    assert set(reach) | {coverage} <= set(view.warnings)
    with pytest.raises(PlanError, match="approval needs you to acknowledge the plan's warnings") as refused:
        approve(planned, SHALLOW, PHYS, ACTOR, acknowledge_mu_check=True)
    assert refused.value.problems == [*reach, coverage]
    entry = planned.audit_log.entries()[-1]
    assert (entry["outcome"], entry["detail"]["reason"]) == ("refused", "warnings not acknowledged")
    signed = approve(planned, SHALLOW, PHYS, ACTOR, acknowledge_mu_check=True, acknowledge_warnings=True)
    assert signed.state.approved
    (entry,) = [e for e in planned.audit_log.entries(SHALLOW) if e["action"] == "approve" and e["outcome"] == "ok"]
    assert entry["detail"]["warnings_acknowledged"] == [*reach, coverage]


def test_a_warning_emptied_from_the_setup_cache_is_still_acknowledged_at_approval(planned: Workspace) -> None:
    """The plan view keeps its warnings in a cache; approval, a decision, computes them again: a cache row emptied
    behind rtexport's back cannot let a beam that cannot reach its target be approved unacknowledged."""
    text = DEMO_PLAN.replace('id = "CW-E1"', f'id = "{SHALLOW}"').replace("energy_mev = 16", "energy_mev = 12")
    load_plan(planned, text, "plan.toml", ACTOR)
    warned = [w for w in compute_dose(planned, SHALLOW, ACTOR, engine=COARSE).warnings if "cannot reach" in w]
    assert len(warned) == 2
    with closing(sqlite3.connect(planned.home / "rtexport.db")) as db, db:
        emptied = db.execute("UPDATE setups SET data = '{\"warnings\": []}' WHERE data LIKE '{\"warnings\"%'")
        assert emptied.rowcount >= 1
    assert not [w for w in plan_view(planned, SHALLOW).warnings if "cannot reach" in w]  # the view reads the cache
    with pytest.raises(PlanError, match="approval needs you to acknowledge the plan's warnings") as refused:
        approve(planned, SHALLOW, PHYS, ACTOR, acknowledge_mu_check=True)
    assert [w for w in refused.value.problems if "cannot reach" in w] == warned
