"""Honest folders: an approved plan's export objects are fixed, so one whose stored file went missing is refused,
never built again with other bytes under the same UIDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtexport.errors import StoreError
from rtexport.export.gate import Item
from rtexport.services.approval import approve
from rtexport.services.export import FolderDestination, export_plan
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
