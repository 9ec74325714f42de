"""The audit log as the front ends show it: its records, and the proof of its hash chain; a refusal a front end
makes before any other service runs (a form without its CSRF token) is recorded here too."""

from __future__ import annotations

from typing import Any

from rtexport.model.people import Actor
from rtexport.workspace import Workspace
from rtexport.workspace.audit import ChainCheck


def audit_entries(ws: Workspace, plan_id: str | None = None) -> list[dict[str, Any]]:
    """The audit records, oldest first (all, or the plan's)."""
    return ws.audit_log.entries(plan_id)


def verify_audit(ws: Workspace) -> ChainCheck:
    """Prove the log's hash chain, or name the first record not as written."""
    return ws.audit_log.verify()


def record_refusal(ws: Workspace, actor: Actor, action: str, **detail: Any) -> None:
    """Audit a refusal made at the door, before any other use case ran."""
    ws.audit(actor, action, "refused", **detail)


__all__ = ["ChainCheck", "audit_entries", "record_refusal", "verify_audit"]
