"""Export a plan's DICOM objects to a folder or to a DICOM server, and test a server with C-ECHO.

One path for both front ends: resolve the destination, gate (every reason at once, refusal audited), build (or
reuse) the objects, audit the intent, write or send, audit the outcome. The audit therefore names every export
that may have left the building, even one whose process was killed halfway.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from rtexport.errors import GateError, RTExportError, SendError
from rtexport.export.build import PreparedExport
from rtexport.export.gate import ALL_ITEMS, Item, parse_items
from rtexport.export.local import PlanIdentity, WriteReport, write_folder
from rtexport.export.objects import ExportObject
from rtexport.model.people import Actor
from rtexport.model.site import Site
from rtexport.net.dicomweb import check as check_web
from rtexport.net.dicomweb import stow
from rtexport.net.outcome import WebDestination
from rtexport.net.send import Destination, InstanceOutcome, InstanceResult, SendReport, echo, send_objects
from rtexport.services.building import (
    Prepared,
    export_block_reasons,
    export_objects,
    findings,
    prepare,
    prepare_objects,
)
from rtexport.services.destinations import (
    ExportDestination,
    FolderDestination,
    custom_servers_allowed,
    default_folder,
    export_roots,
    resolve_destination,
)
from rtexport.services.site import SiteStatus, site_status
from rtexport.workspace import Workspace

LOGGER = logging.getLogger(__name__)

__all__ = [
    "ALL_ITEMS",
    "Destination",
    "ExportDestination",
    "ExportObject",
    "ExportReport",
    "ExportRun",
    "FolderDestination",
    "Item",
    "Prepared",
    "PreparedExport",
    "Progress",
    "ProgressEvent",
    "begin_export",
    "check_server",
    "custom_servers_allowed",
    "default_folder",
    "export_block_reasons",
    "export_plan",
    "export_roots",
    "findings",
    "finish_export",
    "parse_items",
    "prepare",
    "prepare_objects",
    "resolve_destination",
]


@dataclass(frozen=True)
class ProgressEvent:
    """One object done: ``outcome`` is written / identical (folder) or stored / warning / failed / not sent."""

    obj: ExportObject
    outcome: str
    status: int | None = None
    meaning: str = ""


class Progress(Protocol):
    """What a front end shows while an export runs."""

    def start(self, prepared: PreparedExport) -> None: ...

    def done(self, event: ProgressEvent) -> None: ...


class _Silent:
    def start(self, prepared: PreparedExport) -> None:
        pass

    def done(self, event: ProgressEvent) -> None:
        pass


@dataclass(frozen=True)
class ExportReport:
    """What an export did: the objects, where they went, and the folder's or the server's report."""

    prepared: PreparedExport
    destination: ExportDestination
    written: WriteReport | None = None
    sent: SendReport[ExportObject] | None = None

    @property
    def ok(self) -> bool:
        return self.sent.ok if self.sent is not None else self.written is not None

    @property
    def warnings(self) -> list[str]:
        """What the user should know although the export succeeded (e.g. what else the folder holds)."""
        return list(self.written.warnings) if self.written is not None else []

    def message(self) -> str:
        """One paragraph for the user: what arrived, and what to do about what did not."""
        if self.written is not None:
            w = self.written
            text = f"{len(w.written)} file(s) written to {w.folder}"
            if w.identical:
                text += f"; {len(w.identical)} identical file(s) were already there"
            if w.removed_stale:
                text += f"; {len(w.removed_stale)} staging folder(s) of an interrupted earlier export removed"
            return text
        return "nothing was written or sent" if self.sent is None else self.sent.summary()


# -- export ---------------------------------------------------------------------------------------------------


def _where(destination: ExportDestination) -> str:
    if isinstance(destination, FolderDestination):
        return str(destination.path)
    if isinstance(destination, WebDestination):
        return destination.url
    return f"{destination.ae_title}@{destination.host}:{destination.port}"


@dataclass(frozen=True)
class ExportRun:
    """An export that passed the gate, with its objects built and its intent audited: ready to write or send."""

    prepared: PreparedExport
    destination: ExportDestination
    actor: Actor
    started: int  # the audit record of the intent
    commit: bool = False
    site: Site | None = field(default=None, compare=False, repr=False)  # as the export read it

    @property
    def action(self) -> str:
        return "export" if isinstance(self.destination, FolderDestination) else "export-server"

    @property
    def event(self) -> str:
        """The DICOM audit event (PS3.15 A.5.3) this export is an instance of."""
        return (
            "110106 Export" if isinstance(self.destination, FolderDestination) else "110104 DICOM Instances Transferred"
        )


def begin_export(
    ws: Workspace,
    plan_id: str,
    items: Collection[Item],
    destination: ExportDestination,
    actor: Actor,
    *,
    commit: bool = False,
    status: SiteStatus | None = None,
) -> ExportRun:
    """Gate (every reason at once; a refusal is audited and raised as :class:`GateError`), build or reuse the
    objects, and audit the intent. Nothing is written or sent yet. A refused export closes a folder the
    destination holds open; otherwise :func:`finish_export` does. ``status``: the site as read already."""
    try:
        return _begin(ws, plan_id, items, destination, actor, commit, status or site_status(ws))
    except BaseException:
        if isinstance(destination, FolderDestination):
            destination.close()
        raise


def _begin(
    ws: Workspace,
    plan_id: str,
    items: Collection[Item],
    destination: ExportDestination,
    actor: Actor,
    commit: bool,
    status: SiteStatus,
) -> ExportRun:
    state = ws.plan_state(plan_id)
    rev = state.revision.number
    chosen = [i.value for i in Item if i in items]
    action = "export" if isinstance(destination, FolderDestination) else "export-server"
    where = _where(destination)
    found = findings(ws, state, items, status=status)
    to_dimse = not isinstance(destination, FolderDestination | WebDestination)
    if commit and to_dimse and status.site is not None and status.site.dicom.commitment_port is None:
        found.append(  # refused before sending: no commitment report could ever come back
            "--commit: storage commitment needs dicom.commitment_port in site.toml (the port the server's "
            "commitment report comes back to); set it, or export without --commit"
        )
    if found or status.site is None:
        found = found or list(status.unavailable)
        ws.audit(actor, action, "refused", plan_id, rev, findings=found, items=chosen, destination=where)
        raise GateError(found)
    try:
        prepared = export_objects(ws, status.site, state, items, actor)
    except RTExportError as e:  # e.g. a stored object that can no longer be read
        ws.audit(actor, action, "failed", plan_id, rev, error=str(e), items=chosen, destination=where)
        raise
    started = ws.audit(actor, action, "started", plan_id, rev, destination=where, items=chosen, uids=prepared.uids())
    LOGGER.info("export of plan %s revision %d to %s: %d object(s)", plan_id, rev, where, len(prepared.objects))
    return ExportRun(prepared, destination, actor, started, commit, status.site)


def finish_export(ws: Workspace, run: ExportRun, progress: Progress | None = None) -> ExportReport:
    """Write or send what :func:`begin_export` prepared, and audit the outcome."""
    try:
        return _finish(ws, run, progress)
    finally:
        if isinstance(run.destination, FolderDestination):
            run.destination.close()


def _finish(ws: Workspace, run: ExportRun, progress: Progress | None) -> ExportReport:
    progress = progress or _Silent()
    prepared, destination, actor = run.prepared, run.destination, run.actor
    state = prepared.state
    plan_id, rev = state.plan.id, state.revision.number
    chosen = [i.value for i in prepared.items]
    where = _where(destination)
    site = run.site or site_status(ws).require()
    progress.start(prepared)
    common = {"destination": where, "items": chosen, "started": run.started, "event": run.event}
    try:
        if isinstance(destination, FolderDestination):
            course = ws.course(state.plan.course)
            written = write_folder(
                prepared.objects,
                destination.opened or destination.path,
                lambda o: progress.done(ProgressEvent(o, "written")),
                plan=PlanIdentity(course.patient.patient_id, state.plan.id),
            )
            report = ExportReport(prepared, destination, written=written)
        else:

            def sent_one(r: InstanceResult[ExportObject]) -> None:
                progress.done(ProgressEvent(r.obj, r.outcome.value, r.status, r.meaning))

            sent = (
                stow(prepared.objects, destination, progress=sent_one)
                if isinstance(destination, WebDestination)
                else send_objects(
                    prepared.objects,
                    destination,
                    site.dicom.local_ae_title,
                    progress=sent_one,
                    commit=run.commit,
                    commit_listen_port=site.dicom.commitment_port,
                    commit_listen_host=site.dicom.commitment_host,
                    deadline_s=site.dicom.send_deadline_s,
                    idle_s=site.dicom.send_idle_s,
                    associations=site.dicom.send_associations,
                )
            )
            report = ExportReport(prepared, destination, sent=sent)
    except RTExportError as e:
        ws.audit(actor, run.action, "failed", plan_id, rev, error=str(e), written=getattr(e, "written", []), **common)
        raise
    if report.written is not None:
        ws.audit(
            actor,
            run.action,
            "ok",
            plan_id,
            rev,
            written=len(report.written.written),
            identical=len(report.written.identical),
            warnings=report.written.warnings,
            removed_stale=report.written.removed_stale,
            uids=prepared.uids(),
            **common,
        )
    elif report.sent is not None:
        results = report.sent.results
        ws.audit(
            actor,
            run.action,
            "ok" if report.ok else "incomplete",
            plan_id,
            rev,
            calling_ae=site.dicom.local_ae_title,
            stored=[r.obj.sop_instance_uid for r in results if r.stored],
            not_stored={
                r.obj.sop_instance_uid: f"{r.outcome.value} {r.meaning}"
                for r in results
                if r.outcome not in (InstanceOutcome.STORED, InstanceOutcome.WARNING)
            },
            committed=None if report.sent.committed is None else list(report.sent.committed),
            **common,
        )
    return report


def export_plan(
    ws: Workspace,
    plan_id: str,
    items: Collection[Item],
    destination: ExportDestination,
    actor: Actor,
    progress: Progress | None = None,
    *,
    commit: bool = False,
) -> ExportReport:
    """Gate, build, then write to the folder or C-STORE to the server; audited before and after. Raises
    :class:`GateError` (audited) with every finding when refused."""
    return finish_export(ws, begin_export(ws, plan_id, items, destination, actor, commit=commit), progress)


def check_server(ws: Workspace, destination: Destination | WebDestination, actor: Actor) -> str:
    """C-ECHO the server (audited); the success message, or :class:`SendError` saying why and what to check."""
    status = site_status(ws)
    if status.site is None:
        ws.audit(actor, "echo", "refused", destination=str(destination), findings=list(status.unavailable))
        raise SendError(f"cannot test {destination}: " + "; ".join(status.unavailable))
    try:
        if isinstance(destination, WebDestination):
            check_web(destination)
        else:
            echo(destination, status.site.dicom.local_ae_title, timeout=10)
    except SendError as e:
        ws.audit(actor, "echo", "failed", destination=str(destination), error=str(e))
        raise
    ws.audit(actor, "echo", "ok", destination=str(destination))
    return f"{'DICOMweb' if isinstance(destination, WebDestination) else 'C-ECHO'} {destination}: success"
