"""Plan files, revisions, approval, authorization and the audit log, as the services apply them."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import AuthError, PlanError
from rtexport.model.dose import BeamDose, DoseGrid, GridGeometry, PlanDose
from rtexport.model.plan import parse_plan
from rtexport.services.approval import approve, authorize
from rtexport.services.integrity import dose_inputs
from rtexport.services.plans import clone_plan, load_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, PHYS, PLANNER, add_demo_users


def fake_dose(ws: Workspace, plan_id: str) -> None:
    """A stand-in dose for the current revision (approval needs one; its values do not matter here)."""
    state = ws.plan_state(plan_id)
    grid = DoseGrid(
        GridGeometry((0.0, 0.0, 0.0), (2.5, 2.5, 2.5), (2, 2, 2)),
        np.ones((2, 2, 2), np.float32),
        ws.course(state.plan.course).ct.frame_of_reference_uid,
    )
    beams = tuple(BeamDose(b.name, 100.0, grid, (0.0, 0.0, 0.0), 1.0) for b in state.plan.beams)
    record = ws.doses.store_arrays(PlanDose(beams, grid), "test", dose_inputs(ws.site(), state.plan))
    with ws.transaction():
        ws.doses.save(plan_id, state.revision.number, record, ws.now())
        ws.audit(ACTOR, "dose", "ok", plan_id, state.revision.number, engine="test")


def test_load_new_plan_then_unchanged_then_changed(course_ws: Workspace) -> None:
    first, changed = load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    assert changed and first.revision.number == 1 and not first.approved
    reformatted = DEMO_PLAN.replace("fractions = 25", "fractions   =   25  # same")
    state, changed = load_plan(course_ws, reformatted, "plan.toml", ACTOR)
    assert not changed and state.revision.number == 1 and state.revision.token == first.revision.token
    state, changed = load_plan(course_ws, DEMO_PLAN.replace("fractions = 25", "fractions = 20"), "plan.toml", ACTOR)
    assert changed and state.revision.number == 2 and state.plan.fractions == 20
    assert state.revision.token != first.revision.token  # a new revision seeds new UIDs
    assert course_ws.plan_state("CW-E1").revisions == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('machine = "DemoLinac"', 'machine = "Nope"'), r"machine: unknown machine 'Nope'"),
        (("energy_mev = 16", "energy_mev = 7"), r"beam\[0\]\.energy_mev: DemoLinac has no 7 MeV"),
        (('applicator = "15x15"', 'applicator = "11x11"'), r"beam\[0\]\.applicator: DemoLinac has no applicator"),
        (('material = "Water"', 'material = "Gold"'), r"override\[0\]\.material: unknown material 'Gold'"),
        (('structure = "Prosthesis"', 'structure = "Heart"'), r"override\[0\]\.structure: no structure 'Heart'"),
        (('external = "OUTLINE2"', 'external = "SKIN"'), r"external: no structure 'SKIN'"),
        (("[[-65, -50], [65, -50]", "[[-85, -50], [65, -50]"), r"beam\[0\]\.cutout_mm: cutout does not fit"),
        (("gantry_deg = 20", "gantry_deg = 400"), r"beam\[1\]\.gantry_deg: Input should be less than 360"),
        (
            ("[[-65, -50], [65, -50], [65, 40], [50, 50], [-65, 50]]", "[[-10, -10], [10, -10], [10, 10], [-10, 10]]"),
            r"beam\[0\]\.cutout_mm: beam ANT: its equivalent square \(by lateral build-up, σ_r [\d.]+ mm\) is 20\.0 "
            r"mm, outside the site's cutout factors \(30-250 mm at 16 MeV\)",
        ),
        (('material = "Superflab"', 'material = "Clay"'), r"beam\[0\]\.bolus\.material: unknown material"),
        (("fractions = 25", "fractions = 0"), r"fractions: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_plan_names_the_key(course_ws: Workspace, edit: tuple[str, str], message: str) -> None:
    text = DEMO_PLAN.replace(*edit)
    assert text != DEMO_PLAN
    with pytest.raises(PlanError, match=message):
        load_plan(course_ws, text, "plan.toml", ACTOR)
    assert course_ws.plans.ids() == []


def test_passwords_are_hashed_never_stored_in_clear(course_ws: Workspace) -> None:
    add_demo_users(course_ws)
    db = sqlite3.connect(course_ws.home / "rtexport.db")
    dump = "\n".join(db.iterdump())
    assert PHYS[1] not in dump and PLANNER[1] not in dump
    assert "scrypt$" in dump
    assert (course_ws.home / "rtexport.db").read_bytes().find(PHYS[1].encode()) == -1


def test_only_physicists_authorize_and_approve(course_ws: Workspace) -> None:
    add_demo_users(course_ws)
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    with pytest.raises(AuthError, match=r"pat is a planner; only a physicist may authorize"):
        authorize(course_ws, "CW-E1", PLANNER, ACTOR)
    with pytest.raises(AuthError, match=r"wrong password"):
        authorize(course_ws, "CW-E1", ("phil", "guess"), ACTOR)
    state = authorize(course_ws, "CW-E1", PHYS, ACTOR).state
    assert state.authorization is not None and state.authorization.user == "phil"
    refused = [e for e in course_ws.audit_log.entries("CW-E1") if e["outcome"] == "refused"]
    # pat proved who she is (wrong role); the wrong password proves nobody: who ran it is the actor, phil a detail
    assert [(e["actor"], e["action"]) for e in refused] == [("pat", "authorize"), ("tester", "authorize")]
    assert refused[1]["detail"]["user"] == "phil"
    assert all("guess" not in str(e) for e in course_ws.audit_log.entries())


def test_a_change_voids_the_authorization(course_ws: Workspace) -> None:
    add_demo_users(course_ws)
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    authorize(course_ws, "CW-E1", PHYS, ACTOR)
    changed = DEMO_PLAN.replace("prescription_gy = 50.0", "prescription_gy = 45.0")
    state, _ = load_plan(course_ws, changed, "plan.toml", ACTOR)
    assert state.authorization is None and state.revision.number == 2


def test_approval_needs_dose_then_makes_plan_read_only(course_ws: Workspace) -> None:
    add_demo_users(course_ws)
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    with pytest.raises(PlanError, match=r"has no current dose; run 'rtexport dose CW-E1'"):
        approve(course_ws, "CW-E1", PHYS, ACTOR)
    fake_dose(course_ws, "CW-E1")
    with pytest.raises(AuthError, match=r"only a physicist may approve"):
        approve(course_ws, "CW-E1", PLANNER, ACTOR)
    # the stand-in dose covers no target: its warnings are acknowledged like the MU check
    state = approve(course_ws, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True, acknowledge_warnings=True).state
    assert state.approved and state.approval is not None and state.approval.user == "phil"
    assert state.approval.person_name == "Physicist^Phil"
    with pytest.raises(PlanError, match=r"approved and read-only; .*rtexport plan clone CW-E1"):
        load_plan(course_ws, DEMO_PLAN.replace("fractions = 25", "fractions = 20"), "plan.toml", ACTOR)
    assert course_ws.plan_state("CW-E1").plan.fractions == 25
    clone = clone_plan(course_ws, "CW-E1", "CW-E2", ACTOR, label="Chestwall v2")
    assert not clone.approved and clone.plan.id == "CW-E2" and clone.plan.beams == state.plan.beams
    assert clone.plan.label == "Chestwall v2"


def test_clone_round_trips_any_label_through_the_plan_file(course_ws: Workspace) -> None:
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    clone = clone_plan(course_ws, "CW-E1", "CW-E3", ACTOR, label='a "quoted" é')
    stored = course_ws.plans.last_revision("CW-E3").toml
    assert parse_plan(stored, "stored") == clone.plan


def test_clone_refuses_an_existing_id(course_ws: Workspace) -> None:
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    clone_plan(course_ws, "CW-E1", "CW-E2", ACTOR)
    with pytest.raises(PlanError, match=r"plan 'CW-E2' exists already"):
        clone_plan(course_ws, "CW-E1", "CW-E2", ACTOR)
    assert course_ws.plan_state("CW-E2").revisions == 1


def test_audit_log_is_append_only(course_ws: Workspace) -> None:
    load_plan(course_ws, DEMO_PLAN, "plan.toml", ACTOR)
    db = sqlite3.connect(course_ws.home / "rtexport.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET outcome = 'ok'")
    entries = course_ws.audit_log.entries()
    assert [e["action"] for e in entries] == ["import", "plan-load"]
    assert {(e["actor"], e["os_user"], e["via"]) for e in entries} == {("tester", "tester-os", "test")}


def test_an_acknowledged_unusual_value_is_loaded_and_recorded_in_the_audit(course_ws: Workspace) -> None:
    text = DEMO_PLAN.replace("ssd_mm = 1000\nweight = 0.6", 'ssd_mm = 1150\nweight = 0.6\nacknowledge = ["ssd_mm"]', 1)
    with pytest.raises(PlanError, match=r'beam\[0\].ssd_mm: 1150 mm is an extended SSD.*acknowledge = \["ssd_mm"\]'):
        load_plan(course_ws, text.replace('\nacknowledge = ["ssd_mm"]', ""), "plan.toml", ACTOR)
    state, _ = load_plan(course_ws, text, "plan.toml", ACTOR)
    assert state.plan.beams[0].acknowledge == ["ssd_mm"]
    entry = course_ws.audit_log.entries("CW-E1")[-1]
    assert entry["action"] == "plan-load" and entry["detail"]["acknowledged"] == {
        "beam[0].ssd_mm": "1150 mm is an extended SSD, beyond DemoLinac's usual 1000-1100 mm"
    }


# Texts a plan file may hold in its label and beam names: each must come back from the stored plan file as it was.
ACCEPTED_TEXTS = [
    'a "quoted" one',
    "it's",
    "é ü ß",
    "α-β γ",
    "#1 = A",
    "日本語",
    "😀😀😀",
    "[x] {y}",
    "Θώρακας ηλεκτρ.",
]
REFUSED_TEXTS = [
    ("back\\slash", "backslash"),
    ("new\nline", "control"),
    ("tab\tin", "control"),
    ("   ", "only spaces"),
    ("😀" * 17, "17 characters"),
]


@pytest.mark.parametrize("text", ACCEPTED_TEXTS)
def test_a_plan_file_round_trips_any_text_it_accepts(planned: Workspace, text: str) -> None:
    clone = clone_plan(planned, "CW-E1", "CW-E9", ACTOR, label=text)  # the demo plan, loaded once per session
    stored = planned.plans.last_revision("CW-E9").toml
    assert parse_plan(stored, "stored") == clone.plan and clone.plan.label == text
    assert clone_plan(planned, "CW-E9", "CW-E10", ACTOR).plan.label == text  # and again, from the stored file


@pytest.mark.parametrize(("text", "why"), REFUSED_TEXTS)
def test_a_label_dicom_cannot_hold_is_refused_with_its_key(planned: Workspace, text: str, why: str) -> None:
    with pytest.raises(PlanError, match=rf"label: .*{why}"):
        clone_plan(planned, "CW-E1", "CW-E9", ACTOR, label=text)
    assert "CW-E9" not in planned.plans.ids()
