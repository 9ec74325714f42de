"""The ``rtexport`` command line: parses, calls one service, renders its result. No rule lives here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rtexport.errors import GateError, InputError, RTExportError
from rtexport.workspace import Actor, Role, Workspace
from rtexport.workspace.workspace import default_home

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

    from rtexport.export.build import PreparedExport
    from rtexport.services.export import ExportReport, ProgressEvent

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
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password(s) from standard input, one per line.")
]


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


def _actor(user: str | None = None) -> Actor:
    return Actor.here("cli", user)


def _password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail(f"{prompt}: expected a line on standard input")
        return line.rstrip("\r\n")
    return str(typer.prompt(prompt, hide_input=True))


def _print(text: str) -> None:
    out.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command()
def init(home: HomeOpt = None) -> None:
    """Create an empty workspace (site.toml, database, store)."""
    ws = Workspace.init(_home(home))
    _print(
        f"workspace created in {ws.home}; edit {ws.site_path}, run 'rtexport site check', then add the first "
        "physicist with 'rtexport user add NAME --role physicist --name Family^Given'"
    )


@site_app.command("check")
def site_check(home: HomeOpt = None) -> None:
    """List every problem in site.toml, each with its path, and whether export is available."""
    from rtexport.services.site import site_status

    ws = _ws(home)
    status = site_status(ws)
    for p in status.problems:
        _print(f"{ws.site_path}: {p}")
    if status.site is not None:
        for reason in status.unavailable:
            _print(f"export unavailable: {reason}")
    if status.problems:
        fail(status.summary())
    _print(status.summary())
    if status.unavailable:
        raise typer.Exit(1)


@app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="Folder holding one CT series and one RT Structure Set.")],
    course: Annotated[str, typer.Option("--course", help="Course id.")],
    home: HomeOpt = None,
) -> None:
    """Import one CT series and one RT Structure Set from FOLDER as a course."""
    from rtexport.services.courses import import_course

    result = import_course(_ws(home), folder, course, _actor())
    c = result.course
    _print(
        f"imported course {c.id}: patient {c.patient.patient_id}, {len(c.slices)} CT slices, "
        f"{len(c.structures)} structures (External: {c.external.name if c.external else 'none'})"
    )
    for path, reason in result.skipped:
        _print(f"  skipped {path}: {reason}")


@course_app.command("list")
def course_list(home: HomeOpt = None) -> None:
    """List the imported courses."""
    from rtexport.services.courses import courses

    table = Table("course", "patient", "slices", "structures", "External", "imported")
    for c in courses(_ws(home)):
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
def plan_load(
    file: Annotated[Path, typer.Argument(help="Plan file (TOML, format = 1).")], home: HomeOpt = None
) -> None:
    """Load a plan file: a new plan, or a new revision when it changed."""
    from rtexport.model.plan import read_plan_file
    from rtexport.services.plans import load_plan

    _, text = read_plan_file(file)
    state, changed = load_plan(_ws(home), text, str(file), _actor())
    if changed:
        _print(f"plan {state.plan.id}: revision {state.revision.number} stored")
    else:
        _print(f"plan {state.plan.id}: unchanged (revision {state.revision.number})")


@plan_app.command("list")
def plan_list(home: HomeOpt = None) -> None:
    """List plans: id, label, revision, approval and dose state."""
    from rtexport.services.plans import plan_states

    table = Table("plan", "label", "course", "revision", "approval", "authorization", "dose")
    for s in plan_states(_ws(home)):
        table.add_row(
            s.plan.id,
            s.plan.label,
            s.plan.course,
            str(s.revision.number),
            f"APPROVED by {s.approval.user}" if s.approval else "UNAPPROVED",
            s.authorization.user if s.authorization else "-",
            s.dose_state,
        )
    out.print(table)


@plan_app.command("show")
def plan_show(plan: Annotated[str, typer.Argument(help="Plan id.")], home: HomeOpt = None) -> None:
    """Show one plan: state and beams."""
    s = _ws(home).plan_state(plan)
    _print(
        f"{s.plan.id} '{s.plan.label}' course {s.plan.course}, revision {s.revision.number} "
        f"of {s.revisions}, created {s.revision.created_at:%Y-%m-%d %H:%M} by {s.revision.created_by}"
    )
    _print(
        "approval: "
        + (f"APPROVED by {s.approval.user} at {s.approval.at:%Y-%m-%d %H:%M}" if s.approval else "UNAPPROVED")
    )
    if not s.approved:
        _print(
            "export authorization: "
            + (f"{s.authorization.user} at {s.authorization.at:%Y-%m-%d %H:%M}" if s.authorization else "none")
        )
    _print(f"dose: {s.dose_state}")
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
            f"{b.ssd_mm:g}",
            "-" if mu is None else f"{mu:.1f}",
            bolus,
        )
    out.print(table)


@plan_app.command("clone")
def plan_clone(
    plan: Annotated[str, typer.Argument(help="Plan id to copy.")],
    new_id: Annotated[str, typer.Argument(help="Id of the copy.")],
    label: Annotated[str | None, typer.Option("--label", help="Label of the copy (default: the same).")] = None,
    home: HomeOpt = None,
) -> None:
    """Make an unapproved copy of PLAN under NEW_ID."""
    from rtexport.services.plans import clone_plan

    s = clone_plan(_ws(home), plan, new_id, _actor(), label)
    _print(f"plan {s.plan.id}: unapproved copy of {plan}, revision 1")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[Role, typer.Option("--role", help="planner, or physicist (qualified).")],
    full_name: Annotated[
        str, typer.Option("--name", help="Full name as DICOM writes a person: Family^Given.", show_default=False)
    ] = "",
    by: Annotated[
        str | None, typer.Option("--by", help="The physicist who consents (needed for every user but the first).")
    ] = None,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Add a user. The first user is a physicist; later ones need a physicist's consent (--by and password).

    With --password-stdin, the new user's password is the first line, the consenting physicist's the second."""
    from rtexport.services.users import add_user

    ws = _ws(home)
    password = _password(password_stdin, f"Password for {name}")
    consent = None if by is None else (by, _password(password_stdin, f"Password of {by} (consent)"))
    user = add_user(ws, name, role, password, _actor(), full_name=full_name, consent=consent)
    _print(f"user {user.name} added ({user.role.value})")


