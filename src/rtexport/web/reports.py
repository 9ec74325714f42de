"""Plan reports on the page: make one (the page's script gets JSON, a plain form the PDF), fetch one."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from rtexport.errors import InputError, RTExportError
from rtexport.model.display import local_time
from rtexport.services.report import make_report, report_filename, report_pdf
from rtexport.web.common import WS, Csrf, UserDep, actor_of, error, form_message, known_plan, wants_json

router = APIRouter()


@router.post("/plans/{plan_id}/reports", dependencies=[Csrf])
def make_plan_report(request: Request, ws: WS, user: UserDep, plan_id: str) -> Response:
    """Make the plan's report: the page's script gets JSON and downloads it; a plain form is sent the PDF."""
    known_plan(ws, plan_id)
    try:
        made = make_report(ws, plan_id, actor_of(user))
    except RTExportError as e:
        if wants_json(request):
            return error(409, str(e))
        form_message(request, "reports", "error", str(e))
        return RedirectResponse(f"/plans/{plan_id}#reports", status_code=303)
    r = made.stored
    url = f"/plans/{plan_id}/reports/{r.id}.pdf"
    if wants_json(request):
        return JSONResponse(
            {
                "id": r.id,
                "url": url,
                "filename": made.filename,
                "revision": r.revision,
                "approved": r.approved,
                "made_at": local_time(r.made_at),
                "made_by": r.made_by,
                "size": r.size,
            },
            status_code=201,
        )
    return RedirectResponse(url, status_code=303)


@router.get("/plans/{plan_id}/reports/{report_id}.pdf")
def report_file(ws: WS, user: UserDep, plan_id: str, report_id: int) -> Response:
    try:
        stored, pdf = report_pdf(ws, plan_id, report_id)
    except InputError as e:
        raise HTTPException(404, str(e)) from e
    disposition = f'attachment; filename="{report_filename(stored)}"'
    return Response(pdf, media_type="application/pdf", headers={"Content-Disposition": disposition})
