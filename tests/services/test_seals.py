"""Rows a decision rests on are sealed in the audit chain when rtexport writes them: a change made with sqlite3
behind rtexport's back refuses the decision, naming the table, the row and what changed, and `verify` lists it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from rtexport.errors import GateError, IntegrityError
from rtexport.export.gate import Item
from rtexport.model.people import Role
from rtexport.services.approval import approve, authorize
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.planview import plan_view
from rtexport.services.users import set_role
from rtexport.services.verify import verify_workspace
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, PHYS, PLANNER

PLAN = "CW-E1"


def _sql(home: Path, statement: str) -> None:
    with closing(sqlite3.connect(home / "rtexport.db")) as db, db:
        db.execute(statement)


def test_an_untouched_workspace_is_intact_and_verify_counts_its_records(planned: Workspace) -> None:
    assert planned.plan_state(PLAN).integrity == ()
    report = verify_workspace(planned, ACTOR)
    # two users, the course, the plan, one revision, its dose, its authorization and the five objects built for
    # export (structure set, plan, plan dose, two beam doses)
    assert report.ok and report.rows_checked == 12 and report.rows_changed == ()


def test_an_edited_plan_file_is_shown_and_refuses_the_export(planned: Workspace, tmp_path: Path) -> None:
    _sql(planned.home, "UPDATE revisions SET toml = replace(toml, 'gantry_deg = 20', 'gantry_deg = 40')")
    assert planned.plan_state(PLAN).plan.beams[1].gantry_deg == 40  # what a reader of the row would believe
    (finding,) = planned.plan_state(PLAN).integrity
    assert finding.startswith("the plan file of plan CW-E1 revision 1 (table revisions) was changed")
    assert "toml changed" in finding and "digest" not in finding
    assert any("record changed outside rtexport" in w for w in plan_view(planned, PLAN).warnings)
    out = tmp_path / "out"
    with pytest.raises(GateError, match=r"table revisions\) was changed behind rtexport's back") as refused:
        export_plan(planned, PLAN, (Item.RTPLAN,), FolderDestination(out), ACTOR)
    assert not out.exists() and refused.value.findings
    with pytest.raises(IntegrityError, match="its records were changed outside rtexport"):
        compute_dose(planned, PLAN, ACTOR)
    report = verify_workspace(planned, ACTOR)
    assert not report.ok and report.rows_changed == (finding,)
    assert "1 of 12 sealed record(s) were changed outside rtexport" in report.summary()


def test_an_edited_dose_refuses_approval_and_the_export(planned: Workspace, tmp_path: Path) -> None:
    _sql(planned.home, "UPDATE doses SET data = replace(data, '\"mu_per_fraction\": ', '\"mu_per_fraction\": 1')")
    with pytest.raises(IntegrityError, match=r"the dose of plan CW-E1 revision 1 \(table doses\)") as refused:
        approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True)
    assert "data changed" in str(refused.value)
    assert planned.plan_state(PLAN).approval is None
    entry = planned.audit_log.entries()[-1]
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("approve", "refused", "phil")
    with pytest.raises(GateError, match="table doses"):
        export_plan(planned, PLAN, (Item.DOSE_PLAN,), FolderDestination(tmp_path / "out"), ACTOR)


def test_a_role_changed_with_sql_is_refused_and_the_command_is_not(planned: Workspace) -> None:
    _sql(planned.home, "UPDATE users SET role = 'physicist' WHERE name = 'pat'")
    with pytest.raises(IntegrityError, match="role is 'physicist', rtexport wrote 'planner'"):
        approve(planned, PLAN, PLANNER, ACTOR, acknowledge_mu_check=True)
    assert planned.plan_state(PLAN).approval is None
    (changed,) = verify_workspace(planned, ACTOR).rows_changed
    assert changed.startswith("user pat (table users) was changed")
    # The role set again by the command (a physicist's password; audited) is sealed anew: pat may approve.
    set_role(planned, "pat", Role.PHYSICIST, ACTOR, PHYS)
    assert verify_workspace(planned, ACTOR).ok
    assert approve(planned, PLAN, PLANNER, ACTOR, acknowledge_mu_check=True).signature.user == "pat"


def test_an_inserted_approval_and_a_deleted_authorization_are_named(planned: Workspace) -> None:
    _sql(planned.home, "DELETE FROM authorizations")
    _sql(planned.home, "INSERT INTO approvals VALUES ('CW-E1', 1, 'phil', '2026-03-01T10:00:00+00:00')")
    found = planned.plan_state(PLAN).integrity
    assert found[0].startswith("approval of plan CW-E1 revision 1 (table approvals) was not written by rtexport")
    assert found[1].startswith("export authorization of plan CW-E1 revision 1 (table authorizations) was deleted")
    with pytest.raises(IntegrityError, match="table approvals"):
        authorize(planned, PLAN, PHYS, ACTOR)


def test_an_edited_seal_in_the_audit_log_breaks_the_chain(planned: Workspace) -> None:
    """The seals live in the audit chain: rewriting one to match an edited row breaks the chain instead."""
    _sql(planned.home, "DROP TRIGGER audit_no_update")
    _sql(planned.home, "UPDATE audit SET detail = replace(detail, 'planner', 'physicist') WHERE action = 'user-add'")
    _sql(planned.home, "UPDATE users SET role = 'physicist' WHERE name = 'pat'")
    reopened = Workspace.open(planned.home)
    assert not reopened.audit_log.verify().ok
    reopened.close()


def test_rows_of_a_workspace_made_before_seals_are_sealed_once_as_found(planned: Workspace) -> None:
    home = planned.home
    planned.close()
    # A user added by an earlier version (no seal), in a workspace that version left (user_version 0).
    _sql(home, "INSERT INTO users (name, role, password_hash, created_at) VALUES ('old', 'planner', 'x', 'then')")
    _sql(home, "INSERT INTO courses SELECT 'C0', data, imported_at, imported_by FROM courses WHERE id = 'C1'")
    _sql(home, "PRAGMA user_version = 0")
    with Workspace.open(home) as ws:
        entry = ws.audit_log.entries()[-1]
        assert (entry["action"], entry["outcome"], entry["detail"]["count"]) == ("row-seals", "sealed as found", 2)
        assert verify_workspace(ws, ACTOR).ok
    with Workspace.open(home) as ws:  # once: a second open seals nothing more
        assert ws.audit_log.entries()[-1]["action"] == "verify"


def test_the_name_of_a_signer_changed_with_sql_refuses_the_export(planned: Workspace, tmp_path: Path) -> None:
    """The authorizing physicist's full name would go into the exported objects: their row counts for the plan."""
    _sql(planned.home, "UPDATE users SET full_name = 'Mallory^M' WHERE name = 'phil'")
    (finding,) = planned.plan_state(PLAN).integrity
    assert (
        "user phil (table users)" in finding and "full_name is 'Mallory^M', rtexport wrote 'Physicist^Phil'" in finding
    )
    with pytest.raises(GateError, match="full_name is 'Mallory"):
        export_plan(planned, PLAN, (Item.RTPLAN,), FolderDestination(tmp_path / "out"), ACTOR)


