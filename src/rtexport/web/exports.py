"""The Export block: export to a folder inside the site's export roots or to a DICOM server (gated and built in
the request, written or sent in a background job the page polls), and C-ECHO. Every refusal is the services'
and audited by them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import JSONResponse

from rtexport.errors import GateError, InputError, NotAllowedError, RTExportError, SendError
from rtexport.model.people import User
from rtexport.model.site import Site
from rtexport.services.destinations import (
    custom_server_message,
    custom_server_missing,
    export_folders,
    make_export_folder,
)
from rtexport.services.export import Item
from rtexport.services.site import site_status
from rtexport.services.targets import Target, begin_export_to, echo_to
from rtexport.services.workspaces import Workspace
from rtexport.web.auth import client_of
from rtexport.web.common import WS, Csrf, UserDep, actor_of, error, known_plan, plain
from rtexport.web.jobs import Jobs, export_work, leaving_notice

router = APIRouter()


def _items(values: list[str]) -> tuple[Item, ...]:
    valid = {i.value: i for i in Item}
    bad = [v for v in values if v not in valid]
    if bad:
        raise HTTPException(422, f"unknown export item(s): {', '.join(bad)}")
    return tuple(i for i in Item if i.value in values)


def _start(
    request: Request, ws: Workspace, user: User, plan_id: str, items: tuple[Item, ...], target: Target
) -> JSONResponse:
    """Gate and build in the request (a refusal answers at once), then write or send in a background job."""
    known_plan(ws, plan_id)
    try:
        run = begin_export_to(ws, plan_id, items, target, actor_of(user))
    except GateError as e:
        return error(409, "export refused", e.findings)
    except InputError as e:
        return error(403 if isinstance(e, NotAllowedError) else 422, str(e))
    except RTExportError as e:
        return error(409, str(e))
    jobs: Jobs = request.app.state.jobs
    kind = "folder" if run.action == "export" else "server"
    work = export_work(request.app.state.home, run)
    job = jobs.start(user.name, plan_id, kind, str(run.destination), work, leaving_notice(run.prepared))
    return JSONResponse({"job": job.id}, status_code=202)


@router.post("/plans/{plan_id}/export/folder", dependencies=[Csrf])
def export_folder(
    request: Request,
    ws: WS,
    user: UserDep,
    plan_id: str,
    folder: Annotated[str, Form()],
    items: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> JSONResponse:
    target = Target(folder=folder, within_roots=True, requester=user, client=client_of(request))
    return _start(request, ws, user, plan_id, _items(items), target)


def _unfilled(server: str, aet: str, host: str, port: str) -> JSONResponse | None:
    """A 422 naming the empty fields when the form chose a custom server (or none) and left fields empty."""
    if server and server != "custom":
        return None
    missing = custom_server_missing(aet, host, port)
    if not missing:
        return None
    if not server:
        message = "choose a server of the site configuration, or a custom server with its AE title, host and port"
    else:
        message = custom_server_message(missing)
    return JSONResponse({"error": message, "findings": [], "fields": missing}, status_code=422)


@router.post("/plans/{plan_id}/export/server", dependencies=[Csrf])
def export_server(
    request: Request,
    ws: WS,
    user: UserDep,
    plan_id: str,
    server: Annotated[str, Form()] = "",
    aet: Annotated[str, Form()] = "",
    host: Annotated[str, Form()] = "",
    port: Annotated[str, Form()] = "",
    items: Annotated[list[str], Form()] = [],  # noqa: B006
) -> JSONResponse:
    chosen = _items(items)
    if (unfilled := _unfilled(server, aet, host, port)) is not None:
        return unfilled
    server = "" if server == "custom" else server
    client = client_of(request)
    target = Target(
        server=server or None, aet=aet, host=host, port=port, within_roots=True, requester=user, client=client
    )
    return _start(request, ws, user, plan_id, chosen, target)


@router.post("/echo", dependencies=[Csrf])
def echo_server(
    request: Request,
    ws: WS,
    user: UserDep,
    server: Annotated[str, Form()] = "",
    aet: Annotated[str, Form()] = "",
    host: Annotated[str, Form()] = "",
    port: Annotated[str, Form()] = "",
) -> JSONResponse:
    if (unfilled := _unfilled(server, aet, host, port)) is not None:
        return unfilled
    server = "" if server == "custom" else server
    target = Target(server=server or None, aet=aet, host=host, port=port, requester=user, client=client_of(request))
    try:
        message = echo_to(ws, target, actor_of(user))
    except GateError as e:
        return error(409, "; ".join(e.findings))  # the site cannot export
    except InputError as e:
        return error(403 if isinstance(e, NotAllowedError) else 422, str(e))
    except SendError as e:
        return JSONResponse({"ok": False, "message": plain(str(e))})
    return JSONResponse({"ok": True, "message": message})


@router.get("/jobs/{job_id}")
def job_status(request: Request, user: UserDep, job_id: str) -> JSONResponse:
    jobs: Jobs = request.app.state.jobs
    job = jobs.get(job_id)
    if job is None or job.owner != user.name:
        return error(404, "no such export job (jobs are kept for an hour)")
    return JSONResponse(job.snapshot())


def _folder_answer(ws: Workspace, call: Callable[[Site], JSONResponse]) -> JSONResponse:
    site = site_status(ws).site
    if site is None:
        return error(409, "the site configuration cannot be read: " + "; ".join(site_status(ws).unavailable))
    try:
        return call(site)
    except InputError as e:
        return error(403 if isinstance(e, NotAllowedError) else 422, str(e))
    except RTExportError as e:
        return error(409, str(e))


@router.get("/export-folders")
def list_folders(ws: WS, user: UserDep, path: str = "") -> JSONResponse:
    """The folder picker: the sub-folders of ``path`` inside the site's export roots (none given: the roots)."""

    def listing(site: Site) -> JSONResponse:
        found = export_folders(ws, site, path)
        return JSONResponse({"path": found.path, "parent": found.parent, "folders": found.folders})

    return _folder_answer(ws, listing)


@router.post("/export-folders", dependencies=[Csrf])
def new_folder(
    ws: WS, user: UserDep, parent: Annotated[str, Form()] = "", name: Annotated[str, Form()] = ""
) -> JSONResponse:
    """Make a sub-folder in the folder picker (inside the export roots); its path."""
    return _folder_answer(ws, lambda site: JSONResponse({"path": make_export_folder(ws, site, parent, name)}, 201))
