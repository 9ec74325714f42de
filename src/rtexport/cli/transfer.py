"""``export``, ``echo``, ``serve`` and ``demo``: DICOM objects out to a folder or a server, the web page, the
built-in demo."""

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
    say,
    show,
    table,
    warn,
    ws,
)
from rtexport.cli.network import TraceOpt, TracePatientOpt, traced

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

    from rtexport.services.export import ExportReport, PreparedExport, ProgressEvent

LOG_LEVEL = "info"  # the web server's (its requests); the root command's --log-level, when given

ItemsOpt = Annotated[
    str,
    typer.Option("--items", metavar="ITEMS", help="Comma-separated: ct,rtstruct,rtplan,dose-plan,dose-beam."),
]
ServerOpt = Annotated[
    str | None, typer.Option("--server", metavar="NAME", help="A DICOM server from site.toml, by name.")
]
AetOpt = Annotated[str | None, typer.Option("--aet", metavar="AE_TITLE", help="Custom server: called AE title.")]
HostOpt = Annotated[str | None, typer.Option("--host", metavar="HOST", help="Custom server: host.")]
PortOpt = Annotated[int | None, typer.Option("--port", metavar="PORT", help="Custom server: port.", min=1, max=65535)]
TlsOpt = Annotated[
    Path | None,
    typer.Option("--tls-ca", metavar="FILE", help="Custom server: use TLS, verifying with this CA file."),
]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option("--tls-cert", metavar="FILE", help="Custom server: our TLS client certificate (PEM), with --tls-key."),
]
TlsKeyOpt = Annotated[
    Path | None, typer.Option("--tls-key", metavar="FILE", help="Custom server: the private key of --tls-cert.")
]


class BarProgress:
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


def progress_bar() -> Bar:
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
        console=console(stderr=True),
        transient=True,
    )


@app.command("export", cls=Command)
def export(
    plan: PlanArg,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", metavar="DIR", help="Folder (default: the site's export folder); only its last part is created."
        ),
    ] = None,
    items: ItemsOpt = "ct,rtstruct,rtplan,dose-plan,dose-beam",
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    commit: Annotated[bool, typer.Option("--commit", help="Ask the server to commit storage (push model).")] = False,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", metavar="NAME", help="Record this rtexport user as the exporter (asks for their password)."
        ),
    ] = None,
    password_stdin: PasswordStdin = False,
    trace: TraceOpt = None,
    trace_patient_data: TracePatientOpt = False,
    home: HomeOpt = None,
) -> None:
    """Export PLAN's DICOM objects to a folder, or to a DICOM server (C-STORE)."""
    from rtexport.services.export import finish_export, parse_items
    from rtexport.services.targets import Target, begin_export_to
    from rtexport.services.users import authenticate

    workspace = ws(home)
    try:
        chosen = parse_items(items)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--items") from e
    who = actor()
    if user is not None:
        who = who.as_user(authenticate(workspace, user, password(password_stdin), "export", who).name)
    target = Target(folder=to, server=server, aet=aet, host=host, port=port, tls_ca=tls_ca, tls_cert=tls_cert,
                    tls_key=tls_key)  # fmt: skip
    run = begin_export_to(workspace, plan, chosen, target, who, commit=commit)
    with traced(trace, trace_patient_data), progress_bar() as bar:
        progress = BarProgress(bar, f"exporting to {run.destination}")
        result = finish_export(workspace, run, progress)
    summary(result)
    if result.sent is not None:
        for line in progress.lines:
            say(line)
        say(result.message())
        if not result.ok:
            if not result.sent.all_stored:
                fail("not every instance was stored; run the same export again to send the rest", 3)
            fail("every instance was stored, but the server did not commit to keeping all of them (see above)", 3)


@app.command(cls=Command)
def echo(
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    trace: TraceOpt = None,
    trace_patient_data: TracePatientOpt = False,
    home: HomeOpt = None,
) -> None:
    """Test a DICOM server with C-ECHO."""
    from rtexport.services.targets import Target, echo_to

    if server is None and aet is None and host is None and port is None:
        raise typer.BadParameter("give --server NAME or --aet/--host/--port")
    target = Target(server=server, aet=aet, host=host, port=port, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    with traced(trace, trace_patient_data):
        say(echo_to(ws(home), target, actor()))


@app.command(cls=Command)
def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = 8000,
    cert: Annotated[
        Path | None, typer.Option("--cert", metavar="FILE", help="TLS certificate (PEM): serve HTTPS.")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", metavar="FILE", help="TLS private key (PEM) of --cert.")] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Serve a non-loopback address over plain HTTP anyway.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Serve the web page (plans, pictures, DVH, reports, the Export block). Beyond loopback, only over TLS.
    With dicom.receiver in site.toml, the DICOM receiver runs too. It logs each request (info);
    'rtexport --log-level LEVEL serve' sets another level."""
    from rtexport.services.incoming import background_receiver
    from rtexport.web.app import serve as run

    workspace = ws(home)
    with background_receiver(workspace) as receiving:
        if receiving is not None:
            say(str(receiving))
        run(
            workspace.home,
            host=host,
            port=port,
            cert=cert,
            key=key,
            insecure_http=insecure_http,
            warn=warn,
            log_level=LOG_LEVEL,
        )
    workspace.close()


@app.command(cls=Command)
def demo(
    home: Annotated[
        Path, typer.Option("--home", metavar="DIR", help="Demo workspace folder (replaced on each run).")
    ] = Path("rtexport-demo"),
) -> None:
    """Build the demo: phantom course, site, users, two-beam plan; compute dose; authorize; export everything."""
    from rtexport.services.demo import run_demo

    with progress_bar() as bar:
        result = run_demo(home, step=lambda s: say(f"- {s}"), progress=BarProgress(bar, "exporting"))
    for b in result.dose.beams:
        say(f"    beam {b.beam_name}: {b.mu_per_fraction:.1f} MU/fraction")
    summary(result.export)
    say(f"demo workspace: {result.workspace.home}  (try: rtexport --home {result.workspace.home} plan show CW-E1)")
    result.workspace.close()


def summary(report: ExportReport) -> None:
    """A table of what was exported, then each new object's SOP Instance UID on a line of its own (never wrapped,
    so it can be copied whole)."""
    prep = report.prepared
    state = prep.state
    t = table(
        "object",
        "files",
        "MB",
        title=f"export of {state.plan.id} revision "
        f"{state.revision.number} ({'APPROVED' if state.approved else 'UNAPPROVED'}) to {report.destination}",
    )
    by_kind: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for o in prep.objects:
        name = o.description if o.kind != "CT" else "CT Images"
        by_kind.setdefault(name, []).append(o.sop_instance_uid)
        sizes[name] = sizes.get(name, 0) + o.size
    for name, uids in by_kind.items():
        t.add_row(name, str(len(uids)), f"{sizes[name] / 1e6:.2f}")
    show(t)
    for name, uids in by_kind.items():
        if len(uids) == 1:
            say(f"{name}: {uids[0]}")
    if report.written is not None:
        say(f"{report.message()}; {prep.total_bytes / 1e6:.1f} MB in all")
    for warning in report.warnings:
        warn(warning)
