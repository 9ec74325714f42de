"""Export and C-ECHO from what the user typed (a folder, a configured server, or a custom one): the site read
once, the destination resolved, and every refusal — a site that cannot export, a destination refused — audited
by this service before anything else happens; then the export service's gate, build, write or send."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from rtexport.errors import GateError, InputError
from rtexport.model.people import Actor, User
from rtexport.services.export import (
    Destination,
    ExportDestination,
    ExportReport,
    ExportRun,
    FolderDestination,
    Item,
    Progress,
    begin_export,
    check_server,
    finish_export,
    resolve_destination,
)
from rtexport.services.site import SiteStatus, site_status
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class Target:
    """Where the user asked to export (or test), as typed. ``within_roots``: a folder must lie inside the site's
    export roots (the web page); ``requester``: the page's user (custom servers only as the site allows);
    ``client``: the address the request came from (recorded in the audit); ``tls_*``: a custom server's TLS (the CA
    to verify it with, our client certificate and key)."""

    folder: str | Path | None = None
    server: str | None = None
    aet: str | None = None
    host: str | None = None
    port: int | str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    within_roots: bool = False
    requester: User | None = None
    client: str | None = None

    @property
    def typed(self) -> str:
        parts = [f"{k}={v}" for k, v in (("server", self.server), ("aet", self.aet), ("host", self.host)) if v]
        parts += [f"port={self.port}"] if self.port not in (None, "") else []
        return ", ".join(parts) or f"folder {self.folder if self.folder not in (None, '') else '(default)'}"


def _resolve(
    ws: Workspace, status: SiteStatus, target: Target, action: str, actor: Actor, plan_id: str | None
) -> ExportDestination:
    """The destination, or the refusal audited and raised (:class:`GateError` when the site cannot export,
    :class:`InputError` or :class:`NotAllowedError` when the destination is refused)."""
    if status.site is None:
        found = list(status.unavailable)
        ws.audit(actor, action, "refused", plan_id, findings=found, destination=target.typed, client=target.client)
        raise GateError(found)
    try:
        return resolve_destination(
            ws,
            status.site,
            folder=target.folder,
            server=target.server,
            aet=target.aet,
            host=target.host,
            port=target.port,
            tls_ca=target.tls_ca,
            tls_cert=target.tls_cert,
            tls_key=target.tls_key,
            within_roots=target.within_roots,
            requester=target.requester,
        )
    except InputError as e:
        ws.audit(actor, action, "refused", plan_id, reason=str(e), destination=target.typed, client=target.client)
        raise


def begin_export_to(
    ws: Workspace, plan_id: str, items: Collection[Item], target: Target, actor: Actor, *, commit: bool = False
) -> ExportRun:
    """Read the site once, resolve ``target`` and begin the export (gate, build, audit the intent); every
    refusal audited."""
    status = site_status(ws)
    folder = target.server is None and not any((target.aet, target.host, target.port not in (None, "")))
    action = "export" if folder else "export-server"
    ws.plan_state(plan_id)  # an unknown plan is refused as such, before anything is audited
    destination = _resolve(ws, status, target, action, actor, plan_id)
    return begin_export(ws, plan_id, items, destination, actor, commit=commit, status=status)


def export_to(
    ws: Workspace,
    plan_id: str,
    items: Collection[Item],
    target: Target,
    actor: Actor,
    progress: Progress | None = None,
    *,
    commit: bool = False,
) -> ExportReport:
    """:func:`begin_export_to`, then write or send (:func:`~rtexport.services.export.finish_export`)."""
    return finish_export(ws, begin_export_to(ws, plan_id, items, target, actor, commit=commit), progress)


def destination_of(ws: Workspace, target: Target, actor: Actor) -> ExportDestination:
    """Where ``target`` points (for showing it before an export starts); refusals audited."""
    return _resolve(ws, site_status(ws), target, "export", actor, None)


def echo_to(ws: Workspace, target: Target, actor: Actor) -> str:
    """C-ECHO the server ``target`` names (audited, refusals too); the success message."""
    if target.server is None and not any((target.aet, target.host, target.port not in (None, ""))):
        ws.audit(actor, "echo", "refused", reason="no server given", client=target.client)
        raise InputError("give --server NAME or --aet/--host/--port")
    destination = _resolve(ws, site_status(ws), target, "echo", actor, None)
    if isinstance(destination, FolderDestination):  # a target naming a server resolves to one
        raise InputError("a C-ECHO needs a server, not a folder")
    return check_server(ws, destination, actor)


__all__ = ["Destination", "Target", "begin_export_to", "destination_of", "echo_to", "export_to"]
