"""``dose``, ``approve``, ``authorize`` and ``report``: what a physicist signs a plan from, and the signatures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rtexport.cli.base import (
    Command,
    HomeOpt,
    PasswordStdin,
    PlanArg,
    actor,
    app,
    console,
    fail,
    password,
    print_json,
    quiet_collector,
    say,
    show,
    signer,
    table,
    warn,
    when,
    ws,
)
from rtexport.cli.plans import show_mu_check

if TYPE_CHECKING:
    from rtexport.services.workspaces import Workspace


@app.command(cls=Command)
def dose(
    plan: PlanArg,
    grid_mm: Annotated[
        float | None, typer.Option("--grid-mm", metavar="MM", help="Dose grid spacing in mm (default: the plan's).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Compute and store dose for PLAN's current revision (one grid per beam, and their sum)."""
    with quiet_collector():
        from rtexport.services.dose import compute_dose, import_engine

        import_engine()

    with console(stderr=True).status(f"computing dose for {plan} ..."):
        result = compute_dose(ws(home), plan, actor(), grid_mm)
    t = table("beam", "MU/fx", "dose/fx at norm. point (Gy)", "normalization point (mm)")
    for b in result.dose.beams:
        t.add_row(
            b.beam_name,
            f"{b.mu_per_fraction:.1f}",
            f"{b.dose_per_fraction_gy:.3f}",
            ", ".join(f"{v:.1f}" for v in b.normalization_point_mm),
        )
    show(t)
    say(
        f"plan dose: max {result.max_gy:.2f} Gy on a {' x '.join(map(str, result.grid_shape[::-1]))} "
        f"grid of {result.grid_spacing_mm:g} mm (revision {result.state.revision.number})"
    )
    show_mu_check(result.mu_check)
    for w in result.warnings:
        warn(w)


@app.command(cls=Command)
def approve(
    plan: PlanArg,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="The approving physicist.")],
    acknowledge_mu_check: Annotated[
        bool,
        typer.Option(
            "--acknowledge-mu-check",
            help="Approve although the independent MU check differs beyond the site's action level or cannot "
            "check a beam (recorded in the audit log).",
        ),
    ] = False,
    acknowledge_warnings: Annotated[
        bool,
        typer.Option(
            "--acknowledge-warnings",
            help="Approve although a beam cannot reach its target or a target is not covered (see 'plan show'; "
            "recorded in the audit log).",
        ),
    ] = False,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Approve PLAN's current revision (physicists only; needs current dose)."""
    from rtexport.services.approval import approve as approve_plan

    workspace = ws(home)
    credentials = (user, password(password_stdin))
    with console(stderr=True).status("approving and preparing the export objects ..."):
        signed = approve_plan(
            workspace,
            plan,
            credentials,
            actor(),
            acknowledge_mu_check=acknowledge_mu_check,
            acknowledge_warnings=acknowledge_warnings,
        )
    a = signed.signature
    say(f"plan {plan} revision {signed.state.revision.number} APPROVED by {signer(a)} on {when(a.at)}")
    show_mu_check(signed.mu_check)
    if signed.warning:
        warn(signed.warning)


@app.command("dose-accept", cls=Command)
def dose_accept(
    plan: PlanArg,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="The accepting physicist.")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Accept PLAN's dose although the site's beam data, CT curve or materials changed since it was computed
    (physicists only; audited with what changed)."""
    from rtexport.services.approval import accept_dose

    workspace = ws(home)
    state, accepted = accept_dose(workspace, plan, (user, password(password_stdin)), actor())
    for change in accepted:
        say(f"accepted: {change}")
    say(f"the dose of plan {plan} revision {state.revision.number} is {state.dose_state} (accepted by {user})")


@app.command(cls=Command)
def authorize(
    plan: PlanArg,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="The authorizing physicist.")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Authorize export of an unapproved PLAN's current revision (physicists only)."""
    from rtexport.services.approval import authorize as authorize_plan

    workspace = ws(home)
    signed = authorize_plan(workspace, plan, (user, password(password_stdin)), actor())
    say(f"export of plan {plan} revision {signed.state.revision.number} authorized by {signer(signed.signature)}")


@app.command(cls=Command)
def report(
    plan: PlanArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the PDF (default: ./report-PLAN-revN-ID.pdf).",
            show_default=False,
        ),
    ] = None,
    listing: Annotated[bool, typer.Option("--list", help="List the plan's reports made so far instead.")] = False,
    report_id: Annotated[
        int | None, typer.Option("--id", metavar="ID", help="Write report ID made earlier instead of a new one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print JSON (keys in the README).")] = False,
    home: HomeOpt = None,
) -> None:
    """Make the plan report (PDF) of PLAN's current revision, keep it in the workspace and write it to a file."""
    from rtexport.services.report import make_report, report_filename, report_pdf

    if as_json and not listing:
        raise typer.BadParameter("--json lists the reports: give it with --list", param_hint="--json")
    if listing and (report_id is not None or out is not None):
        raise typer.BadParameter("--list shows the reports; --id and --out write one", param_hint="--list")
    workspace = ws(home)
    if listing:
        _list_reports(workspace, plan, as_json)
        return
    if report_id is not None:
        stored, pdf = report_pdf(workspace, plan, report_id)
    else:
        with console(stderr=True).status(f"making the report of {plan} ..."):
            made = make_report(workspace, plan, actor())
        stored, pdf = made.stored, made.pdf
    target = out if out is not None else Path(report_filename(stored))
    try:
        target.write_bytes(pdf)
    except OSError as e:
        fail(f"cannot write {target}: {e.strerror}; the report is kept in the workspace as report {stored.id}")
    state = "APPROVED" if stored.approved else "UNAPPROVED"
    say(
        f"report {stored.id} of plan {plan} revision {stored.revision} ({state}) written to {target} "
        f"({len(pdf) / 1000:.0f} kB)"
    )


def _list_reports(workspace: Workspace, plan: str, as_json: bool) -> None:
    from rtexport.services.report import plan_reports

    found = plan_reports(workspace, plan)
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "plan": r.plan_id,
                    "revision": r.revision,
                    "approved": r.approved,
                    "made_at": r.made_at.isoformat(),
                    "made_by": r.made_by,
                    "sha256": r.sha256,
                    "size": r.size,
                }
                for r in found
            ]
        )
        return
    t = table("id", "made", "by", "revision", "plan state", "kB")
    for r in found:
        state = "APPROVED" if r.approved else "UNAPPROVED"
        t.add_row(str(r.id), when(r.made_at), r.made_by, str(r.revision), state, f"{r.size / 1000:.0f}")
    show(t)