@user_app.command("list")
def user_list(home: HomeOpt = None) -> None:
    """List users and their roles."""
    from rtexport.services.users import users

    for u in users(_ws(home)):
        _print(f"{u.name}\t{u.role.value}\t{u.full_name}")


def _signed_warning(warning: str | None) -> None:
    if warning:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


@app.command()
def approve(
    plan: Annotated[str, typer.Argument(help="Plan id.")],
    user: Annotated[str, typer.Option("--user", help="The approving physicist.")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Approve PLAN's current revision (physicists only; needs current dose)."""
    from rtexport.services.approval import approve as approve_plan

    with err.status("approving and preparing the export objects ..."):
        signed = approve_plan(_ws(home), plan, (user, _password(password_stdin)), _actor())
    s = signed.state
    assert s.approval is not None
    _print(f"plan {plan} revision {s.revision.number} APPROVED by {s.approval.user} at {s.approval.at}")
    _signed_warning(signed.warning)


@app.command()
def authorize(
    plan: Annotated[str, typer.Argument(help="Plan id.")],
    user: Annotated[str, typer.Option("--user", help="The authorizing physicist.")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Authorize export of an unapproved PLAN's current revision (physicists only)."""
    from rtexport.services.approval import authorize as authorize_plan

    s = authorize_plan(_ws(home), plan, (user, _password(password_stdin)), _actor()).state
    assert s.authorization is not None
    _print(f"export of plan {plan} revision {s.revision.number} authorized by {s.authorization.user}")


@app.command()
def audit(
    plan: Annotated[str | None, typer.Option("--plan", help="Only this plan's records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every record as JSON.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Prove the log's hash chain, or name the first record not as written.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Show the append-only audit log (or, with --verify, prove that nothing in it was changed or removed)."""
    if verify:
        check = _ws(home).audit_log.verify()
        for problem in check.problems:
            _print(f"BROKEN: {problem}")
        if not check.ok:
            where = f"record {check.first_broken}" if check.first_broken is not None else "its protection"
            fail(f"the audit log is not as rtexport wrote it: first broken at {where}")
        _print(f"audit log intact: {check.records} record(s); last record {check.last_id}, sha256 {check.head}")
        return
    entries = _ws(home).audit_log.entries(plan)
    if as_json:
        out.print_json(json.dumps(entries))
        return
    table = Table("#", "at", "actor", "os user", "action", "plan", "rev", "outcome", "detail")
    table.columns[-1].overflow = "fold"
    for e in entries:
        table.add_row(
            str(e["id"]),
            e["at"],
            e["actor"],
            e["os_user"],
            e["action"],
            e["plan_id"] or "",
            "" if e["revision"] is None else str(e["revision"]),
            e["outcome"],
            json.dumps(e["detail"]),
        )
    out.print(table)


@app.command()
def verify(home: HomeOpt = None) -> None:
    """Check every stored file the workspace references (CT images, structure sets, dose arrays, built objects)
    against its SHA-256; list each missing or damaged one with what references it."""
    from rtexport.services.verify import verify_workspace

    with err.status("hashing the stored files ..."):
        report = verify_workspace(_ws(home), _actor())
    for problem in report.problems:
        _print(f"{problem.state.upper()}: {problem.describe()}")
    if not report.ok:
        fail(report.summary())
    _print(report.summary())


@app.command()
def dose(
    plan: Annotated[str, typer.Argument(help="Plan id.")],
    grid_mm: Annotated[float | None, typer.Option("--grid-mm", help="Dose grid spacing in mm.")] = None,
    home: HomeOpt = None,
) -> None:
    """Compute and store dose for PLAN's current revision (one grid per beam, and their sum)."""
    from rtexport.services.dose import compute_dose

    with err.status(f"computing dose for {plan} ..."):
        result = compute_dose(_ws(home), plan, _actor(), grid_mm)
    state = result.state
    assert state.dose is not None
    table = Table("beam", "MU/fx", "dose/fx at norm. point (Gy)", "normalization point (mm)")
    for b in state.dose.beams:
        table.add_row(
            b.beam_name,
            f"{b.mu_per_fraction:.1f}",
            f"{b.dose_per_fraction_gy:.3f}",
            ", ".join(f"{v:.1f}" for v in b.normalization_point_mm),
        )
    out.print(table)
    g = state.dose.plan.load()
    _print(
        f"plan dose: max {float(g.gy.max()):.2f} Gy on a {' x '.join(map(str, g.geometry.shape[::-1]))} "
        f"grid of {g.geometry.spacing_mm[0]:g} mm (revision {state.revision.number})"
    )
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")


ItemsOpt = Annotated[str, typer.Option("--items", help="Comma-separated: ct,rtstruct,rtplan,dose-plan,dose-beam.")]
ServerOpt = Annotated[str | None, typer.Option("--server", help="A DICOM server from site.toml, by name.")]
AetOpt = Annotated[str | None, typer.Option("--aet", help="Custom server: called AE title.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Custom server: host.")]
PortOpt = Annotated[int | None, typer.Option("--port", help="Custom server: port.", min=1, max=65535)]
TlsOpt = Annotated[Path | None, typer.Option("--tls-ca", help="Custom server: use TLS, verifying with this CA file.")]


class _BarProgress:
    """Export progress as a rich progress bar, with one line per object that did not simply arrive."""

    def __init__(self, bar: Bar, label: str) -> None:
        self.bar = bar
        self.label = label
        self.task = bar.add_task(label, total=None)
        self.lines: list[str] = []

    def start(self, prepared: PreparedExport) -> None:
        self.bar.update(self.task, total=prepared.total_bytes)

    def done(self, event: ProgressEvent) -> None:
        self.bar.advance(self.task, event.obj.size)
        status = "" if event.status is None else f" 0x{event.status:04X}"
        self.lines.append(f"{event.outcome:<8} {event.obj.filename}{status} {event.meaning}".rstrip())


def _bar() -> Bar:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command("export")
def export(
    plan: Annotated[str, typer.Argument(help="Plan id.")],
    to: Annotated[Path | None, typer.Option("--to", help="Folder (default: the site's export folder).")] = None,
    items: ItemsOpt = "ct,rtstruct,rtplan,dose-plan,dose-beam",
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    commit: Annotated[bool, typer.Option("--commit", help="Ask the server to commit storage (push model).")] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Record this rtexport user as the exporter (asks for their password)."),
    ] = None,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Export PLAN's DICOM objects to a folder, or to a DICOM server (C-STORE)."""
    from rtexport.services.export import export_plan, parse_items, resolve_destination
    from rtexport.services.users import authenticate

    ws = _ws(home)
    try:
        chosen = parse_items(items)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--items") from e
    actor = _actor()
    if user is not None:
        actor = actor.as_user(authenticate(ws, user, _password(password_stdin), "export", actor).name)
    destination = resolve_destination(
        ws, ws.site(), folder=to, server=server, aet=aet, host=host, port=port, tls_ca=tls_ca
    )
    with _bar() as bar:
        progress = _BarProgress(bar, f"exporting to {destination}")
        report = export_plan(ws, plan, chosen, destination, actor, progress, commit=commit)
    _summary(report)
    if report.sent is not None:
        for line in progress.lines:
            _print(line)
        _print(report.message())
        if not report.ok:
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
    """Test a DICOM server with C-ECHO."""
    from rtexport.services.export import Destination, check_server, resolve_destination

    ws = _ws(home)
    if server is None and aet is None and host is None and port is None:
        raise typer.BadParameter("give --server NAME or --aet/--host/--port")
    dest = resolve_destination(ws, ws.site(), server=server, aet=aet, host=host, port=port, tls_ca=tls_ca)
    assert isinstance(dest, Destination)
    _print(check_server(ws, dest, _actor()))


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    cert: Annotated[Path | None, typer.Option("--cert", help="TLS certificate (PEM): serve HTTPS.")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="TLS private key (PEM) of --cert.")] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Serve a non-loopback address over plain HTTP anyway.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Serve the web page (plans, pictures, DVH, the Export block). Beyond loopback, only over TLS."""
    from rtexport.web.app import serve as run

    ws = _ws(home)
    ws.close()

    def warn(text: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    run(ws.home, host=host, port=port, cert=cert, key=key, insecure_http=insecure_http, warn=warn)


@app.command()
def demo(
    home: Annotated[Path, typer.Option("--home", help="Demo workspace folder (replaced on each run).")] = Path(
        "rtexport-demo"
    ),
) -> None:
    """Build the demo: phantom course, site, users, two-beam plan; compute dose; authorize; export everything."""
    from rtexport.services.demo import run_demo

    with _bar() as bar:
        result = run_demo(home, step=lambda s: _print(f"- {s}"), progress=_BarProgress(bar, "exporting"))
    assert result.state.dose is not None
    for b in result.state.dose.beams:
        _print(f"    beam {b.beam_name}: {b.mu_per_fraction:.1f} MU/fraction")
    _summary(result.export)
    _print(f"demo workspace: {result.workspace.home}  (try: rtexport --home {result.workspace.home} plan show CW-E1)")
    result.workspace.close()


def _summary(report: ExportReport) -> None:
    """A table of what was exported, then each new object's SOP Instance UID on a line of its own (never wrapped,
    so it can be copied whole)."""
    from rtexport.export.objects import ObjectKind

    prep = report.prepared
    state = prep.state
    table = Table(
        "object",
        "files",
        "MB",
        title=f"export of {state.plan.id} revision "
        f"{state.revision.number} ({'APPROVED' if state.approved else 'UNAPPROVED'}) to {report.destination}",
    )
    by_kind: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for o in prep.objects:
        name = o.description if o.kind is not ObjectKind.CT else "CT Images"
        by_kind.setdefault(name, []).append(o.sop_instance_uid)
        sizes[name] = sizes.get(name, 0) + o.size
    for name, uids in by_kind.items():
        table.add_row(name, str(len(uids)), f"{sizes[name] / 1e6:.2f}")
    out.print(table)
    for name, uids in by_kind.items():
        if len(uids) == 1:
            _print(f"{name}: {uids[0]}")
    if report.written is not None:
        _print(f"{report.message()}; {prep.total_bytes / 1e6:.1f} MB in all")
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except GateError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except InputError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except RTExportError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1)
