"""Export authorization and plan approval: a physicist's name and password, checked and written in one
transaction with the plan state they sign, then the export objects of the signed state are built."""

from __future__ import annotations

from dataclasses import dataclass

from rtexport.errors import PlanError
from rtexport.model.people import Actor
from rtexport.model.plan import mu_problems
from rtexport.model.state import PlanState
from rtexport.mucheck import check_beams
from rtexport.services.export import prepare_objects
from rtexport.services.users import Credentials, qualified
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class Signed:
    """The plan state after a signature, and what preparing its export objects said (None: all prepared)."""

    state: PlanState
    warning: str | None = None


def _signer(
    ws: Workspace, plan_id: str, credentials: Credentials, action: str, actor: Actor
) -> tuple[PlanState, Actor]:
    """The plan's state and the physicist who signs it (proven by name and password; refusals audited)."""
    state = ws.plan_state(plan_id)
    who = qualified(ws, credentials, action, actor, plan_id, state.revision.number)
    return state, actor.as_user(who.name)


def _still_unapproved(ws: Workspace, plan_id: str, rev: int, action: str) -> None:
    """Inside the signing transaction: the revision signed is still the current one, and not approved."""
    current = ws.plans.last_revision(plan_id).number
    if current != rev:
        raise PlanError(f"plan {plan_id} changed to revision {current} meanwhile; {action} that revision")
    if ws.plans.approval(plan_id, rev) is not None:
        needless = "export needs no authorization" if action == "authorize" else "it cannot be approved again"
        raise PlanError(f"plan {plan_id} revision {rev} is approved already: {needless}")


def authorize(ws: Workspace, plan_id: str, credentials: Credentials, actor: Actor) -> Signed:
    """A physicist authorizes the export of the plan's current (unapproved) revision."""
    state, signer = _signer(ws, plan_id, credentials, "authorize", actor)
    rev = state.revision.number
    with ws.transaction():
        _still_unapproved(ws, plan_id, rev, "authorize")
        assert signer.user is not None
        ws.plans.set_authorization(plan_id, rev, signer.user, ws.now())
        ws.audit(signer, "authorize", "ok", plan_id, rev)
    return Signed(ws.plan_state(plan_id))


def approve(
    ws: Workspace, plan_id: str, credentials: Credentials, actor: Actor, *, acknowledge_mu_check: bool = False
) -> Signed:
    """A physicist approves the plan's current revision, which must have current dose; the plan is then read-only
    and its export objects (fixed UIDs) are built. When the independent MU check finds a beam beyond the site's
    action level, or a beam it cannot check, approval needs ``acknowledge_mu_check`` (recorded in the audit)."""
    state, signer = _signer(ws, plan_id, credentials, "approve", actor)
    rev = state.revision.number
    site = ws.site()
    refusal: PlanError | None = None
    refused: dict[str, object] = {}
    with ws.transaction():
        _still_unapproved(ws, plan_id, rev, "approve")
        dose = ws.doses.get(plan_id, rev)
        implausible = (
            [] if dose is None else mu_problems(state.plan, site, {b.beam_name: b.mu_per_fraction for b in dose.beams})
        )
        if dose is None:
            refusal = PlanError(f"plan {plan_id} revision {rev} has no current dose; run 'rtexport dose {plan_id}'")
            refused = {"reason": "no current dose"}
        elif implausible:
            refusal = PlanError(f"plan {plan_id} revision {rev} cannot be approved", implausible)
            refused = {"reason": "implausible MU", "problems": implausible}
        else:
            check = check_beams(state.plan, site, dose.beams)
            if check.needs_acknowledgement and not acknowledge_mu_check:
                refusal = PlanError(
                    f"plan {plan_id} revision {rev}: approval needs you to acknowledge the independent MU check "
                    "(rtexport approve --acknowledge-mu-check, or tick the box on the page)",
                    check.findings(),
                )
                refused = {"reason": "MU check not acknowledged", "mu_check": check.as_dict()}
            else:
                ws.plans.add_approval(plan_id, rev, str(signer.user), ws.now())
                ws.audit(
                    signer,
                    "approve",
                    "ok",
                    plan_id,
                    rev,
                    mu_check=check.as_dict(),
                    mu_check_acknowledged=check.needs_acknowledgement,
                )
    if refusal is not None:
        ws.audit(signer, "approve", "refused", plan_id, rev, **refused)
        raise refusal
    return Signed(ws.plan_state(plan_id), prepare_objects(ws, plan_id))
