"""Approval and the MU check: within the action level a physicist approves as before; beyond it, or when a beam
cannot be checked, approval is refused with the numbers until the physicist acknowledges them, and the audit log
keeps the check and the acknowledgement."""

from __future__ import annotations

import json

import pytest

from rtexport.errors import PlanError
from rtexport.mucheck import check_beams
from rtexport.services.approval import approve
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, PHYS, forget_beam_setups

PLAN = "CW-E1"


def engine_reports_setup(ws: Workspace, mu_over_check: float) -> None:
    """Rewrite the revision's dose record as an engine that reports each beam's SSD and normalization depth would,
    with each beam's MU ``mu_over_check`` times the hand calculation's."""
    state = ws.plan_state(PLAN)
    rev = state.revision.number
    row = ws.db.one("SELECT data, computed_at FROM doses WHERE plan_id = ? AND revision = ?", (PLAN, rev))
    assert row is not None
    data = json.loads(row["data"])
    for b in data["beams"]:
        b["ssd_mm"], b["normalization_depth_mm"] = 1000.0, 20.0
    with ws.transaction():
        ws.doses.save(PLAN, rev, data, row["computed_at"])
        ws.audit(ACTOR, "dose", "ok", PLAN, rev, engine="a test engine")
    stored = ws.plan_state(PLAN).dose
    assert stored is not None
    check = {b.beam: b.check_mu for b in check_beams(state.plan, ws.site(), stored.beams).beams}
    for b in data["beams"]:
        mu = check[b["name"]]
        assert mu is not None
        b["mu_per_fraction"] = mu * mu_over_check
    with ws.transaction():
        ws.doses.save(PLAN, rev, data, row["computed_at"])
        ws.audit(ACTOR, "dose", "ok", PLAN, rev, engine="a test engine")


def audit_of(ws: Workspace, action: str) -> list[dict[str, object]]:
    return [e for e in ws.audit_log.entries(PLAN) if e["action"] == action]


def test_within_the_action_level_approval_needs_no_acknowledgement(planned: Workspace) -> None:
    engine_reports_setup(planned, 1.03)
    state = approve(planned, PLAN, PHYS, ACTOR).state
    assert state.approved
    (entry,) = audit_of(planned, "approve")
    detail = entry["detail"]
    assert isinstance(detail, dict) and detail["mu_check_acknowledged"] is False
    assert {b["beam"]: b["difference_pct"] for b in detail["mu_check"]["beams"]} == {"ANT": 3.0, "ANT_OBL": 3.0}


def test_beyond_the_action_level_approval_is_refused_until_acknowledged(planned: Workspace) -> None:
    engine_reports_setup(planned, 0.92)
    with pytest.raises(PlanError, match=r"(?s)acknowledge.*beam ANT: engine .* MU \(-8\.0 % beyond the action level"):
        approve(planned, PLAN, PHYS, ACTOR)
    assert not planned.plan_state(PLAN).approved
    (refused,) = audit_of(planned, "approve")
    assert refused["outcome"] == "refused" and refused["actor"] == PHYS[0]
    state = approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True).state
    assert state.approved
    ok = audit_of(planned, "approve")[-1]
    detail = ok["detail"]
    assert ok["outcome"] == "ok" and isinstance(detail, dict) and detail["mu_check_acknowledged"] is True


def test_a_beam_that_cannot_be_checked_needs_an_acknowledgement_too(planned: Workspace) -> None:
    forget_beam_setups(planned.home, PLAN)  # a dose record from before the beams' SSD and depth were kept
    with pytest.raises(PlanError, match=r"beam ANT: not checkable: the dose record does not give this beam's SSD"):
        approve(planned, PLAN, PHYS, ACTOR)
    assert approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True).state.approved
