"""The DICOM node: ``receive`` (the Storage SCP in the foreground), ``incoming list|import|discard`` (what arrived),
``query`` and ``retrieve`` (C-FIND, C-MOVE from an archive of ``site.toml``), and the ``--trace`` options the
network commands share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer

from rtexport.cli.base import Command, HomeOpt, JsonOpt, _typer, actor, app, fail, print_json, say, show, table, when
from rtexport.cli.base import iso as parse_time
from rtexport.cli.base import ws as open_ws

incoming_app = _typer("Courses pushed to the receiver: list, import or discard them.")
app.add_typer(incoming_app, name="incoming")

TraceOpt = Annotated[
    Path | None,
    typer.Option(
        "--trace",
        metavar="FILE",
        help="Append a trace of every PDU and DIMSE message to FILE (patient data redacted).",
        show_default=False,
    ),
]
TracePatientOpt = Annotated[
    bool, typer.Option("--trace-patient-data", help="Keep patient data (names, IDs, dates) in the --trace file.")
]
ServerArg = Annotated[
    str, typer.Argument(metavar="SERVER", help="A DICOM server of site.toml, by name.", show_default=False)
]
SetArg = Annotated[
    str, typer.Argument(metavar="ID", help="Incoming set id (see 'rtexport incoming list').", show_default=False)
]
Level = Literal["patient", "study", "series"]


@contextlib.contextmanager
def traced(trace: Path | None, patient_data: bool) -> Iterator[None]:
    """The block's DICOM traffic traced into ``trace`` (nothing when None)."""
    if trace is None:
        if patient_data:
            raise typer.BadParameter("--trace-patient-data needs --trace FILE", param_hint="--trace-patient-data")
        yield
        return
    from rtexport.services.trace import network_trace

    with network_trace(trace, patient_data=patient_data):
        yield


@app.command(cls=Command)
def receive(
    port: Annotated[
        int | None,
        typer.Option(
            "--port", metavar="PORT", help="Listen on this port instead of dicom.receiver.port.", min=1, max=65535
        ),
    ] = None,
    trace: TraceOpt = None,
    trace_patient_data: TracePatientOpt = False,
    home: HomeOpt = None,
) -> None:
    """Run the DICOM receiver (dicom.receiver in site.toml) until Ctrl-C or SIGTERM.

    CT series and RT Structure Sets pushed to it appear in 'rtexport incoming list'."""
    import signal
    import threading

    from rtexport.services.incoming import incoming_sets, run_receiver

    workspace = open_ws(home)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with traced(trace, trace_patient_data):
        run_receiver(workspace, stop, lambda where: say(f"{where}; Ctrl-C stops"), port=port)
    waiting = incoming_sets(workspace)
    say(f"receiver stopped; {len(waiting)} incoming set(s) ('rtexport incoming list')")


@incoming_app.command("list", cls=Command)
def incoming_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List what arrived and is neither imported nor discarded, oldest first."""
    from rtexport.model.display import person
    from rtexport.services.incoming import incoming_sets

    sets = incoming_sets(open_ws(home))
    if as_json:
        print_json([
            {
                "id": s.id, "patient_id": s.patient_id, "patient_name": s.patient_name, "study_uid": s.study_uid,
                "series_uid": s.series_uid, "frame_uid": s.frame_uid,
                "structure_set": s.structure_set.sop_instance_uid if s.structure_set else None,
                "images": len(s.images), "missing": list(s.missing), "conflicts": list(s.conflicts),
                "complete": s.complete, "state": s.state, "received_at": parse_time(s.received_at).isoformat(),
            }
            for s in sets
        ])  # fmt: skip
        return
    if not sets:
        say("nothing has arrived (the receiver: 'rtexport receive'; an archive: 'rtexport retrieve')")
        return
    t = table("id", "patient", "patient id", "images", "structure set", "state", "received")
    for s in sets:
        t.add_row(s.id, person(s.patient_name), s.patient_id, str(len(s.images)),
                  "yes" if s.structure_set else "no", s.state, when(parse_time(s.received_at)))  # fmt: skip
    show(t)


@incoming_app.command("import", cls=Command)
def incoming_import(
    set_id: SetArg,
    course: Annotated[
        str | None, typer.Option("--course", metavar="COURSE", help="Course id (default: the set's id).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Import a complete incoming set as a course, with the same checks as 'rtexport import'."""
    from rtexport.services.incoming import import_incoming

    result = import_incoming(open_ws(home), set_id, actor(), course)
    c = result.course
    say(f"imported {set_id} as course {c.id}: {len(c.slices)} CT slices, {len(c.structures)} structures")


@incoming_app.command("discard", cls=Command)
def incoming_discard(set_id: SetArg, home: HomeOpt = None) -> None:
    """Drop an incoming set from the list (recorded in the audit log)."""
    from rtexport.services.incoming import discard_incoming

    n = discard_incoming(open_ws(home), set_id, actor())
    say(f"discarded {set_id}: {n} instance(s)")


@app.command("query", cls=Command)
def query_command(
    server: ServerArg,
    level: Annotated[Level, typer.Option("--level", metavar="LEVEL", help="patient, study or series.")] = "study",
    patient_id: Annotated[
        str | None, typer.Option("--patient-id", metavar="ID", help="Patient ID to match (wildcards * and ?).")
    ] = None,
    patient_name: Annotated[
        str | None, typer.Option("--patient-name", metavar="NAME", help="Patient's name to match (Family^Given*).")
    ] = None,
    study_uid: Annotated[
        str | None, typer.Option("--study-uid", metavar="UID", help="Study Instance UID (series in that study).")
    ] = None,
    as_json: JsonOpt = False,
    trace: TraceOpt = None,
    trace_patient_data: TracePatientOpt = False,
    home: HomeOpt = None,
) -> None:
    """Find patients, studies or series on an archive (C-FIND)."""
    from rtexport.services.query import COLUMNS, query

    keys = {k: v for k, v in (("PatientID", patient_id), ("PatientName", patient_name),
                              ("StudyInstanceUID", study_uid)) if v is not None}  # fmt: skip
    with traced(trace, trace_patient_data):
        matches = query(open_ws(home), server, level, actor(), keys)
    if as_json:
        print_json(matches)
        return
    if not matches:
        say(f"no {level} on {server} matches")
        return
    t = table(*COLUMNS[level], title=f"{len(matches)} {level} match(es) on {server}")
    for m in matches:
        t.add_row(*(m.get(k, "") for k in COLUMNS[level]))
    show(t)
    if level == "study":
        for m in matches:  # whole, to be copied into 'rtexport retrieve'
            say(m.get("StudyInstanceUID", ""))


@app.command(cls=Command)
def retrieve(
    server: ServerArg,
    study_uid: Annotated[str, typer.Argument(metavar="STUDY_UID", help="Study Instance UID.", show_default=False)],
    trace: TraceOpt = None,
    trace_patient_data: TracePatientOpt = False,
    home: HomeOpt = None,
) -> None:
    """Retrieve a study from an archive into the receiver (C-MOVE); it then appears in 'rtexport incoming list'."""
    from rtexport.services.query import retrieve as move

    with traced(trace, trace_patient_data):
        got = move(open_ws(home), server, study_uid, actor())
    m = got.move
    say(f"{server} sent {m.completed} instance(s), {m.failed} failed, {m.warning} with a warning")
    if not m.ok:
        fail(f"the retrieve from {server} is incomplete (status 0x{m.status:04X}); run it again for the rest", 3)
    say("see 'rtexport incoming list'")
