"""The ``rtexport`` command line: a thin layer over the workspace and the export pipeline."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from rtexport.errors import GateError, RTExportError
from rtexport.export.gate import Item, parse_items
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.workspace import Workspace
from rtexport.workspace.workspace import Role, default_home

if TYPE_CHECKING:
    from rtexport.export.pipeline import PreparedExport
    from rtexport.export.send import Destination, InstanceResult

app = typer.Typer(
    help="DICOM export for electron radiotherapy planning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
site_app = typer.Typer(help="Site configuration.", no_args_is_help=True)
course_app = typer.Typer(help="Imported courses.", no_args_is_help=True)
plan_app = typer.Typer(help="Plans and their revisions.", no_args_is_help=True)
user_app = typer.Typer(help="Users (planners and physicists).", no_args_is_help=True)
app.add_typer(site_app, name="site")
app.add_typer(course_app, name="course")
app.add_typer(plan_app, name="plan")
app.add_typer(user_app, name="user")

out = Console()
err = Console(stderr=True)

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", envvar="RTEXPORT_HOME", help="Workspace folder (default: ./rtexport-home).", show_default=False
    ),
]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Workspace folder for every command (or RTEXPORT_HOME; default ./rtexport-home)."),
    ] = None,
) -> None:
    # Commands read RTEXPORT_HOME; the group runs before they parse, so `rtexport --home DIR CMD` works too.
    if home is not None:
        os.environ["RTEXPORT_HOME"] = str(home)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _home(home: Path | None) -> Path:
    return home if home is not None else default_home()


def _ws(home: Path | None) -> Workspace:
    return Workspace.open(_home(home))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True))


@app.command()
def init(home: HomeOpt = None) -> None:
    """Create an empty workspace (site.toml, database, store)."""
    ws = Workspace.init(_home(home))
    out.print(f"workspace created in {ws.home}; edit {ws.site_path} then run 'rtexport site check'")


@site_app.command("check")
def site_check(home: HomeOpt = None) -> None:
    """List every problem in site.toml, each with its path."""
    ws = _ws(home)
    problems = ws.site_problems()
    if problems:
        for p in problems:
            out.print(f"{ws.site_path}: {p}", highlight=False, markup=False)
        fail(f"{len(problems)} problem(s) in the site configuration")
    site = ws.site()
    out.print(
        f"site configuration OK: {len(site.machines)} machine(s), {len(site.ct_curves)} CT curve(s), "
        f"{len(site.materials)} material(s), {len(site.dicom.servers)} DICOM server(s)"
    )


@app.command("import")
def import_(
    folder: Path, course: Annotated[str, typer.Option("--course", help="Course id.")], home: HomeOpt = None
) -> None:
    """Import one CT series and one RT Structure Set from FOLDER as a course."""
    ws = _ws(home)
    result = ws.import_course(folder, course, actor="cli")
    c = result.course
    out.print(
        f"imported course {c.id}: patient {c.patient.patient_id}, {len(c.slices)} CT slices, "
        f"{len(c.structures)} structures (External: {c.external.name if c.external else 'none'})"
    )
    for path, reason in result.skipped:
        out.print(f"  skipped {path}: {reason}", highlight=False)


@course_app.command("list")
def course_list(home: HomeOpt = None) -> None:
    """List the imported courses."""
    table = Table("course", "patient", "slices", "structures", "External", "imported")
    for c in _ws(home).courses():
        table.add_row(
            c.id,
            f"{c.patient.patient_name} ({c.patient.patient_id})",
            str(len(c.slices)),
            ", ".join(s.name for s in c.structures),
            c.external.name if c.external else "-",
            c.imported_at,
        )
    out.print(table)


@plan_app.command("load")
def plan_load(file: Path, home: HomeOpt = None) -> None:
    """Load a plan file: a new plan, or a new revision when it changed."""
    ws = _ws(home)
    from rtexport.model.plan import read_plan_file

    _, text = read_plan_file(file)
    state, changed = ws.load_plan(text, str(file), actor="cli")
    if changed:
        out.print(f"plan {state.plan.id}: revision {state.revision.number} stored")
    else:
        out.print(f"plan {state.plan.id}: unchanged (revision {state.revision.number})")


@plan_app.command("list")
def plan_list(home: HomeOpt = None) -> None:
    """List plans: id, label, revision, approval and dose state."""
    ws = _ws(home)
    table = Table("plan", "label", "course", "revision", "approval", "authorization", "dose")
    for pid in ws.plan_ids():
        s = ws.plan_state(pid)
        table.add_row(
            pid,
            s.plan.label,
            s.plan.course,
            str(s.revision.number),
            f"APPROVED by {s.approval.user}" if s.approval else "UNAPPROVED",
            s.authorization.user if s.authorization else "-",
            s.dose_state,
        )
    out.print(table)


@plan_app.command("show")
def plan_show(plan: str, home: HomeOpt = None) -> None:
    """Show one plan: state, beams and its current plan file."""
    ws = _ws(home)
    s = ws.plan_state(plan)
    out.print(
        f"[bold]{s.plan.id}[/] '{s.plan.label}' course {s.plan.course}, revision {s.revision.number} "
        f"of {s.revisions}, created {s.revision.created_at:%Y-%m-%d %H:%M} by {s.revision.created_by}"
    )
    out.print(
        "approval: "
        + (f"APPROVED by {s.approval.user} at {s.approval.at:%Y-%m-%d %H:%M}" if s.approval else "UNAPPROVED")
    )
    if not s.approved:
        out.print(
            "export authorization: "
            + (f"{s.authorization.user} at {s.authorization.at:%Y-%m-%d %H:%M}" if s.authorization else "none")
        )
    out.print(f"dose: {s.dose_state}")
    table = Table("beam", "MeV", "applicator", "gantry", "coll", "couch", "SSD mm", "MU/fx", "bolus")
    for b in s.plan.beams:
        stored = s.dose.beam(b.name) if s.dose else None
        mu = stored.mu_per_fraction if stored else b.mu
        bolus = f"{b.bolus.thickness_mm:g} mm {b.bolus.material}" if b.bolus else "-"
        table.add_row(
            b.name,
            f"{b.energy_mev:g}",
            b.applicator,
            f"{b.gantry_deg:g}",
            f"{b.collimator_deg:g}",
            f"{b.couch_deg:g}",
            "-" if b.ssd_mm is None else f"{b.ssd_mm:g}",
            "-" if mu is None else f"{mu:.1f}",
            bolus,
        )
    out.print(table)


@plan_app.command("clone")
def plan_clone(plan: str, new_id: str, home: HomeOpt = None) -> None:
    """Make an unapproved copy of PLAN under NEW_ID."""
    s = _ws(home).clone_plan(plan, new_id, actor="cli")
    out.print(f"plan {s.plan.id}: unapproved copy of {plan}, revision 1")


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[Role, typer.Option("--role")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Add a user; a physicist is a qualified user."""
    ws = _ws(home)
    user = ws.add_user(name, role, _password(password_stdin))
    out.print(f"user {user.name} added ({user.role.value})")


