"""What every router of the page shares: the templates, one workspace per request, the logged-in user, pages
and errors, and the message shown next to the form that was used."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from rtexport.errors import PlanError
from rtexport.model.display import dicom_date, local_time, person
from rtexport.model.people import Actor, User
from rtexport.model.state import PlanState
from rtexport.services.plans import plan_state
from rtexport.services.workspaces import Workspace, open_workspace
from rtexport.web.auth import check_csrf, csrf_token, current_user, take_flashes

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(person=person, local=local_time, dicom_date=dicom_date, fromiso=datetime.fromisoformat)


def workspace(request: Request) -> Iterator[Workspace]:
    """One workspace (one SQLite connection) per request."""
    ws = open_workspace(request.app.state.home)
    try:
        yield ws
    finally:
        ws.close()


WS = Annotated[Workspace, Depends(workspace)]
UserDep = Annotated[User, Depends(current_user)]
Csrf = Depends(check_csrf)


def actor_of(user: User) -> Actor:
    return Actor.here("web", user.name)


# The services name the command a refusal came from ("authorize: wrong password"), as the CLI prints it; the page
# shows the message beside the form that was used, where the prefix only adds noise.
_COMMAND_PREFIX = re.compile(r"^(?:login|authorize|approve|export|export-server|echo|report): ")


def plain(message: str) -> str:
    """A service's message without the command prefix the CLI shows."""
    return _COMMAND_PREFIX.sub("", message, count=1)


def error(status: int, message: str, findings: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"error": plain(message), "findings": findings or []}, status_code=status)


def wants_html(request: Request) -> bool:
    """A browser navigating (not the page's own fetch, which asks for JSON)."""
    return "text/html" in request.headers.get("accept", "")


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    base = {"user": request.session.get("user"), "role": request.session.get("role"), "csrf": csrf_token(request)}
    return templates.TemplateResponse(
        request, template, {**base, "flashes": take_flashes(request), **context}, status_code=status
    )


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """An error as a page (no session needed: a 500 is rendered outside the session middleware)."""
    context: dict[str, Any] = {"user": None, "role": None, "csrf": "", "flashes": [], "title": title}
    context["message"] = message
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


def form_message(request: Request, form: str, kind: str, text: str) -> None:
    """A message to show next to the form that was used (after the redirect back to the page)."""
    request.session["form_message"] = [form, kind, plain(text)]


def take_form_message(request: Request) -> dict[str, str] | None:
    found = request.session.pop("form_message", None)
    if not isinstance(found, list) or len(found) != 3:
        return None
    return {"form": str(found[0]), "kind": str(found[1]), "text": str(found[2])}


def known_plan(ws: Workspace, plan_id: str) -> PlanState:
    """The plan's state; 404 for a plan the workspace does not have."""
    try:
        return plan_state(ws, plan_id)
    except PlanError as e:
        raise HTTPException(404, str(e)) from e
