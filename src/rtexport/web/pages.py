"""The pages: courses and plans, one plan (the plan view, its pictures and the Export block), slice pictures."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from markupsafe import Markup

from rtexport.errors import InputError
from rtexport.services.courses import courses as all_courses
from rtexport.services.export import custom_servers_allowed, default_folder, export_block_reasons, export_roots
from rtexport.services.pictures import VIEWS, Pictures
from rtexport.services.plans import plan_states
from rtexport.services.planview import PlanView, view_of
from rtexport.services.report import plan_reports
from rtexport.services.site import site_status
from rtexport.web.common import HERE, WS, UserDep, known_plan, page, take_form_message

router = APIRouter()


def pictures(request: Request) -> Pictures:
    found: Pictures = request.app.state.pictures
    return found


@router.get("/", response_class=HTMLResponse)
def courses(request: Request, ws: WS, user: UserDep) -> HTMLResponse:
    states = plan_states(ws)
    rows = [{"course": c, "plans": [s for s in states if s.plan.course == c.id]} for c in all_courses(ws)]
    return page(request, "courses.html", rows=rows, unavailable=list(site_status(ws).unavailable))


def report_reasons(view: PlanView) -> list[str]:
    """Why "Make report" is disabled (empty: it is not)."""
    found = [] if view.state.dose else [f"no dose for revision {view.state.revision.number}: compute it first"]
    return found + ([view.setup_problem] if view.setup_problem else [])


@router.get("/plans/{plan_id}", response_class=HTMLResponse)
def plan_page(request: Request, ws: WS, user: UserDep, plan_id: str) -> HTMLResponse:
    state = known_plan(ws, plan_id)
    status = site_status(ws)
    view = view_of(ws, state, status)
    pics = pictures(request).of(ws, view)
    site = status.site
    return page(
        request,
        "plan.html",
        view=view,
        state=state,
        plan=state.plan,
        course=view.course,
        site=site,
        beams=[{"view": b, "beam": b.beam, "bev": Markup(b.bev_svg)} for b in view.beams],
        mu_check=view.mu_check,
        warnings=view.warnings,
        views=pics.views,
        colors=pics.colors,
        curves=pics.curves,
        targets=pics.targets,
        dvh=Markup(pics.dvh_svg) if pics.dvh_svg else None,
        isodose=pics.isodose,
        pictures_note=pics.note,
        reasons=export_block_reasons(ws, state, status),
        authorized=state.approved or state.authorization is not None,
        default_folder=str(default_folder(ws, site)) if site is not None else "",
        roots=export_roots(ws, site) if site is not None else [],
        reports=plan_reports(ws, plan_id),
        report_reasons=report_reasons(view),
        message=take_form_message(request),
        custom_allowed=custom_servers_allowed(site, user) if site else False,
    )


@router.get("/plans/{plan_id}/slice/{view}/{index}.png")
def slice_png(request: Request, ws: WS, user: UserDep, plan_id: str, view: str, index: int) -> Response:
    known_plan(ws, plan_id)
    if view not in VIEWS:
        raise HTTPException(422, f"no view {view!r}: choose from {', '.join(VIEWS)}")
    try:
        png = pictures(request).slice_png(ws, plan_id, view, index)
    except InputError as e:
        raise HTTPException(404, str(e)) from e
    return Response(png, media_type="image/png")


@router.get("/plans/{plan_id}/slice/{view}/{index}.json")
def slice_info(request: Request, ws: WS, user: UserDep, plan_id: str, view: str, index: int) -> JSONResponse:
    """Beside a slice picture: its orientation, its pixel grid in mm and the dose for the pointer readout."""
    known_plan(ws, plan_id)
    if view not in VIEWS:
        raise HTTPException(422, f"no view {view!r}: choose from {', '.join(VIEWS)}")
    try:
        return JSONResponse(pictures(request).slice_info(ws, plan_id, view, index))
    except InputError as e:
        raise HTTPException(404, str(e)) from e


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")