@user_app.command("list")
def user_list(home: HomeOpt = None) -> None:
    """List users and their roles."""
    for u in _ws(home).users():
        out.print(f"{u.name}\t{u.role.value}")


@app.command()
def approve(
    plan: str, user: Annotated[str, typer.Option("--user")], password_stdin: PasswordStdin = False, home: HomeOpt = None
) -> None:
    """Approve PLAN's current revision (physicists only; needs current dose)."""
    ws = _ws(home)
    s = ws.approve(plan, user, _password(password_stdin))
    assert s.approval is not None
    out.print(f"plan {plan} revision {s.revision.number} APPROVED by {s.approval.user} at {s.approval.at}")
    _prebuild(ws, plan)


def _prebuild(ws: Workspace, plan: str) -> None:
    """Build the export objects of the plan's state that was just fixed, so that exporting only copies files.
    A build error is shown as a warning here: the dose or approval stands, and the export will report it."""
    from rtexport.export.pipeline import prebuild

    try:
        with err.status("preparing the export objects ..."):
            prebuild(ws, plan)
    except RTExportError as e:
        err.print(f"[yellow]warning:[/] the export of {escape(plan)} cannot be prepared: {escape(str(e))}")


@app.command()
def authorize(
    plan: str, user: Annotated[str, typer.Option("--user")], password_stdin: PasswordStdin = False, home: HomeOpt = None
) -> None:
    """Authorize export of an unapproved PLAN's current revision (physicists only)."""
    s = _ws(home).authorize(plan, user, _password(password_stdin))
    assert s.authorization is not None
    out.print(f"export of plan {plan} revision {s.revision.number} authorized by {s.authorization.user}")


