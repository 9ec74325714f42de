"""Export authorization and plan approval: a physicist's name and password, checked and written in one
transaction with the plan state they sign, then the export objects of the signed state are built."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from rtexport.errors import PlanError
from rtexport.model.people import Actor
from rtexport.model.plan import mu_problems
from rtexport.model.site import Site
from rtexport.model.state import PlanState, Signature, StoredDose
from rtexport.mucheck import MUCheck, check_beams
from rtexport.services.access import Clock
from rtexport.services.building import prepare_objects
from rtexport.services.coverage import fresh_target_warnings
from rtexport.services.integrity import dose_inputs, require_intact, stale_reasons, with_staleness
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
    require_intact(ws, state, action, actor.as_user(who.name))
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


@dataclass(frozen=True)
class Acknowledged:
    """What the approving physicist acknowledged: the independent MU check, the plan's target warnings."""

    mu_check: bool = False
    warnings: bool = False


def _refusal(
    state: PlanState, site: Site, dose: StoredDose | None, ack: Acknowledged, targets: list[str]
) -> tuple[PlanError | None, dict[str, object], MUCheck | None]:
    """Why the revision cannot be approved as it stands (None: it can), what the audit records of it, the MU check."""
    plan_id, rev = state.plan.id, state.revision.number
    if dose is None:
        return (
            PlanError(f"plan {plan_id} revision {rev} has no current dose; run 'rtexport dose {plan_id}'"),
            {"reason": "no current dose"},
            None,
        )
    stale = stale_reasons(site, replace(state, dose=dose))
    if stale:
        return (
            PlanError(
                f"plan {plan_id} revision {rev} cannot be approved: its dose is stale; run 'rtexport dose {plan_id}' "
                f"again, or a physicist accepts the change with 'rtexport dose-accept {plan_id} --user NAME'",
                stale,
            ),
            {"reason": "stale dose", "problems": list(stale)},
            None,
        )
    implausible = mu_problems(state.plan, site, {b.beam_name: b.mu_per_fraction for b in dose.beams})
    if implausible:
        return (
            PlanError(f"plan {plan_id} revision {rev} cannot be approved", implausible),
            {
                "reason": "implausible MU",
                "problems": implausible,
            },
            None,
        )
    check = check_beams(state.plan, site, dose.beams)
    if check.needs_acknowledgement and not ack.mu_check:
        return (
            PlanError(
                f"plan {plan_id} revision {rev}: approval needs you to acknowledge the independent MU check "
                "(rtexport approve --acknowledge-mu-check, or tick the box on the page)",
                check.findings(),
            ),
            {"reason": "MU check not acknowledged", "mu_check": check.as_dict()},
            check,
        )
    if targets and not ack.warnings:
        return (
            PlanError(
                f"plan {plan_id} revision {rev}: approval needs you to acknowledge the plan's warnings "
                "(rtexport approve --acknowledge-warnings, or tick the box on the page)",
                targets,
            ),
            {"reason": "warnings not acknowledged", "warnings": targets},
            check,
        )
    return None, {}, check


def approve(
    ws: Workspace,
    plan_id: str,
    credentials: Credentials,
    actor: Actor,
    *,
    acknowledge_mu_check: bool = False,
    acknowledge_warnings: bool = False,
    where: Where = HERE,
) -> Signed:
    """A physicist approves the plan's current revision, which must have current dose; the plan is then read-only
    and its export objects (fixed UIDs) are built. When the independent MU check finds a beam beyond the site's
    action level, or a beam it cannot check, approval needs ``acknowledge_mu_check``; when a beam cannot reach
    its target or a target is not covered, ``acknowledge_warnings`` (both recorded in the audit)."""
    state, signer = _signer(ws, plan_id, credentials, "approve", actor, where)
    rev = state.revision.number
    status = site_status(ws)
    site = status.require()
    targets, aimed = fresh_target_warnings(ws, site, state)
    signature: Signature | None = None
    with ws.transaction():
        _still_unapproved(ws, plan_id, rev, "approve")
        dose = ws.doses.get(plan_id, rev)
        ack = Acknowledged(acknowledge_mu_check, acknowledge_warnings)
        refusal, refused, check = _refusal(state, site, dose, ack, targets)
        if refusal is None and check is not None:
            ws.plans.add_approval(plan_id, rev, str(signer.user), ws.now())
            ws.audit(
                signer,
                "approve",
                "ok",
                plan_id,
                rev,
                mu_check=check.as_dict(),
                mu_check_acknowledged=check.needs_acknowledgement,
                warnings_acknowledged=targets,
            )
            signature = ws.plans.approval(plan_id, rev)
    if refusal is not None:
        ws.audit(signer, "approve", "refused", plan_id, rev, **refused)
        raise refusal
    if signature is None:  # the row written in this transaction
        raise PlanError(f"plan {plan_id}: the approval just stored cannot be read back")
    setup = (state.revision.token, aimed) if aimed is not None else None  # the beams as the warnings saw them
    return Signed(ws.plan_state(plan_id), signature, prepare_objects(ws, plan_id, signer, status, setup=setup), check)


def accept_dose(
    ws: Workspace, plan_id: str, credentials: Credentials, actor: Actor, where: Where = HERE
) -> tuple[PlanState, tuple[str, ...]]:
    """A physicist accepts the plan's dose although the site's beam data changed since it was computed (audited
    with what changed); returns the state after, and what was accepted."""
    state = ws.plan_state(plan_id)
    rev = state.revision.number
    who = qualified(ws, credentials, "dose-accept", actor, plan_id, rev, client=where.client, clock=where.clock)
    signer = actor.as_user(who.name)
    require_intact(ws, state, "dose-accept", signer)
    site = site_status(ws).require()
    if state.dose is None:
        raise PlanError(f"plan {plan_id} revision {rev} has no dose to accept; run 'rtexport dose {plan_id}'")
    reasons = stale_reasons(site, state)
    if not reasons:
        raise PlanError(f"plan {plan_id} revision {rev}: the dose is current, there is nothing to accept")
    with ws.transaction():
        if ws.plans.last_revision(plan_id).number != rev:
            raise PlanError(f"plan {plan_id} changed meanwhile; look at its new revision first")
        ws.doses.accept_inputs(plan_id, rev, dose_inputs(site, state.plan), who.name, ws.now(), list(reasons))
        ws.audit(signer, "dose-accept", "ok", plan_id, rev, accepted=list(reasons))
    return with_staleness(ws.plan_state(plan_id), site), reasons
