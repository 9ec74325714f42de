"""The web page: log in, courses and plans, a plan with its beams, pictures and DVH, and the Export block.

Thin over the same workspace and export pipeline as the CLI. One :class:`Workspace` (one SQLite connection) is
opened per request and per export job.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from rtexport.errors import AuthError, GateError, InputError, PlanError, RTExportError, SendError
from rtexport.export.gate import Item
from rtexport.model.course import Course
from rtexport.model.dose import DoseGrid
from rtexport.model.site import Site
from rtexport.services import approval
from rtexport.services.export import (
    Destination,
    begin_export,
    check_server,
    custom_servers_allowed,
    default_folder,
    export_block_reasons,
    resolve_destination,
)
from rtexport.services.plans import plan_states
from rtexport.services.site import availability
from rtexport.services.users import authenticate
from rtexport.web import images
from rtexport.web.auth import (
    LoginRequired,
    Throttle,
    add_security_headers,
    add_sessions,
    check_csrf,
    client_of,
    csrf_token,
    current_user,
    flash,
    log_in,
    log_out,
    take_flashes,
)
from rtexport.web.images import CourseVolume, View
from rtexport.web.jobs import Jobs, export_work
from rtexport.workspace import Actor, PlanState, User, Workspace
from rtexport.workspace.dicomio import course_contours, load_hu

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


def _site(ws: Workspace) -> tuple[Site | None, str]:
    try:
        return ws.site(), ""
    except RTExportError as e:
        return None, str(e)


def _actor(user: User) -> Actor:
    return Actor.here("web", user.name)


def _parse_items(values: list[str]) -> tuple[Item, ...]:
    valid = {i.value: i for i in Item}
    bad = [v for v in values if v not in valid]
    if bad:
        raise HTTPException(422, f"unknown export item(s): {', '.join(bad)}")
    return tuple(i for i in Item if i.value in values)


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


def create_app(
    home: Path,
    *,
    secret: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    https: bool = False,
) -> FastAPI:
    """The app for the workspace at ``home``. Logins last as long as the process (12 h at most, until logout);
    ``secret`` signs the session cookies (default: a new random one); ``clock`` times password lockouts;
    ``https``: served over TLS (the session cookie is then Secure)."""
    home = home.resolve()
    Workspace.open(home).close()  # fail now, not at the first request, when there is no workspace
    app = FastAPI(title="rtexport", docs_url=None, redoc_url=None, openapi_url=None)
    add_sessions(app, secret, https=https)
    add_security_headers(app)
    throttle = Throttle(clock)
    app.state.throttle = throttle
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
            return CourseVolume(course.ct, load_hu(ws.blobs, course), images.rasterize(course.ct, contours), contours)

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
        return caches.doses.get((state.plan.id, d.revision, d.computed_at.isoformat()), d.plan.load)

    # -- passwords: throttled per user and per client ------------------------------------------------------

    def guarded(request: Request, ws: Workspace, actor: Actor, action: str, name: str) -> str | None:
        """Why a password for ``name`` is not even checked now (audited), or None."""
        refusal = throttle.locked(name, client_of(request))
        if refusal:
            ws.audit(actor, action, "refused", reason=refusal, user=name, client=client_of(request))
        return refusal

    def failed(request: Request, ws: Workspace, actor: Actor, action: str, name: str) -> None:
        for lockout in throttle.failed(name, client_of(request)):
            ws.audit(
                actor,
                "lockout",
                "locked",
                locked=lockout,
                after=action,
                user=name,
                client=client_of(request),
                minutes=round(throttle.lockout_s / 60),
            )

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
        anonymous = Actor.here("web")
        refusal = guarded(request, ws, anonymous, "login", name)
        if refusal:
            return page(request, "login.html", 429, next=next, error=f"Refused: {refusal}.", name=name)
        try:
            user = authenticate(ws, name, password, "login", anonymous)
        except AuthError:
            failed(request, ws, anonymous, "login", name)
            return page(request, "login.html", 401, next=next, error="Unknown user or wrong password.", name=name)
        throttle.succeeded(name)
        log_in(request, user)
        ws.audit(_actor(user), "login", "ok")
        safe = next if next.startswith("/") and not next.startswith("//") else "/"
        return RedirectResponse(safe, status_code=303)

    @app.post("/logout", dependencies=[Csrf])
    def logout(request: Request) -> Response:
        log_out(request)
        return RedirectResponse("/login", status_code=303)

    # -- courses and plans ------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def courses(request: Request, ws: WS, user: UserDep) -> HTMLResponse:
        states = plan_states(ws)
        rows = [{"course": c, "plans": [s for s in states if s.plan.course == c.id]} for c in ws.courses.all()]
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
        reasons = export_block_reasons(ws, state)
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
        folder = str(default_folder(ws, site)) if site is not None else ""
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
            default_folder=folder,
            roots=[str(ws.resolve(r).resolve()) for r in site.dicom.export_roots] if site else [],
            custom_allowed=custom_servers_allowed(site, user) if site else False,
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

    def sign(request: Request, ws: WS, user: User, plan_id: str, action: str, name: str, password: str) -> Response:
        plan_state(ws, plan_id)
        name = name.strip()
        refusal = guarded(request, ws, _actor(user), action, name)
        if refusal:
            flash(request, "error", f"{action}: {refusal}")
            return RedirectResponse(f"/plans/{plan_id}?refused={action}#export", status_code=303)
        try:
            if action == "authorize":
                approval.authorize(ws, plan_id, (name.strip(), password), _actor(user))
                flash(request, "ok", f"Export of plan {plan_id} authorized by {name.strip()}.")
            else:
                signed = approval.approve(ws, plan_id, (name.strip(), password), _actor(user))
                flash(request, "ok", f"Plan {plan_id} approved by {name.strip()}.")
                if signed.warning:
                    flash(request, "error", signed.warning)
        except AuthError as e:
            if "wrong password" in str(e):
                failed(request, ws, _actor(user), action, name)
            flash(request, "error", str(e))
            return RedirectResponse(f"/plans/{plan_id}?refused={action}#export", status_code=303)
        except PlanError as e:
            flash(request, "error", str(e))
            return RedirectResponse(f"/plans/{plan_id}?refused={action}#export", status_code=303)
        throttle.succeeded(name)
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
        return sign(request, ws, user, plan_id, "authorize", name, password)

    @app.post("/plans/{plan_id}/approve", dependencies=[Csrf])
    def approve(
        request: Request,
        ws: WS,
        user: UserDep,
        plan_id: str,
        name: Annotated[str, Form()],
        password: Annotated[str, Form()],
    ) -> Response:
        return sign(request, ws, user, plan_id, "approve", name, password)

    # -- export ---------------------------------------------------------------------------------------------

    def start_export(
        request: Request, ws: Workspace, user: User, plan_id: str, items: tuple[Item, ...], kind: str, **given: str
    ) -> JSONResponse:
        """Resolve the destination, gate and build in the request (a refusal answers at once, audited), then write
        or send in a background job the page polls."""
        plan_state(ws, plan_id)
        site, site_error = _site(ws)
        if site is None:
            return _error(409, "export is unavailable for this site", [site_error])
        actor = _actor(user)
        try:
            dest = resolve_destination(
                ws,
                site,
                folder=given.get("folder"),
                server=given.get("server"),
                aet=given.get("aet"),
                host=given.get("host"),
                port=given.get("port"),
                within_roots=True,
                requester=user,
            )
        except InputError as e:
            action = "export" if kind == "folder" else "export-server"
            ws.audit(actor, action, "refused", plan_id, reason=str(e), client=client_of(request))
            return _error(403 if kind == "folder" or "physicist" in str(e) else 422, str(e))
        try:
            run = begin_export(ws, plan_id, items, dest, actor)
        except GateError as e:
            return _error(409, "export refused", e.findings)
        except RTExportError as e:
            return _error(409, str(e))
        job = jobs.start(user.name, plan_id, kind, str(dest), export_work(home, run))
        return JSONResponse({"job": job.id}, status_code=202)

    @app.post("/plans/{plan_id}/export/folder", dependencies=[Csrf])
    def export_folder(
        request: Request,
        ws: WS,
        user: UserDep,
        plan_id: str,
        folder: Annotated[str, Form()],
        items: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    ) -> JSONResponse:
        return start_export(request, ws, user, plan_id, _parse_items(items), "folder", folder=folder)

    @app.post("/plans/{plan_id}/export/server", dependencies=[Csrf])
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
        chosen = _parse_items(items)
        server = "" if server == "custom" else server
        return start_export(request, ws, user, plan_id, chosen, "server", server=server, aet=aet, host=host, port=port)

    @app.post("/echo", dependencies=[Csrf])
    def echo_server(
        request: Request,
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
        server = "" if server == "custom" else server
        try:
            dest = resolve_destination(ws, site, server=server, aet=aet, host=host, port=port, requester=user)
        except InputError as e:
            ws.audit(_actor(user), "echo", "refused", reason=str(e), client=client_of(request))
            return _error(403 if "physicist" in str(e) else 422, str(e))
        assert isinstance(dest, Destination)
        try:
            message = check_server(ws, dest, _actor(user))
        except SendError as e:
            return JSONResponse({"ok": False, "message": str(e)})
        return JSONResponse({"ok": True, "message": message})

    @app.get("/jobs/{job_id}")
    def job_status(user: UserDep, job_id: str) -> JSONResponse:
        job = jobs.get(job_id)
        if job is None or job.owner != user.name:
            return _error(404, "no such export job (jobs are kept for an hour)")
        return JSONResponse(job.snapshot())

    return app


def listen_warning(host: str, tls: bool, insecure_http: bool) -> str | None:
    """Refuse (:class:`InputError`) to serve a non-loopback address in clear text unless forced; the warning to
    show when forced (None when there is nothing to warn about)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or tls:
        return None
    if not insecure_http:
        raise InputError(
            f"refusing to serve {host} over plain HTTP: passwords and patient data would cross the network in "
            "clear text; give --cert FILE --key FILE (TLS), serve 127.0.0.1 behind a TLS proxy, or force it with "
            "--insecure-http"
        )
    return f"serving {host} over plain HTTP (--insecure-http): passwords and patient data cross the network in clear"


def serve(
    home: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    insecure_http: bool = False,
    warn: Callable[[str], None] = lambda _: None,
) -> None:
    """Serve the page with uvicorn until interrupted (over TLS when ``cert`` and ``key`` are given)."""
    import uvicorn

    if (cert is None) != (key is None):
        raise InputError("give both --cert and --key for TLS")
    warning = listen_warning(host, cert is not None, insecure_http)
    if warning:
        warn(warning)
    app = create_app(home, https=cert is not None)
    uvicorn.run(app, host=host, port=port, log_level="info", ssl_certfile=cert, ssl_keyfile=key)
