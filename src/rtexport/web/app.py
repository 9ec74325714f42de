"""The web page: log in, courses and plans, a plan with its beams, pictures and DVH, reports, and the Export block.

Thin over the same services as the CLI: :func:`create_app` puts the routers together (:mod:`.pages`,
:mod:`.signing`, :mod:`.reports`, :mod:`.exports`); each request opens one workspace (one SQLite connection),
each export job another.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from rtexport.errors import InputError
from rtexport.services.pictures import Pictures
from rtexport.services.workspaces import open_workspace
from rtexport.web import exports, pages, reports, signing
from rtexport.web.auth import LoginRequired, add_security_headers, add_sessions
from rtexport.web.common import HERE, error, error_page, wants_html
from rtexport.web.editing import router as editing_router
from rtexport.web.importing import router as importing_router
from rtexport.web.jobs import Jobs

LOGGER = logging.getLogger(__name__)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and "application/json" not in request.headers.get("accept", ""):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return error(401, "log in first")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_html(request):
            title = {404: "Not found", 403: "Refused"}.get(exc.status_code, f"Error {exc.status_code}")
            detail = str(exc.detail) if exc.status_code != 404 or exc.detail != "Not Found" else ""
            return error_page(request, exc.status_code, title, detail or f"There is no page at {request.url.path}.")
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        LOGGER.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        message = "rtexport failed on this request; the details are in the server's log. Nothing was changed."
        if wants_html(request):
            return error_page(request, 500, "Something went wrong", message)
        return error(500, message)


def create_app(
    home: Path,
    *,
    secret: str | None = None,
    clock: Callable[[], float] = time.time,
    https: bool = False,
) -> FastAPI:
    """The app for the workspace at ``home``. Logins last as long as the process (12 h at most, until logout);
    ``secret`` signs the session cookies (default: a new random one); ``clock`` is what password lockouts are
    timed by (seconds; they are kept in the workspace); ``https``: served over TLS (Secure cookie, HSTS)."""
    home = home.resolve()
    open_workspace(home).close()  # fail now, not at the first request, when there is no workspace
    app = FastAPI(title="rtexport", docs_url=None, redoc_url=None, openapi_url=None)
    add_sessions(app, secret, https=https)
    add_security_headers(app, https=https)
    app.state.home, app.state.clock = home, clock
    app.state.jobs, app.state.pictures = Jobs(), Pictures()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _handlers(app)
    for module in (signing, pages, reports, exports):
        app.include_router(module.router)
    app.include_router(editing_router)  # Course, Plan, Beams, Dose blocks
    app.include_router(importing_router)  # import from the page
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
    log_level: str = "info",
) -> None:
    """Serve the page with uvicorn until interrupted (over TLS when ``cert`` and ``key`` are given)."""
    import uvicorn

    if (cert is None) != (key is None):
        raise InputError("give both --cert and --key for TLS")
    warning = listen_warning(host, cert is not None, insecure_http)
    if warning:
        warn(warning)
    app = create_app(home, https=cert is not None)
    uvicorn.run(app, host=host, port=port, log_level=log_level, ssl_certfile=cert, ssl_keyfile=key)
