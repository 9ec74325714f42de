"""Import from the page: the folders under the site's import roots and the receiver's incoming sets, each imported
through the service of ``rtexport import`` (the same checks and messages, all or nothing); and an archive's studies,
found (C-FIND) and retrieved (C-MOVE) into the receiver through the services of ``rtexport query`` and
``rtexport retrieve``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rtexport.errors import ConfigError, CourseImportError, InputError, SendError
from rtexport.services.importing import import_folder, import_roots, scan_roots
from rtexport.services.incoming import import_incoming, incoming_sets
from rtexport.services.query import COLUMN_NAMES, COLUMNS, query, query_servers, retrieve
from rtexport.services.workspaces import Workspace
from rtexport.web.common import WS, Csrf, UserDep, actor_of, form_message, page, take_form_message

router = APIRouter()


def _roots(ws: Workspace) -> tuple[list[str], str]:
    try:
        return [str(r) for r in import_roots(ws)], ""
    except ConfigError as e:
        return [], str(e).split("\n")[0]


def _import_page(request: Request, ws: Workspace, **found: Any) -> HTMLResponse:
    roots, problem = _roots(ws)
    folders = scan_roots(ws) if roots else []
    try:
        servers, receiving = query_servers(ws), ws.site().dicom.receiver is not None
    except ConfigError:  # the folders' section names the broken site file
        servers, receiving = [], False
    return page(
        request,
        "import.html",
        roots=roots,
        problem=problem,
        folders=folders,
        incoming=incoming_sets(ws),
        servers=servers,
        receiving=receiving,
        message=take_form_message(request),
        **found,
    )


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, ws: WS, user: UserDep) -> HTMLResponse:
    return _import_page(request, ws)


@router.post("/import/query", dependencies=[Csrf], response_class=HTMLResponse)
def query_archive(
    request: Request,
    ws: WS,
    user: UserDep,
    server: Annotated[str, Form()],
    level: Annotated[str, Form()] = "study",
    patient_id: Annotated[str, Form()] = "",
    patient_name: Annotated[str, Form()] = "",
    study_uid: Annotated[str, Form()] = "",
) -> Response:
    """The archive's patients, studies or series matching the keys given (a POST: patient names stay out of URLs)."""
    given = (("PatientID", patient_id), ("PatientName", patient_name), ("StudyInstanceUID", study_uid))
    keys = {k: v.strip() for k, v in given if v.strip()}
    try:
        found = query(ws, server, level, actor_of(user), keys)
    except (InputError, SendError, ConfigError) as e:
        return _refused(request, "query", str(e))
    columns = [(k, COLUMN_NAMES[k]) for k in COLUMNS[level.lower()]]
    return _import_page(request, ws, queried=server, level=level.lower(), asked=keys, found=found, columns=columns)


@router.post("/import/retrieve", dependencies=[Csrf])
def retrieve_study(
    request: Request,
    ws: WS,
    user: UserDep,
    server: Annotated[str, Form()],
    study_uid: Annotated[str, Form()],
) -> Response:
    """Move the study into the receiver; it then waits in the incoming sets below, for import."""
    try:
        got = retrieve(ws, server, study_uid.strip(), actor_of(user))
    except (InputError, SendError, ConfigError) as e:
        return _refused(request, "query", str(e))
    m = got.move
    text = f"{server} sent {m.completed} instance(s), {m.failed} failed, {m.warning} with a warning"
    if m.ok:
        form_message(request, "import", "ok", f"{text}. The study waits below, under From the DICOM receiver.")
        return RedirectResponse("/import#import-incoming", status_code=303)
    return _refused(request, "query", f"{text}: the retrieve is incomplete; retrieve it again for the rest.")


def _refused(request: Request, form: str, text: str) -> Response:
    """Back to the import page, the message beside the form that was used (``import`` or ``query``)."""
    form_message(request, form, "error", text)
    return RedirectResponse(f"/import#{form}-message", status_code=303)


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
        return _refused(request, "import", str(e))
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
        return _refused(request, "import", str(e))
    c = result.course
    return _imported(request, c.id, len(c.slices), len(c.structures), len(result.skipped))
