"""`dose` warns where a physicist expects it: a maximum well above the prescription, MU per fraction outside a
plausible range; the levels come from the site's [checks]."""

from __future__ import annotations

import tomllib

import numpy as np
import tomli_w

from rtexport.demo.plan import DEMO_PLAN
from rtexport.services.dose import compute_dose
from rtexport.services.plans import load_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE

PLAN = "CW-E1"
# The doses here come from the coarse engine: each warning is held to the dose it was given, and the demo's MU
# (about 122 and 80 per fraction) and maximum lie on the same sides of these levels at either resolution.


def set_checks(ws: Workspace, **checks: float) -> None:
    data = tomllib.loads(ws.site_path.read_text(encoding="utf-8"))
    data["checks"] = checks
    ws.site_path.write_text(tomli_w.dumps(data), encoding="utf-8")


def test_a_maximum_above_the_prescription_is_warned_with_its_value(course_ws: Workspace) -> None:
    set_checks(course_ws, max_dose_warning_pct=2.0)
    # each beam alone gives about the prescription at its maximum; together they overlap
    hot = DEMO_PLAN.replace("weight = 0.6", "mu = 200").replace("weight = 0.4", "mu = 200")
    load_plan(course_ws, hot, "plan.toml", ACTOR)
    result = compute_dose(course_ws, PLAN, ACTOR, engine=COARSE)
    assert result.state.dose is not None
    top = float(np.max(result.state.dose.plan.load().gy))
    over = 100 * (top / 50.0 - 1)
    assert over > 2.0
    warning = next(w for w in result.warnings if "maximum dose" in w)
    assert f"the maximum dose {top:.2f} Gy at (" in warning
    assert f"is {over:.0f} % above the prescription of 50 Gy (the site warns above 2 %)" in warning
    (entry,) = [e for e in course_ws.audit_log.entries(PLAN) if e["action"] == "dose"]
    assert entry["detail"]["warnings"] == list(result.warnings)


def test_no_warning_below_the_site_level(course_ws: Workspace) -> None:
    set_checks(course_ws, max_dose_warning_pct=500.0)
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    assert compute_dose(course_ws, PLAN, ACTOR, engine=COARSE).warnings == ()


def test_mu_per_fraction_outside_the_plausible_range_is_warned(course_ws: Workspace) -> None:
    set_checks(course_ws, max_dose_warning_pct=5000.0, mu_per_fraction_min=20.0, mu_per_fraction_max=100.0)
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    result = compute_dose(course_ws, PLAN, ACTOR, engine=COARSE)
    dose = result.state.dose
    assert dose is not None
    ant, obl = (dose.beam(n) for n in ("ANT", "ANT_OBL"))
    assert ant is not None and obl is not None and ant.mu_per_fraction > 100 > obl.mu_per_fraction
    assert result.warnings == (
        f"beam[0].mu: {ant.mu_per_fraction:.1f} MU per fraction (computed) is outside the site's usual 20-100 MU; "
        'if it is intended, acknowledge it on beam[0]: acknowledge = ["mu"]; the plan cannot be approved or '
        "exported until this is resolved",
    )
    acknowledged = DEMO_PLAN.replace('name = "ANT"\n', 'name = "ANT"\nacknowledge = ["mu"]\n')
    load_plan(course_ws, acknowledged, "plan.toml", ACTOR)
    assert compute_dose(course_ws, PLAN, ACTOR, engine=COARSE).warnings == ()
