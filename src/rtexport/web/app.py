"""The web page: log in, courses and plans, a plan with its beams, pictures and DVH, and the Export block.

Thin over the same workspace and export pipeline as the CLI. One :class:`Workspace` (one SQLite connection) is
opened per request and per export job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from rtexport.errors import AuthError, ConfigError, PlanError, SendError
from rtexport.export.gate import Item
from rtexport.export.pipeline import availability, gate
from rtexport.export.send import Destination, echo
from rtexport.model.course import Course
from rtexport.model.dose import DoseGrid
from rtexport.model.site import Site, validate_ae_title
from rtexport.services import course_contours
from rtexport.web import images
from rtexport.web.auth import (
    LoginRequired,
    add_sessions,
    check_csrf,
    csrf_token,
    current_user,
    flash,
    log_in,
    log_out,
    take_flashes,
)
from rtexport.web.images import CourseVolume, View
from rtexport.web.jobs import Jobs, folder_work, prebuild_in_background, server_work
from rtexport.workspace import PlanState, Workspace
from rtexport.workspace.dicomio import load_hu
from rtexport.workspace.workspace import User

HERE = Path(__file__).parent
ITEM_LABELS = {
    Item.CT: "CT Images",
    Item.RTSTRUCT: "RT Structure Set",
    Item.RTPLAN: "RT Plan",
    Item.DOSE_PLAN: "Plan",
    Item.DOSE_BEAM: "Beam",
}


@dataclass(frozen=True)
class Caches:
    volumes: images.LRU[tuple[str, str, str], CourseVolume]
    doses: images.LRU[tuple[str, int, str], DoseGrid]


def check_export_folder(ws: Workspace, site: Site, typed: str) -> tuple[Path | None, str]:
    """The folder a browser user typed, if it lies inside one of the site's export roots; else why not.

    Relative paths are taken from the workspace; symlinks and ``..`` are resolved before the check.
    """
    text = typed.strip()
    if not text:
        return None, "type the folder to export to"
    roots = [ws.resolve(r).resolve() for r in site.dicom.export_roots]
    if not roots:
        return None, "the site configuration lists no export_roots: local export from the web page is off"
    try:
        target = ws.resolve(Path(text)).resolve()
    except (OSError, ValueError, RuntimeError) as e:
        return None, f"{text}: not a usable folder ({e})"
    if any(target == r or r in target.parents for r in roots):
        return target, ""
    allowed = ", ".join(str(r) for r in roots)
    return None, f"{text} is outside the folders the site allows for export ({allowed})"


def _site(ws: Workspace) -> tuple[Site | None, str]:
    try:
        return ws.site(), ""
    except ConfigError as e:
        return None, str(e)


def _parse_items(values: list[str]) -> tuple[Item, ...]:
    valid = {i.value: i for i in Item}
    bad = [v for v in values if v not in valid]
    if bad:
        raise HTTPException(422, f"unknown export item(s): {', '.join(bad)}")
    return tuple(i for i in Item if i.value in values)


def _destination(site: Site, server: str, aet: str, host: str, port: str) -> tuple[Destination | None, str]:
    if server and server != "custom":
        found = site.dicom.server(server)
        if found is None:
            return None, f"no DICOM server {server!r} in the site configuration"
        return Destination.from_server(found), ""
    try:
        validate_ae_title(aet.strip())
    except ValueError as e:
        return None, str(e)
    if not host.strip():
        return None, "a custom server needs a host"
    try:
        number = int(port)
    except ValueError:
        return None, f"port {port!r} is not a number"
    if not 1 <= number <= 65535:
        return None, f"port {number} is outside 1–65535"
    return Destination(aet.strip(), host.strip(), number), ""


def _error(status: int, message: str, findings: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "findings": findings or []}, status_code=status)


def workspace(request: Request) -> Iterator[Workspace]:
    """One workspace (one SQLite connection) per request."""
    ws = Workspace.open(request.app.state.home)
    try:
        yield ws
    finally:
        ws.close()


WS = Annotated[Workspace, Depends(workspace)]
UserDep = Annotated[User, Depends(current_user)]
Csrf = Depends(check_csrf)


def create_app(home: Path, *, secret: str | None = None) -> FastAPI:
    """The app for the workspace at ``home``. Logins last as long as the process (12 h at most, until logout);
    ``secret`` signs the session cookies (default: a new random one)."""
    home = home.resolve()
    Workspace.open(home).close()  # fail now, not at the first request, when there is no workspace
    app = FastAPI(title="rtexport", docs_url=None, redoc_url=None, openapi_url=None)
    add_sessions(app, secret)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    jobs = Jobs()
    caches = Caches(images.LRU(2), images.LRU(4))
    app.state.jobs = jobs
    app.state.home = home

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and "application/json" not in request.headers.get("accept", ""):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return _error(401, "log in first")

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = {"user": request.session.get("user"), "role": request.session.get("role"), "csrf": csrf_token(request)}
        return templates.TemplateResponse(
            request, template, {**base, "flashes": take_flashes(request), **context}, status_code=status
        )

    def volume(ws: Workspace, course: Course) -> CourseVolume:
        def make() -> CourseVolume:
            contours = course_contours(ws, course)
            return CourseVolume(course.ct, load_hu(ws.store, course), images.rasterize(course.ct, contours), contours)

        return caches.volumes.get(images.course_key(course), make)

    def plan_state(ws: Workspace, plan_id: str) -> PlanState:
        try:
            return ws.plan_state(plan_id)
        except PlanError as e:
            raise HTTPException(404, str(e)) from e

    def plan_dose(state: PlanState) -> DoseGrid | None:
        if state.dose is None:
            return None
        d = state.dose
        return caches.doses.get((state.plan.id, d.revision, d.computed_at.isoformat()), lambda: d.plan)

    # -- log in / out -------------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", next=next)

    @app.post("/login", dependencies=[Csrf])
    def login(
        request: Request,
        ws: WS,
        name: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        try:
            user = ws.authenticate(name, password, "login")
        except AuthError:
            return page(request, "login.html", 401, next=next, error="Unknown user or wrong password.", name=name)
        log_in(request, user)
        ws.audit(user.name, "login", "ok", via="web")
        safe = next if next.startswith("/") and not next.startswith("//") else "/"
        return RedirectResponse(safe, status_code=303)

    @app.post("/logout", dependencies=[Csrf])
    def logout(request: Request) -> Response:
        log_out(request)
        return RedirectResponse("/login", status_code=303)

    # -- courses and plans ------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def courses(request: Request, ws: WS, user: UserDep) -> HTMLResponse:
        states = [ws.plan_state(p) for p in ws.plan_ids()]
        rows = [{"course": c, "plans": [s for s in states if s.plan.course == c.id]} for c in ws.courses()]
        return page(request, "courses.html", rows=rows, unavailable=availability(ws))

    @app.get("/plans/{plan_id}", response_class=HTMLResponse)
    def plan_page(request: Request, ws: WS, user: UserDep, plan_id: str) -> HTMLResponse:
        state = plan_state(ws, plan_id)
        plan = state.plan
        course = ws.course(plan.course)
        site, site_error = _site(ws)
        machine = site.machine(plan.machine) if site else None
        beams = []
        for b in plan.beams:
            app_ = machine.applicator(b.applicator) if machine else None
            stored = state.dose.beam(b.name) if state.dose else None
            beams.append(
                {
                    "beam": b,
                    "bev": Markup(images.bev_svg(b, app_)),
                    "mu": stored.mu_per_fraction if stored else b.mu,
                    "dose_gy": stored.dose_per_fraction_gy if stored else None,
                }
            )
        vol = volume(ws, course)
        colors = images.structure_colors([s.name for s in course.structures], plan.external)
        dose = plan_dose(state)
        curves = images.dvh(vol, dose, colors) if dose is not None else []
        dvh = Markup(images.dvh_svg(curves, plan.prescription_gy)) if curves else None
        reasons = availability(ws)
        if state.dose is None:
            reasons.append(
                f"plan {plan.id} revision {state.revision.number} has no current dose: compute it first "
                f"('rtexport dose {plan.id}')"
            )
        # Start where the first beam points: its isocentre, else the middle of the CT.
        iso = next((b.isocenter_mm for b in plan.beams if b.isocenter_mm is not None), None)
        ct = course.ct
        start = {
            View.AXIAL: len(ct.slice_z_mm) // 2,
            View.SAGITTAL: ct.columns // 2,
            View.CORONAL: ct.rows // 2,
        }
        if iso is not None:
            start[View.AXIAL] = int(np.argmin(np.abs(np.asarray(ct.slice_z_mm) - iso[2])))
            start[View.SAGITTAL] = int(np.argmin(np.abs(ct.x_mm() - iso[0])))
            start[View.CORONAL] = int(np.argmin(np.abs(ct.y_mm() - (iso[1] + 20))))
        default_folder = ""
        if site is not None:
            default_folder = str(ws.resolve(site.dicom.export_folder).resolve())
        return page(
            request,
            "plan.html",
            state=state,
            plan=plan,
            course=course,
            site=site,
            site_error=site_error,
            beams=beams,
            views=[{"name": v.value, "count": vol.count(v), "start": start[v]} for v in View],
            colors=colors,
            curves=curves,
            dvh=dvh,
            isodose=images.ISODOSE,
            reasons=reasons,
            authorized=state.approved or state.authorization is not None,
            items=ITEM_LABELS,
            default_folder=default_folder,
            roots=[str(ws.resolve(r).resolve()) for r in site.dicom.export_roots] if site else [],
        )

    @app.get("/plans/{plan_id}/slice/{view}/{index}.png")
    def slice_png(ws: WS, user: UserDep, plan_id: str, view: View, index: int) -> Response:
        state = plan_state(ws, plan_id)
        course = ws.course(state.plan.course)
        vol = volume(ws, course)
        if not 0 <= index < vol.count(view):
            raise HTTPException(404, f"{view.value} slice {index} is outside 0–{vol.count(view) - 1}")
        colors = images.structure_colors([s.name for s in course.structures], state.plan.external)
        png = images.render_slice(vol, view, index, plan_dose(state), state.plan.prescription_gy, colors)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    # -- approval and authorization -----------------------------------------------------------------------

    def sign(request: Request, ws: WS, plan_id: str, action: str, name: str, password: str) -> Response:
        plan_state(ws, plan_id)
        try:
            if action == "authorize":
                ws.authorize(plan_id, name.strip(), password)
                flash(request, "ok", f"Export of plan {plan_id} authorized by {name.strip()}.")
            else:
                ws.approve(plan_id, name.strip(), password)
                prebuild_in_background(request.app.state.home, plan_id)
                flash(request, "ok", f"Plan {plan_id} approved by {name.strip()}.")
        except (AuthError, PlanError) as e:
            flash(request, "error", str(e))
            return RedirectResponse(f"/plans/{plan_id}?refused={action}#export", status_code=303)
        return RedirectResponse(f"/plans/{plan_id}#export", status_code=303)

    @app.post("/plans/{plan_id}/authorize", dependencies=[Csrf])
    def authorize(
        request: Request,
        ws: WS,
        user: UserDep,
        plan_id: str,
        name: Annotated[str, Form()],
        password: Annotated[str, Form()],
    ) -> Response:
        return sign(request, ws, plan_id, "authorize", name, password)

    @app.post("/plans/{plan_id}/approve", dependencies=[Csrf])
    def approve(
        request: Request,
        ws: WS,
        user: UserDep,
        plan_id: str,
        name: Annotated[str, Form()],
        password: Annotated[str, Form()],
    ) -> Response:
        return sign(request, ws, plan_id, "approve", name, password)

    # -- export ---------------------------------------------------------------------------------------------

    def refused(ws: WS, plan_id: str, items: tuple[Item, ...]) -> JSONResponse | None:
        reasons = availability(ws)
        if reasons:
            return _error(409, "export is unavailable for this site", reasons)
        _, findings = gate(ws, plan_id, items)
        if findings:
            return _error(409, "export refused", findings)
        return None

    @app.post("/plans/{plan_id}/export/folder", dependencies=[Csrf])
    def export_folder(
        ws: WS,
        user: UserDep,
        plan_id: str,
        folder: Annotated[str, Form()],
        items: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    ) -> JSONResponse:
        plan_state(ws, plan_id)
        chosen = _parse_items(items)
        site, site_error = _site(ws)
        if site is None:
            return _error(409, "export is unavailable for this site", [site_error])
        target, why = check_export_folder(ws, site, folder)
        if target is None:
            ws.audit(user.name, "export", "refused", plan_id, reason=why, via="web")
            return _error(403, why)
        no = refused(ws, plan_id, chosen)
        if no is not None:
            return no
        job = jobs.start(
            user.name, plan_id, "folder", str(target), folder_work(home, plan_id, chosen, target, user.name)
        )
        return JSONResponse({"job": job.id}, status_code=202)

    @app.post("/plans/{plan_id}/export/server", dependencies=[Csrf])
    def export_server(
        ws: WS,
        user: UserDep,
        plan_id: str,
        server: Annotated[str, Form()] = "",
        aet: Annotated[str, Form()] = "",
        host: Annotated[str, Form()] = "",
        port: Annotated[str, Form()] = "",
        items: Annotated[list[str], Form()] = [],  # noqa: B006
    ) -> JSONResponse:
        plan_state(ws, plan_id)
        chosen = _parse_items(items)
        site, site_error = _site(ws)
        if site is None:
            return _error(409, "export is unavailable for this site", [site_error])
        dest, why = _destination(site, server, aet, host, port)
        if dest is None:
            return _error(422, why)
        no = refused(ws, plan_id, chosen)
        if no is not None:
            return no
        job = jobs.start(user.name, plan_id, "server", str(dest), server_work(home, plan_id, chosen, dest, user.name))
        return JSONResponse({"job": job.id}, status_code=202)

    @app.post("/echo", dependencies=[Csrf])
    def echo_server(
        ws: WS,
        user: UserDep,
        server: Annotated[str, Form()] = "",
        aet: Annotated[str, Form()] = "",
        host: Annotated[str, Form()] = "",
        port: Annotated[str, Form()] = "",
    ) -> JSONResponse:
        site, site_error = _site(ws)
        if site is None:
            return _error(409, site_error)
        dest, why = _destination(site, server, aet, host, port)
        if dest is None:
            return _error(422, why)
        try:
            echo(dest, site.dicom.local_ae_title, timeout=10)
        except SendError as e:
            ws.audit(user.name, "echo", "failed", destination=str(dest), error=str(e))
            return JSONResponse({"ok": False, "message": str(e)})
        ws.audit(user.name, "echo", "ok", destination=str(dest))
        return JSONResponse({"ok": True, "message": f"C-ECHO {dest}: success"})

    @app.get("/jobs/{job_id}")
    def job_status(user: UserDep, job_id: str) -> JSONResponse:
        job = jobs.get(job_id)
        if job is None or job.owner != user.name:
            return _error(404, "no such export job (jobs are kept for an hour)")
        return JSONResponse(job.snapshot())

    return app


def serve(home: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the page with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(home), host=host, port=port, log_level="info")
