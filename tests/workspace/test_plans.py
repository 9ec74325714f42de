"""Plan files, revisions, users, approval, authorization and the audit log."""

from __future__ import annotations

import sqlite3

import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import AuthError, PlanError
from rtexport.model.dose import BeamDose
from rtexport.workspace import Workspace
from rtexport.workspace.workspace import Role


def with_users(ws: Workspace) -> Workspace:
    ws.add_user("pat", Role.PLANNER, "planner-pass-1")
    ws.add_user("phil", Role.PHYSICIST, "physicist-pass-1")
    return ws


def fake_dose(ws: Workspace, plan_id: str) -> None:
    import numpy as np

    from rtexport.model.dose import DoseGrid, GridGeometry

    state = ws.plan_state(plan_id)
    grid = DoseGrid(
        GridGeometry((0.0, 0.0, 0.0), (2.5, 2.5, 2.5), (2, 2, 2)),
        np.ones((2, 2, 2), np.float32),
        ws.course(state.plan.course).ct.frame_of_reference_uid,
    )
    beams = [BeamDose(b.name, 100.0, grid, (0.0, 0.0, 0.0), 1.0) for b in state.plan.beams]
    ws.save_dose(plan_id, state.revision.number, beams, grid, "test")


def test_load_new_plan_then_unchanged_then_changed(course_ws: Workspace) -> None:
    state, changed = course_ws.load_plan(DEMO_PLAN)
    assert changed and state.revision.number == 1 and not state.approved
    reformatted = DEMO_PLAN.replace("fractions = 25", "fractions   =   25  # same")
    state, changed = course_ws.load_plan(reformatted)
    assert not changed and state.revision.number == 1
    state, changed = course_ws.load_plan(DEMO_PLAN.replace("fractions = 25", "fractions = 20"))
    assert changed and state.revision.number == 2 and state.plan.fractions == 20
    assert state.revision.token != course_ws.plan_state("CW-E1").revision.token or state.revisions == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('machine = "DemoLinac"', 'machine = "Nope"'), r"machine: unknown machine 'Nope'"),
        (("energy_mev = 9", "energy_mev = 7"), r"beam\[0\]\.energy_mev: DemoLinac has no 7 MeV"),
        (('applicator = "10x10"', 'applicator = "11x11"'), r"beam\[0\]\.applicator: DemoLinac has no applicator"),
        (('material = "Water"', 'material = "Gold"'), r"override\[0\]\.material: unknown material 'Gold'"),
        (('structure = "Prosthesis"', 'structure = "Heart"'), r"override\[0\]\.structure: no structure 'Heart'"),
        (('external = "OUTLINE2"', 'external = "SKIN"'), r"external: no structure 'SKIN'"),
        (("[[-45, -35], [45, -35]", "[[-65, -35], [45, -35]"), r"beam\[0\]\.cutout_mm: cutout does not fit"),
        (("gantry_deg = 20", "gantry_deg = 400"), r"beam\[1\]\.gantry_deg: Input should be less than 360"),
        (('material = "Superflab"', 'material = "Clay"'), r"beam\[0\]\.bolus\.material: unknown material"),
        (("fractions = 25", "fractions = 0"), r"fractions: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_plan_names_the_key(course_ws: Workspace, edit: tuple[str, str], message: str) -> None:
    text = DEMO_PLAN.replace(*edit)
    assert text != DEMO_PLAN
    with pytest.raises(PlanError, match=message):
        course_ws.load_plan(text)
    assert course_ws.plan_ids() == []


def test_passwords_are_hashed_never_stored_in_clear(workspace: Workspace) -> None:
    with_users(workspace)
    db = sqlite3.connect(workspace.home / "rtexport.db")
    dump = "\n".join(db.iterdump())
    assert "physicist-pass-1" not in dump and "planner-pass-1" not in dump
    assert "scrypt$" in dump
    assert (workspace.home / "rtexport.db").read_bytes().find(b"physicist-pass-1") == -1


def test_only_physicists_authorize_and_approve(course_ws: Workspace) -> None:
    with_users(course_ws)
    course_ws.load_plan(DEMO_PLAN)
    with pytest.raises(AuthError, match=r"pat is a planner; only a physicist may authorize"):
        course_ws.authorize("CW-E1", "pat", "planner-pass-1")
    with pytest.raises(AuthError, match=r"wrong password"):
        course_ws.authorize("CW-E1", "phil", "guess")
    state = course_ws.authorize("CW-E1", "phil", "physicist-pass-1")
    assert state.authorization is not None and state.authorization.user == "phil"
    refused = [e for e in course_ws.audit_entries("CW-E1") if e["outcome"] == "refused"]
    assert [(e["actor"], e["action"]) for e in refused] == [("pat", "authorize"), ("phil", "authorize")]
    assert all("guess" not in str(e) for e in course_ws.audit_entries())


def test_a_change_voids_the_authorization(course_ws: Workspace) -> None:
    with_users(course_ws)
    course_ws.load_plan(DEMO_PLAN)
    course_ws.authorize("CW-E1", "phil", "physicist-pass-1")
    state, _ = course_ws.load_plan(DEMO_PLAN.replace("prescription_gy = 50.0", "prescription_gy = 45.0"))
    assert state.authorization is None and state.revision.number == 2


def test_approval_needs_dose_then_makes_plan_read_only(course_ws: Workspace) -> None:
    with_users(course_ws)
    course_ws.load_plan(DEMO_PLAN)
    with pytest.raises(PlanError, match=r"has no current dose; run 'rtexport dose CW-E1'"):
        course_ws.approve("CW-E1", "phil", "physicist-pass-1")
    fake_dose(course_ws, "CW-E1")
    with pytest.raises(AuthError, match=r"only a physicist may approve"):
        course_ws.approve("CW-E1", "pat", "planner-pass-1")
    state = course_ws.approve("CW-E1", "phil", "physicist-pass-1")
    assert state.approved and state.approval is not None and state.approval.user == "phil"
    with pytest.raises(PlanError, match=r"approved and read-only; .*rtexport plan clone CW-E1"):
        course_ws.load_plan(DEMO_PLAN.replace("fractions = 25", "fractions = 20"))
    assert course_ws.plan_state("CW-E1").plan.fractions == 25
    clone = course_ws.clone_plan("CW-E1", "CW-E2")
    assert not clone.approved and clone.plan.id == "CW-E2" and clone.plan.beams == state.plan.beams


def test_audit_log_is_append_only(course_ws: Workspace) -> None:
    course_ws.load_plan(DEMO_PLAN)
    db = sqlite3.connect(course_ws.home / "rtexport.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET outcome = 'ok'")
    actions = [e["action"] for e in course_ws.audit_entries()]
    assert actions == ["import", "plan-load"]
