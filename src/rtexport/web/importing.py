"""Import from the page: the folders under the site's import roots and the receiver's incoming sets, each imported
through the service of ``rtexport import`` (the same checks and messages, all or nothing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rtexport.errors import ConfigError, CourseImportError, InputError
from rtexport.services.importing import import_folder, import_roots, scan_roots
from rtexport.services.incoming import import_incoming, incoming_sets
from rtexport.services.workspaces import Workspace
from rtexport.web.common import WS, Csrf, UserDep, actor_of, form_message, page, take_form_message

router = APIRouter()


def _roots(ws: Workspace) -> tuple[list[str], str]:
    try:
        return [str(r) for r in import_roots(ws)], ""
    except ConfigError as e:
        return [], str(e).split("\n")[0]


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, ws: WS, user: UserDep) -> HTMLResponse:
    roots, problem = _roots(ws)
    folders = scan_roots(ws) if roots else []
    return page(
        request,
        "import.html",
        roots=roots,
        problem=problem,
        folders=folders,
        incoming=incoming_sets(ws),
        message=take_form_message(request),
    )


def _imported(request: Request, course_id: str, slices: int, structures: int, skipped: int) -> Response:
    extra = f"; {skipped} other file(s) skipped" if skipped else ""
    text = f"Course {course_id} imported: {slices} CT slice(s), {structures} structure(s){extra}."
    form_message(request, "import", "ok", text)
    return RedirectResponse(f"/courses/{course_id}/plans/new", status_code=303)


@router.post("/import/folder", dependencies=[Csrf])
def import_from_folder(
    request: Request,
    ws: WS,
    user: UserDep,
    folder: Annotated[str, Form()],
    course_id: Annotated[str, Form()],
) -> Response:
    try:
        result = import_folder(ws, folder, course_id, actor_of(user))
    except (CourseImportError, InputError, ConfigError) as e:
        form_message(request, "import", "error", str(e))
        return RedirectResponse("/import#import-message", status_code=303)
    c = result.course
    return _imported(request, c.id, len(c.slices), len(c.structures), len(result.skipped))


@router.post("/import/incoming", dependencies=[Csrf])
def import_from_incoming(
    request: Request,
    ws: WS,
    user: UserDep,
    set_id: Annotated[str, Form()],
    course_id: Annotated[str, Form()] = "",
) -> Response:
    try:
        result = import_incoming(ws, set_id, actor_of(user), course_id.strip() or None)
    except (CourseImportError, InputError, ConfigError) as e:
        form_message(request, "import", "error", str(e))
        return RedirectResponse("/import#import-message", status_code=303)
    c = result.course
    return _imported(request, c.id, len(c.slices), len(c.structures), len(result.skipped))
