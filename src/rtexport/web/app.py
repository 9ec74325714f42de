"""The web page: log in, courses and plans, a plan with its beams, pictures and DVH, and the Export block.

Thin over the same workspace and export pipeline as the CLI. One :class:`Workspace` (one SQLite connection) is
opened per request and per export job.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from rtexport.errors import (
    AuthError,
    GateError,
    InputError,
    NotAllowedError,
    PasswordError,
    PlanError,
    RTExportError,
    SendError,
)
from rtexport.export.gate import Item
from rtexport.model.course import Course
from rtexport.model.display import dicom_date, local_time, person
from rtexport.model.dose import DoseGrid
from rtexport.model.people import Actor, User
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.pictures import render as images
from rtexport.pictures.render import CourseVolume, Outlines, View
from rtexport.services import approval
from rtexport.services.checks import dose_warnings, mu_check
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
from rtexport.services.report import make_report, plan_reports, report_filename, report_pdf
from rtexport.services.site import availability
from rtexport.services.users import authenticate
from rtexport.services.views import bolus_outlines, course_volume, plan_dvh, slices_through, targets
from rtexport.services.views import colors as plan_colors
from rtexport.web.auth import (
    LoginRequired,
    Throttle,
    add_security_headers,
    add_sessions,
    check_csrf,
    client_of,
    csrf_token,
    current_user,
    log_in,
    log_out,
    take_flashes,
)
from rtexport.web.jobs import Jobs, export_work
from rtexport.workspace import Workspace

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
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
    bolus: images.LRU[tuple[str, int, str], Outlines | None]


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


def _wants_html(request: Request) -> bool:
    """A browser navigating (not the page's own fetch, which asks for JSON)."""
    return "text/html" in request.headers.get("accept", "")


def form_message(request: Request, form: str, kind: str, text: str) -> None:
    """A message to show next to the form that was used (after the redirect back to the page)."""
    request.session["form_message"] = [form, kind, text]


def take_form_message(request: Request) -> dict[str, str] | None:
    found = request.session.pop("form_message", None)
    if not isinstance(found, list) or len(found) != 3:
        return None
    return {"form": str(found[0]), "kind": str(found[1]), "text": str(found[2])}


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
    templates.env.filters.update(person=person, local=local_time, dicom_date=dicom_date, fromiso=datetime.fromisoformat)
    jobs = Jobs()
    caches = Caches(images.LRU(2), images.LRU(4), images.LRU(8))
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

    def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        """An error as a page (no session needed: a 500 is rendered outside the session middleware)."""
        context: dict[str, Any] = {"user": None, "role": None, "csrf": "", "flashes": [], "title": title}
        context["message"] = message
        return templates.TemplateResponse(request, "error.html", context, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request):
            title = {404: "Not found", 403: "Refused"}.get(exc.status_code, f"Error {exc.status_code}")
            detail = str(exc.detail) if exc.status_code != 404 or exc.detail != "Not Found" else ""
            return error_page(request, exc.status_code, title, detail or f"There is no page at {request.url.path}.")
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        message = "rtexport failed on this request; the details are in the server's log. Nothing was changed."
        if _wants_html(request):
            return error_page(request, 500, "Something went wrong", message)
        return _error(500, message)

    def volume(ws: Workspace, course: Course) -> CourseVolume:
        return caches.volumes.get(images.course_key(course), lambda: course_volume(ws, course))

    def bolus(ws: Workspace, state: PlanState, site: Site | None, vol: CourseVolume) -> Outlines | None:
        """The plan's bolus outlines (none while the site cannot be read: they need its machine)."""
        if site is None or not any(b.bolus for b in state.plan.beams):
            return None
        key = (state.plan.id, state.revision.number, state.revision.digest)
        course = ws.course(state.plan.course)
        return caches.bolus.get(key, lambda: bolus_outlines(site, course, state.plan, vol.contours))

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
        except PasswordError:
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
        check = mu_check(site, state) if site else None
        checked = {b.beam: b for b in check.beams} if check else {}
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
                    "check": checked.get(b.name),
                }
            )
        vol = volume(ws, course)
        colors = plan_colors(course, plan)
        dose = plan_dose(state)
        curves = plan_dvh(vol, dose, course, plan) if dose is not None else []
        dvh = Markup(images.dvh_svg(curves, plan.prescription_gy)) if curves else None
        warnings = dose_warnings(site, plan, dose, state.dose.beams) if site and dose and state.dose else []
        reasons = export_block_reasons(ws, state)
        # Start where the first beam is normalized (or points: its isocentre), else the middle of the CT.
        first = state.dose.beams[0].normalization_point_mm if state.dose and state.dose.beams else None
        iso = next((b.isocenter_mm for b in plan.beams if b.isocenter_mm is not None), None)
        start = slices_through(course.ct, first or iso)
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
            mu_check=check,
            warnings=warnings,
            views=[{"name": v.value, "count": vol.count(v), "start": start[v]} for v in View],
            colors=colors,
            curves=curves,
            targets=targets(course, plan),
            dvh=dvh,
            isodose=images.ISODOSE,
            reasons=reasons,
            authorized=state.approved or state.authorization is not None,
            items=ITEM_LABELS,
            default_folder=folder,
            roots=[str(ws.resolve(r).resolve()) for r in site.dicom.export_roots] if site else [],
            reports=plan_reports(ws, plan_id),
            message=take_form_message(request),
            custom_allowed=custom_servers_allowed(site, user) if site else False,
        )

    @app.get("/plans/{plan_id}/slice/{view}/{index}.png")
    def slice_png(ws: WS, user: UserDep, plan_id: str, view: View, index: int) -> Response:
        state = plan_state(ws, plan_id)
        course = ws.course(state.plan.course)
        vol = volume(ws, course)
        if not 0 <= index < vol.count(view):
            raise HTTPException(404, f"{view.value} slice {index} is outside 0–{vol.count(view) - 1}")
        site, _ = _site(ws)
        extra = bolus(ws, state, site, vol)
        colors = plan_colors(course, state.plan)
        png = images.render_slice(
            vol, view, index, plan_dose(state), state.plan.prescription_gy, colors, images.IMAGE_PX, extra
        )
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    # -- plan reports ---------------------------------------------------------------------------------------

    @app.post("/plans/{plan_id}/reports", dependencies=[Csrf])
    def make_plan_report(request: Request, ws: WS, user: UserDep, plan_id: str) -> Response:
        """Make the plan's report: the page's script gets JSON and downloads it; a plain form is sent the PDF."""
        plan_state(ws, plan_id)
        json_wanted = "application/json" in request.headers.get("accept", "")
        try:
            made = make_report(ws, plan_id, _actor(user))
        except RTExportError as e:
            if json_wanted:
                return _error(409, str(e))
            form_message(request, "reports", "error", str(e))
            return RedirectResponse(f"/plans/{plan_id}#reports", status_code=303)
        r = made.stored
        url = f"/plans/{plan_id}/reports/{r.id}.pdf"
        if json_wanted:
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

    @app.get("/plans/{plan_id}/reports/{report_id}.pdf")
    def report_file(ws: WS, user: UserDep, plan_id: str, report_id: int) -> Response:
        try:
            stored, pdf = report_pdf(ws, plan_id, report_id)
        except InputError as e:
            raise HTTPException(404, str(e)) from e
        disposition = f'attachment; filename="{report_filename(stored)}"'
        return Response(pdf, media_type="application/pdf", headers={"Content-Disposition": disposition})

    # -- approval and authorization -----------------------------------------------------------------------

    def sign(
        request: Request,
        ws: WS,
        user: User,
        plan_id: str,
        action: str,
        name: str,
        password: str,
        acknowledge_mu_check: bool = False,
    ) -> Response:
        plan_state(ws, plan_id)
        place = "authorization" if action == "authorize" else "approval"
        name = name.strip()
        refusal = guarded(request, ws, _actor(user), action, name)
        if refusal:
            form_message(request, action, "error", f"{action}: {refusal}")
            return RedirectResponse(f"/plans/{plan_id}#{place}", status_code=303)
        try:
            if action == "authorize":
                approval.authorize(ws, plan_id, (name, password), _actor(user))
                form_message(request, action, "ok", f"Export of plan {plan_id} authorized by {name}.")
            else:
                signed = approval.approve(
                    ws, plan_id, (name, password), _actor(user), acknowledge_mu_check=acknowledge_mu_check
                )
                text = f"Plan {plan_id} approved by {name}."
                form_message(request, action, "ok", f"{text} {signed.warning}" if signed.warning else text)
        except PasswordError as e:
            failed(request, ws, _actor(user), action, name)
            form_message(request, action, "error", str(e))
            return RedirectResponse(f"/plans/{plan_id}#{place}", status_code=303)
        except (AuthError, PlanError) as e:
            form_message(request, action, "error", str(e))
            return RedirectResponse(f"/plans/{plan_id}#{place}", status_code=303)
        throttle.succeeded(name)
        return RedirectResponse(f"/plans/{plan_id}#{place}", status_code=303)

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
        acknowledge_mu_check: Annotated[bool, Form()] = False,
    ) -> Response:
        return sign(request, ws, user, plan_id, "approve", name, password, acknowledge_mu_check)

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
            return _error(403 if isinstance(e, NotAllowedError) else 422, str(e))
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
            return _error(403 if isinstance(e, NotAllowedError) else 422, str(e))
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