@app.command()
def audit(
    plan: Annotated[str | None, typer.Option("--plan")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
) -> None:
    """Show the append-only audit log."""
    entries = _ws(home).audit_entries(plan)
    if as_json:
        out.print_json(json.dumps(entries))
        return
    table = Table("#", "at", "actor", "action", "plan", "rev", "outcome", "detail")
    for e in entries:
        table.add_row(
            str(e["id"]),
            e["at"],
            e["actor"],
            e["action"],
            e["plan_id"] or "",
            "" if e["revision"] is None else str(e["revision"]),
            e["outcome"],
            json.dumps(e["detail"])[:80],
        )
    out.print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command()
def dose(
    plan: str,
    grid_mm: Annotated[float | None, typer.Option("--grid-mm", help="Dose grid spacing.")] = None,
    home: HomeOpt = None,
) -> None:
    """Compute and store dose for PLAN's current revision (one grid per beam, and their sum)."""
    from rtexport.services import compute_dose

    ws = _ws(home)
    with err.status(f"computing dose for {plan} ..."):
        state = compute_dose(ws, plan, actor="cli", grid_mm=grid_mm)
    assert state.dose is not None
    _prebuild(ws, plan)
    table = Table("beam", "MU/fx", "dose/fx at norm. point (Gy)", "normalization point (mm)")
    for b in state.dose.beams:
        table.add_row(
            b.beam_name,
            f"{b.mu_per_fraction:.1f}",
            f"{b.dose_per_fraction_gy:.3f}",
            ", ".join(f"{v:.1f}" for v in b.normalization_point_mm),
        )
    out.print(table)
    g = state.dose.plan
    out.print(
        f"plan dose: max {float(g.gy.max()):.2f} Gy on a {' x '.join(map(str, g.geometry.shape[::-1]))} "
        f"grid of {g.geometry.spacing_mm[0]:g} mm (revision {state.revision.number})"
    )


def _items(text: str) -> tuple[Item, ...]:
    try:
        return parse_items(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--items") from e


ItemsOpt = Annotated[str, typer.Option("--items", help="Comma-separated: ct,rtstruct,rtplan,dose-plan,dose-beam.")]


def _destination(
    ws: Workspace, server: str | None, aet: str | None, host: str | None, port: int | None, tls_ca: Path | None
) -> Destination | None:
    from rtexport.export.send import Destination
    from rtexport.model.site import TLSConfig, validate_ae_title

    if server is not None:
        if aet or host or port:
            raise typer.BadParameter("give --server NAME or --aet/--host/--port, not both")
        found = ws.site().dicom.server(server)
        if found is None:
            known = ", ".join(s.name for s in ws.site().dicom.servers) or "none configured"
            raise typer.BadParameter(f"no server {server!r} in site.toml (servers: {known})", param_hint="--server")
        return Destination.from_server(found)
    if aet is None and host is None and port is None:
        return None
    if aet is None or host is None or port is None:
        raise typer.BadParameter("a custom server needs --aet, --host and --port")
    try:
        validate_ae_title(aet)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--aet") from e
    return Destination(aet, host, port, TLSConfig(ca_file=tls_ca) if tls_ca else None)


ServerOpt = Annotated[str | None, typer.Option("--server", help="A DICOM server from site.toml.")]
AetOpt = Annotated[str | None, typer.Option("--aet", help="Custom server: called AE title.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Custom server: host.")]
PortOpt = Annotated[int | None, typer.Option("--port", help="Custom server: port.", min=1, max=65535)]
TlsOpt = Annotated[Path | None, typer.Option("--tls-ca", help="Custom server: use TLS, verifying with this CA file.")]


@app.command("export")
def export(
    plan: str,
    to: Annotated[Path | None, typer.Option("--to", help="Folder (default: the site's export folder).")] = None,
    items: ItemsOpt = "ct,rtstruct,rtplan,dose-plan,dose-beam",
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    commit: Annotated[bool, typer.Option("--commit", help="Ask the server to commit storage (push model).")] = False,
    user: Annotated[str, typer.Option("--user", help="Who exports (recorded in the audit log).")] = "cli",
    home: HomeOpt = None,
) -> None:
    """Export PLAN's DICOM objects to a folder, or to a DICOM server (C-STORE)."""
    from rtexport.export.pipeline import export_to_folder, export_to_server, prepare

    ws = _ws(home)
    chosen = _items(items)
    dest = _destination(ws, server, aet, host, port, tls_ca)
    if dest is not None and to is not None:
        raise typer.BadParameter("give --to or a server, not both")
    try:
        prep = prepare(ws, plan, chosen, user)
    except GateError as e:
        fail(str(e), 2)
    if dest is None:
        with _progress() as bar:
            task = bar.add_task("writing", total=prep.total_bytes)
            _, report = export_to_folder(ws, plan, chosen, to, user, lambda o: bar.advance(task, o.size), prep)
        _summary(prep, f"{report.folder}", len(report.written), len(report.identical))
        return
    lines: list[str] = []
    with _progress() as bar:
        task = bar.add_task(f"sending to {dest.ae_title}", total=prep.total_bytes)

        def on_result(r: InstanceResult) -> None:
            bar.advance(task, r.obj.size)
            status = "" if r.status is None else f" 0x{r.status:04X}"
            lines.append(f"{r.outcome.value:<8} {r.obj.filename}{status} {r.meaning}")

        _, sent = export_to_server(ws, plan, chosen, dest, user, on_result, commit, prep)
    for line in lines:
        out.print(line, highlight=False, markup=False)
    counts: dict[str, int] = {}
    for r in sent.results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    out.print(f"{dest.ae_title}@{dest.host}:{dest.port}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if sent.committed is not None:
        out.print(f"storage commitment: {len(sent.committed)} of {len(sent.results)} instance(s) committed")
    if not sent.ok:
        fail("not every instance was stored; run the same export again to send the rest", 3)


@app.command()
def echo(
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    home: HomeOpt = None,
) -> None:
    """Test a DICOM destination with C-ECHO."""
    from rtexport.export.send import echo as c_echo

    ws = _ws(home)
    dest = _destination(ws, server, aet, host, port, tls_ca)
    if dest is None:
        raise typer.BadParameter("give --server NAME or --aet/--host/--port")
    c_echo(dest, ws.site().dicom.local_ae_title)
    out.print(f"C-ECHO {dest.ae_title}@{dest.host}:{dest.port}: success")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    home: HomeOpt = None,
) -> None:
    """Serve the web page (plans, pictures, DVH, the Export block)."""
    from rtexport.web.app import serve as run

    ws = _ws(home)
    ws.close()
    run(ws.home, host=host, port=port)


@app.command()
def demo(
    home: Annotated[Path, typer.Option("--home", help="Demo workspace folder (replaced on each run).")] = Path(
        "rtexport-demo"
    ),
) -> None:
    """Build the demo: phantom course, site, users, two-beam plan; compute dose; authorize; export everything."""
    from rtexport.demo.build import authorize_demo, build_demo_workspace
    from rtexport.demo.plan import DEMO_PLAN_ID
    from rtexport.export.pipeline import export_to_folder, prepare
    from rtexport.services import compute_dose

    ws = build_demo_workspace(home, step=lambda s: out.print(f"- {s}"))
    out.print("- computing dose (pencil beam)")
    state = compute_dose(ws, DEMO_PLAN_ID, actor="pat")
    assert state.dose is not None
    for b in state.dose.beams:
        out.print(f"    beam {b.beam_name}: {b.mu_per_fraction:.1f} MU/fraction")
    out.print("- authorizing export (physicist phil)")
    authorize_demo(ws)
    items = tuple(Item)
    prep = prepare(ws, DEMO_PLAN_ID, items, "pat")
    with _progress() as bar:
        task = bar.add_task("exporting", total=prep.total_bytes)
        _, report = export_to_folder(ws, DEMO_PLAN_ID, items, None, "pat", lambda o: bar.advance(task, o.size), prep)
    _summary(prep, str(report.folder), len(report.written), len(report.identical))
    out.print(f"demo workspace: {ws.home}  (try: rtexport --home {ws.home} plan show {DEMO_PLAN_ID})")


def _summary(prep: PreparedExport, where: str, written: int, identical: int) -> None:
    state = prep.state
    table = Table(
        "object",
        "files",
        "MB",
        "UID(s)",
        title=f"export of {state.plan.id} revision "
        f"{state.revision.number} ({'APPROVED' if state.approved else 'UNAPPROVED'}) to {where}",
    )
    table.columns[3].overflow = "fold"  # a UID is copied whole from the screen, never cut
    by_kind: dict[str, list[ExportObject]] = {}
    for o in prep.objects:
        by_kind.setdefault(o.description if o.kind is not ObjectKind.CT else "CT Images", []).append(o)
    for name, objs in by_kind.items():
        uid = objs[0].sop_instance_uid if len(objs) == 1 else f"{len(objs)} instances"
        table.add_row(name, str(len(objs)), f"{sum(o.size for o in objs) / 1e6:.2f}", uid)
    out.print(table)
    out.print(
        f"{written} file(s) written, {identical} identical file(s) already there, "
        f"{prep.total_bytes / 1e6:.1f} MB in all"
    )


def main() -> None:
    try:
        app()
    except RTExportError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1)
