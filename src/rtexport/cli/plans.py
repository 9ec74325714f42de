"""``plan load|list|show|clone``: ``plan show`` prints the plan view (:mod:`rtexport.services.planview`) as text
or JSON; it computes nothing itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rtexport.cli.base import (
    Command,
    HomeOpt,
    JsonOpt,
    PlanArg,
    actor,
    mm,
    plan_app,
    print_json,
    say,
    show,
    signature_json,
    signer,
    table,
    warn,
    when,
    wrapped,
    ws,
)

if TYPE_CHECKING:
    from rtexport.services.checks import MUCheck
    from rtexport.services.planview import BeamView, PlanView


@plan_app.command("load", cls=Command)
def plan_load(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Plan file (TOML, format = 1).")], home: HomeOpt = None
) -> None:
    """Load a plan file: a new plan, or a new revision when it changed."""
    from rtexport.model.plan import read_plan_file
    from rtexport.services.plans import load_plan

    _, text = read_plan_file(file)
    state, changed = load_plan(ws(home), text, str(file), actor())
    if changed:
        say(f"plan {state.plan.id}: revision {state.revision.number} stored")
    else:
        say(f"plan {state.plan.id}: unchanged (revision {state.revision.number})")


@plan_app.command("list", cls=Command)
def plan_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List plans: id, label, revision, approval and dose state."""
    from rtexport.services.plans import plan_states

    states = plan_states(ws(home))
    if as_json:
        print_json(
            [
                {
                    "id": s.plan.id,
                    "label": s.plan.label,
                    "course": s.plan.course,
                    "revision": s.revision.number,
                    "revisions": s.revisions,
                    "approval": signature_json(s.approval),
                    "authorization": signature_json(s.authorization),
                    "dose": s.dose is not None,
                    "dose_state": s.dose_state,
                    "records_changed": list(s.integrity),
                }
                for s in states
            ]
        )
        return
    t = table("plan", "label", "course", "revision", "approval", "export authorization", "dose")
    for s in states:
        t.add_row(
            s.plan.id,
            s.plan.label,
            s.plan.course,
            f"{s.revision.number} of {s.revisions}",
            f"APPROVED by {signer(s.approval)}" if s.approval else "UNAPPROVED",
            signer(s.authorization) if s.authorization else "-",
            s.dose_state.upper() if s.dose_stale else s.dose_state,
        )
    show(t)
    for s in states:
        for f in s.integrity:
            warn(f"plan {s.plan.id}: record changed outside rtexport: {f}")


def _beam_json(b: BeamView) -> dict[str, Any]:
    beam, setup, d = b.beam, b.setup, b.dose
    return {
        "name": beam.name,
        "energy_mev": beam.energy_mev,
        "applicator": beam.applicator,
        "cutout_mm": beam.cutout_mm,
        "equivalent_square_mm": None if b.equivalent_square_mm is None else round(b.equivalent_square_mm, 1),
        "ssd_mm": beam.ssd_mm,
        "gantry_deg": beam.gantry_deg,
        "collimator_deg": beam.collimator_deg,
        "couch_deg": beam.couch_deg,
        "isocenter_mm": beam.isocenter_mm,
        "target": beam.target,
        "bolus": None if beam.bolus is None else beam.bolus.model_dump(),
        "weight": beam.weight,
        "mu_per_fraction": b.mu_per_fraction,
        "normalization_point_mm": d.normalization_point_mm if d else None,
        "dose_per_fraction_gy": d.dose_per_fraction_gy if d else None,
        # added: the beam as the export sets it up, and what it references
        "aim": b.aim,
        "setup": None
        if setup is None
        else {
            "technique": setup.technique,
            "isocenter_mm": list(setup.isocenter_mm),
            "ssd_mm": setup.ssd_mm,
            "surface_entry_mm": list(setup.entry_mm),
            "aperture_mm": [list(p) for p in setup.aperture_mm],
        },
        "boli": list(b.boli),
        "mu_from_dose": b.mu_from_dose,
    }


def plan_json(v: PlanView) -> dict[str, Any]:
    s = v.state
    p = s.plan
    return {
        "id": p.id,
        "label": p.label,
        "course": p.course,
        "machine": p.machine,
        "ct_curve": p.ct_curve,
        "external": p.external,
        "fractions": p.fractions,
        "prescription_gy": p.prescription_gy,
        "revision": s.revision.number,
        "revisions": s.revisions,
        "created_at": s.revision.created_at.isoformat(),
        "created_by": s.revision.created_by,
        "approval": signature_json(s.approval),
        "authorization": signature_json(s.authorization),
        "overrides": [{"structure": o.structure, "material": o.material} for o in p.overrides],
        "dose": None if s.dose is None else {"computed_at": s.dose.computed_at.isoformat(), "engine": s.dose.engine},
        "beams": [_beam_json(b) for b in v.beams],
        "mu_check": None if v.mu_check is None else v.mu_check.as_dict(),
        # added
        "max_dose_gy": v.max_dose_gy,
        "warnings": list(v.warnings),
        "first_slices": dict(v.first_slices),
        "setup_problem": v.setup_problem or None,
    }