def test_verify_finds_a_seal_index_pointed_back_at_an_older_seal(planned: Workspace) -> None:
    """Decisions find a row's latest seal through an index; verify reads the whole log and finds the index moved."""
    set_role(planned, "pat", Role.PHYSICIST, ACTOR, PHYS)
    promoted = planned.audit_log.entries()[-1]["id"]
    set_role(planned, "pat", Role.PLANNER, ACTOR, PHYS)
    _sql(planned.home, "UPDATE users SET role = 'physicist' WHERE name = 'pat'")
    _sql(planned.home, f"UPDATE seal_index SET audit_id = {promoted} WHERE row = 'users:pat'")
    assert not planned.user_integrity("pat")  # the index is a shortcut, not the proof
    (moved, changed) = verify_workspace(planned, ACTOR).rows_changed
    assert moved.startswith(f"the seal index of users:pat was changed: it points to audit record {promoted}")
    assert "role is 'physicist', rtexport wrote 'planner'" in changed


def test_a_seal_index_pointing_at_a_record_that_does_not_seal_the_row_refuses(planned: Workspace) -> None:
    _sql(planned.home, "UPDATE seal_index SET audit_id = 1 WHERE row = 'users:pat'")
    with pytest.raises(IntegrityError, match="the seal index of users:pat was changed: audit record 1 does not seal"):
        approve(planned, PLAN, PLANNER, ACTOR)


def test_a_course_edited_with_sql_refuses_the_export_and_verify_names_it(planned: Workspace, tmp_path: Path) -> None:
    """The course row says which stored files are the patient's CT and who the patient is: pointing it at other
    files (or another name) behind rtexport's back is found like an edited plan."""
    _sql(planned.home, "UPDATE courses SET data = replace(data, 'Phantom^Electron', 'Mallory^M')")
    (finding,) = planned.plan_state(PLAN).integrity
    assert finding.startswith("course C1 (table courses) was changed behind rtexport's back (data changed")
    out = tmp_path / "out"
    with pytest.raises(GateError, match=r"course C1 \(table courses\) was changed"):
        export_plan(planned, PLAN, (Item.CT,), FolderDestination(out), ACTOR)
    assert not out.exists()
    assert verify_workspace(planned, ACTOR).rows_changed == (finding,)


def test_a_built_object_pointed_at_other_bytes_refuses_the_export(planned: Workspace, tmp_path: Path) -> None:
    """An object built for export is found by its row: a row made to name another stored file (here the plan's
    RT Structure Set in place of its RT Plan) would export those bytes; it is refused, naming the object and the
    digest rtexport kept."""
    with closing(sqlite3.connect(planned.home / "rtexport.db")) as db:
        rs, rp = (
            db.execute("SELECT sha256 FROM built WHERE key LIKE ?", (f"%\x1f{kind}",)).fetchone()[0]
            for kind in ("RS", "RP")
        )
    _sql(planned.home, f"UPDATE built SET sha256 = '{rs}' WHERE sha256 = '{rp}'")
    (finding,) = planned.plan_state(PLAN).integrity
    assert finding.startswith("the RT Plan built for export for plan CW-E1 revision 1 (table built) was changed")
    assert f"sha256 is '{rs}', rtexport wrote '{rp}'" in finding
    out = tmp_path / "out"
    with pytest.raises(GateError, match="the RT Plan built for export"):
        export_plan(planned, PLAN, (Item.RTPLAN,), FolderDestination(out), ACTOR)
    assert not out.exists()


def test_objects_built_are_sealed_in_a_build_record_of_who_built_them(planned: Workspace) -> None:
    (entry,) = [e for e in planned.audit_log.entries() if e["action"] == "build"]
    assert (entry["actor"], entry["plan_id"], entry["revision"]) == (ACTOR.name, PLAN, 1)  # who computed the dose
    assert sorted(entry["detail"]["objects"]) == [
        "RT Dose (plan)",
        "RT Dose of beam ANT",
        "RT Dose of beam ANT_OBL",
        "RT Plan",
        "RT Structure Set",
    ]
