"""What a decision rests on is what rtexport wrote, and the dose is still that of the site's beam data.

Two checks every decision (dose, approve, authorize, export) makes, and every view shows:

- *intact*: the plan's rows (plan file, dose, approval, authorization) match the seals rtexport wrote for them in
  the audit log (:mod:`rtexport.workspace.seals`); a row changed behind rtexport's back refuses the decision;
- *current dose*: the dose records what it was computed with (a hash of the plan machine's geometry, the beam data
  of each energy the plan uses, its CT curve and the materials it names). When ``site.toml`` changes any of them,
  the dose is *stale*: approval and the export of the RT Plan and the doses are refused until the dose is computed
  again, or a physicist accepts the change (:func:`accept_dose`, audited).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from rtexport.errors import IntegrityError, PlanError
from rtexport.model.people import Actor
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.workspace import Workspace


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def dose_inputs(site: Site, plan: Plan) -> dict[str, str]:
    """What the plan's dose is computed from, part by part (name → SHA-256; "missing" when the site lacks it)."""
    parts: dict[str, str] = {}
    machine = site.machine(plan.machine)
    parts[f"machine {plan.machine}"] = (
        "missing" if machine is None else _digest(machine.model_dump(exclude={"energies"}))
    )
    for energy in sorted({b.energy_mev for b in plan.beams}):
        data = machine.energy(energy) if machine is not None else None
        parts[f"beam data of {plan.machine} {energy:g} MeV"] = "missing" if data is None else _digest(data.model_dump())
    curve = site.ct_curve(plan.ct_curve)
    parts[f"CT curve {plan.ct_curve}"] = "missing" if curve is None else _digest(curve.model_dump())
    named = {ov.material for ov in plan.overrides} | {b.bolus.material for b in plan.beams if b.bolus is not None}
    for name in sorted(named):
        material = site.material(name)
        parts[f"material {name}"] = "missing" if material is None else _digest(material.model_dump())
    return parts


def stale_reasons(site: Site | None, state: PlanState) -> tuple[str, ...]:
    """Why the plan's dose no longer fits the site's beam data (empty: it does, or there is no dose)."""
    if state.dose is None or site is None:
        return ()
    recorded = state.dose.inputs
    if recorded is None:
        return (
            "the dose was computed by an earlier rtexport that did not record the beam data it used: compute it "
            "again, or a physicist accepts it ('rtexport dose-accept')",
        )
    current = dose_inputs(site, state.plan)
    changed = sorted(k for k in recorded.keys() | current.keys() if recorded.get(k) != current.get(k))
    return tuple(f"{k} changed in site.toml since the dose was computed" for k in changed)


def with_staleness(state: PlanState, site: Site | None) -> PlanState:
    """The state with its dose's staleness against ``site``."""
    return replace(state, dose_stale=stale_reasons(site, state))


def require_intact(ws: Workspace, state: PlanState, action: str, actor: Actor) -> None:
    """Refuse (audited) a decision on a plan whose rows were changed behind rtexport's back, or whose stored plan
    file breaks a rule made stricter since it was stored."""
    plan_id, rev = state.plan.id, state.revision.number
    if state.stored_problems:
        ws.audit(actor, action, "refused", plan_id, rev, reason="stored plan invalid", problems=state.stored_problems)
        raise PlanError(
            f"{action} plan {plan_id} revision {rev}: refused, the plan file was stored before a stricter rule; "
            "load a corrected plan file ('rtexport plan show --toml' gives the stored one)",
            state.stored_problems,
        )
    if not state.integrity:
        return
    ws.audit(actor, action, "refused", plan_id, rev, reason="rows changed", findings=list(state.integrity))
    raise IntegrityError(
        f"{action} plan {plan_id} revision {rev}: refused, its records were changed outside rtexport (restore the "
        "workspace from a backup; 'rtexport verify' lists every changed record)",
        state.integrity,
    )
