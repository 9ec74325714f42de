"""Honest folders: an approved plan's export objects are fixed, so one whose stored file went missing is refused,
never built again with other bytes under the same UIDs; a plan stored before a stricter rule opens with findings."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import GateError, PlanError, StoreError
from rtexport.export.gate import Item
from rtexport.services.approval import approve
from rtexport.services.dose import compute_dose
from rtexport.services.export import Destination, FolderDestination, export_plan
from rtexport.services.plans import load_plan, plan_state
from rtexport.services.planview import plan_view
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, PHYS

PLAN = "CW-E1"


def _rt_plan_row(ws: Workspace, status: str) -> tuple[str, str]:
    """The key and digest of the RT Plan built for the plan as ``status`` (APPROVED or UNAPPROVED)."""
    rows = ws.db.all("SELECT key, sha256 FROM built")
    (row,) = [r for r in rows if r["key"].endswith("\x1fRP") and r["key"].split("\x1f")[3] == status]
    return str(row["key"]), str(row["sha256"])


def test_an_approved_plans_missing_object_is_refused_not_rebuilt(planned: Workspace, tmp_path: Path) -> None:
    approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True)
    key, digest = _rt_plan_row(planned, "APPROVED")
    planned.blobs.path(digest).unlink()
    out = tmp_path / "out"
    with pytest.raises(StoreError, match=r"RT Plan \(sha256 [0-9a-f]{64}\) are missing, never rebuilt for an approved"):
        export_plan(planned, PLAN, (Item.RTPLAN,), FolderDestination(out), ACTOR)
    assert _rt_plan_row(planned, "APPROVED") == (key, digest) and not planned.blobs.has(digest)
    assert not out.exists() or not any(out.iterdir())
    entry = planned.audit_log.entries()[-1]
    assert (entry["action"], entry["outcome"]) == ("export", "failed")


def test_an_unapproved_plans_missing_object_is_built_again(planned: Workspace, tmp_path: Path) -> None:
    _, digest = _rt_plan_row(planned, "UNAPPROVED")
    planned.blobs.path(digest).unlink()
    export_plan(planned, PLAN, (Item.RTPLAN,), FolderDestination(tmp_path / "out"), ACTOR)
    assert planned.blobs.has(_rt_plan_row(planned, "UNAPPROVED")[1])


def _store_as_an_earlier_version_did(ws: Workspace, toml: str) -> None:
    """A revision 2 stored by an earlier version, under rules since made stricter (sealed, as the upgrade does)."""
    with ws.transaction():
        ws.plans.add_revision(PLAN, 2, "earlier", toml, "0" * 32, ws.now(), "tester")
        ws.audit(ACTOR, "plan-load", "ok", PLAN, 2, source="an earlier version")


def test_a_plan_stored_before_a_stricter_rule_opens_with_findings(planned: Workspace, tmp_path: Path) -> None:
    _store_as_an_earlier_version_did(planned, DEMO_PLAN.replace('label = "Chestwall e-"', 'label = "' + "L" * 20 + '"'))
    state = plan_state(planned, PLAN)
    assert state.revision.number == 2 and state.plan.label == "L" * 20
    (problem,) = state.stored_problems
    assert problem.startswith("plan CW-E1 revision 2: label:")
    assert f"stored before a stricter rule: {problem}" in plan_view(planned, PLAN).warnings
    with pytest.raises(PlanError, match="the plan file was stored before a stricter rule"):
        compute_dose(planned, PLAN, ACTOR)
    with pytest.raises(GateError, match="stored before a stricter rule: load a corrected plan file"):
        export_plan(planned, PLAN, (Item.CT,), FolderDestination(tmp_path / "out"), ACTOR)
    fixed, changed = load_plan(planned, DEMO_PLAN, "plan.toml", ACTOR)
    assert changed and fixed.revision.number == 3 and fixed.stored_problems == ()


def test_commit_without_a_commitment_port_is_refused_before_anything_is_sent(planned: Workspace) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on: a send would fail, the gate refuses first
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert planned.site().dicom.commitment_port is None
    with pytest.raises(GateError, match=r"--commit: storage commitment needs dicom.commitment_port in site.toml"):
        export_plan(planned, PLAN, (Item.RTPLAN,), Destination("ARCHIVE", "127.0.0.1", port), ACTOR, commit=True)
    entry = planned.audit_log.entries()[-1]
    assert (entry["action"], entry["outcome"]) == ("export-server", "refused")
