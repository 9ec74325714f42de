"""Export authorization and plan approval: a physicist's name and password, checked and written in one
transaction with the plan state they sign, then the export objects of the signed state are built."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rtexport.errors import PlanError
from rtexport.model.people import Actor
from rtexport.model.plan import mu_problems
from rtexport.model.state import PlanState, Signature
from rtexport.mucheck import MUCheck, check_beams
from rtexport.services.access import Clock
from rtexport.services.building import prepare_objects
from rtexport.services.site import site_status
from rtexport.services.users import Credentials, qualified
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class Signed:
    """The signature given (as stored), the plan state after it, the independent MU check, and what preparing the
    export objects said (None: all prepared)."""

    state: PlanState
    signature: Signature
    warning: str | None = None
    mu_check: MUCheck | None = None


@dataclass(frozen=True)
class Where:
    """Where a password came from, for the throttle: the client (default: the operating-system account) and the
    clock the throttle reads."""

    client: str | None = None
    clock: Clock = time.time


HERE = Where()


def _signer(
    ws: Workspace, plan_id: str, credentials: Credentials, action: str, actor: Actor, where: Where
) -> tuple[PlanState, Actor]:
    """The plan's state and the physicist who signs it (proven by name and password; refusals audited)."""
    state = ws.plan_state(plan_id)
    rev = state.revision.number
    who = qualified(ws, credentials, action, actor, plan_id, rev, client=where.client, clock=where.clock)
    return state, actor.as_user(who.name)


def _still_unapproved(ws: Workspace, plan_id: str, rev: int, action: str) -> None:
    """Inside the signing transaction: the revision signed is still the current one, and not approved."""
    current = ws.plans.last_revision(plan_id).number
    if current != rev:
        raise PlanError(f"plan {plan_id} changed to revision {current} meanwhile; {action} that revision")
    if ws.plans.approval(plan_id, rev) is not None:
        needless = "export needs no authorization" if action == "authorize" else "it cannot be approved again"
        raise PlanError(f"plan {plan_id} revision {rev} is approved already: {needless}")


def authorize(ws: Workspace, plan_id: str, credentials: Credentials, actor: Actor, where: Where = HERE) -> Signed:
    """A physicist authorizes the export of the plan's current (unapproved) revision."""
    state, signer = _signer(ws, plan_id, credentials, "authorize", actor, where)
    rev = state.revision.number
    with ws.transaction():
        _still_unapproved(ws, plan_id, rev, "authorize")
        ws.plans.set_authorization(plan_id, rev, str(signer.user), ws.now())
        ws.audit(signer, "authorize", "ok", plan_id, rev)
        signature = ws.plans.authorization(plan_id, rev)
    if signature is None:  # the row written in this transaction
        raise PlanError(f"plan {plan_id}: the authorization just stored cannot be read back")
    return Signed(ws.plan_state(plan_id), signature)


def approve(
    ws: Workspace,
    plan_id: str,
    credentials: Credentials,
    actor: Actor,
    *,
    acknowledge_mu_check: bool = False,
    where: Where = HERE,
) -> Signed:
    """A physicist approves the plan's current revision, which must have current dose; the plan is then read-only
    and its export objects (fixed UIDs) are built. When the independent MU check finds a beam beyond the site's
    action level, or a beam it cannot check, approval needs ``acknowledge_mu_check`` (recorded in the audit)."""
    state, signer = _signer(ws, plan_id, credentials, "approve", actor, where)
    rev = state.revision.number
    status = site_status(ws)
    site = status.require()
    signature: Signature | None = None
    check = None
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
                signature = ws.plans.approval(plan_id, rev)
    if refusal is not None:
        ws.audit(signer, "approve", "refused", plan_id, rev, **refused)
        raise refusal
    if signature is None:  # the row written in this transaction
        raise PlanError(f"plan {plan_id}: the approval just stored cannot be read back")
    return Signed(ws.plan_state(plan_id), signature, prepare_objects(ws, plan_id, status), check)