def show_mu_check(check: MUCheck | None) -> None:
    if check is None:
        return
    say(f"independent MU check (TG-71 hand calculation; action level {check.action_level_pct:g} %):")
    for b in check.beams:
        wrapped(b.summary(check.action_level_pct), "  ")


def _show_beam(b: BeamView) -> None:
    beam, setup = b.beam, b.setup
    eq = b.equivalent_square_mm
    cutout = ("custom cutout" if beam.cutout_mm else "open applicator") + (
        "" if eq is None else f" (equivalent square {eq:.1f} mm)"
    )
    ssd = "SSD traced from the isocenter" if beam.ssd_mm is None else f"SSD {beam.ssd_mm:g} mm"
    wrapped(f"beam {beam.name}: {beam.energy_mev:g} MeV, applicator {beam.applicator}, {cutout}, {ssd}")
    wrapped(
        f"gantry {beam.gantry_deg:g}°, collimator {beam.collimator_deg:g}°, couch {beam.couch_deg:g}°; {b.aim}", "  "
    )
    if setup is not None:
        technique = "fixed SSD" if setup.technique == "FIXED_SSD" else "isocentric"
        wrapped(
            f"setup ({technique}): isocenter {mm(setup.isocenter_mm)}, SSD {setup.ssd_mm:.1f} mm, "
            f"surface entry {mm(setup.entry_mm)}",
            "  ",
        )
    own = beam.bolus
    spec = "" if own is None else f"own bolus {own.thickness_mm:g} mm {own.material}, margin {own.margin_mm:g} mm"
    wrapped("bolus: " + ("; ".join([", ".join(b.boli), spec] if spec else [", ".join(b.boli)]) or "none"), "  ")
    d = b.dose
    if d is not None:
        wrapped(
            f"{d.mu_per_fraction:.1f} MU per fraction; normalization point {mm(d.normalization_point_mm)}, "
            f"{d.dose_per_fraction_gy:.3f} Gy per fraction there",
            "  ",
        )
    elif b.mu_per_fraction is not None:
        wrapped(f"{b.mu_per_fraction:.1f} MU per fraction (from the plan)", "  ")


def _show_plan(v: PlanView) -> None:
    from rtexport.model.display import person

    s, p, patient = v.state, v.state.plan, v.course.patient
    say(f"{p.id} '{p.label}' · course {p.course} · patient {person(patient.patient_name)} ({patient.patient_id})")
    loaded = f"loaded {when(s.revision.created_at)} by {s.revision.created_by}"
    say(f"revision {s.revision.number} of {s.revisions}, {loaded}")
    say("approval: " + (f"APPROVED by {signer(s.approval)} on {when(s.approval.at)}" if s.approval else "UNAPPROVED"))
    if not s.approved:
        auth = s.authorization
        say("export authorization: " + (f"{signer(auth)} on {when(auth.at)}" if auth else "none"))
    say(f"machine {p.machine} · CT curve {p.ct_curve} · External {p.external}")
    say(
        f"prescription: {p.prescription_gy:g} Gy in {p.fractions} fractions "
        f"({p.prescription_per_fraction_gy:.3g} Gy per fraction)"
    )
    say("density overrides: " + ("; ".join(f"{o.structure} → {o.material}" for o in p.overrides) or "none"))
    say(
        f"dose: {'STALE, ' if s.dose_stale else ''}computed {when(s.dose.computed_at)} ({s.dose.engine}), "
        f"maximum {v.max_dose_gy or 0:.2f} Gy"
        if s.dose
        else f"dose: none for this revision (run 'rtexport dose {p.id}')"
    )
    if v.setup_problem:
        wrapped(f"beam setup unavailable: {v.setup_problem}")
    for b in v.beams:
        _show_beam(b)
    show_mu_check(v.mu_check)
    for w in v.warnings:
        wrapped(f"warning: {w}")


@plan_app.command("show", cls=Command)
def plan_show(
    plan: PlanArg,
    as_json: JsonOpt = False,
    as_toml: Annotated[
        bool, typer.Option("--toml", help="Print the current revision's plan file as loaded (to edit a copy).")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Show one plan: state, prescription, beams as set up, bolus, MU and the independent MU check."""
    from rtexport.services.plans import plan_state
    from rtexport.services.planview import plan_view

    workspace = ws(home)
    if as_toml:
        toml = plan_state(workspace, plan).revision.toml
        sys.stdout.write(toml if toml.endswith("\n") else toml + "\n")
        return
    view = plan_view(workspace, plan)
    if as_json:
        print_json(plan_json(view))
        return
    _show_plan(view)


@plan_app.command("clone", cls=Command)
def plan_clone(
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="Plan id to copy.")],
    new_id: Annotated[str, typer.Argument(metavar="NEW_ID", help="Id of the copy.")],
    label: Annotated[
        str | None, typer.Option("--label", metavar="TEXT", help="Label of the copy (default: the same).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Make an unapproved copy of PLAN under NEW_ID."""
    from rtexport.services.plans import clone_plan

    s = clone_plan(ws(home), plan, new_id, actor(), label)
    say(f"plan {s.plan.id} '{s.plan.label}': unapproved copy of {plan}, revision 1")
