"""The logged-in user, CSRF tokens, flash messages and the security headers.

Starlette's ``SessionMiddleware`` (itsdangerous) signs, expires and writes the cookie (:func:`add_sessions`); this
module adds only what it does not do: a CSRF token per session checked on every POST, a fresh session on log-in,
and a server-side list of the sessions logged in, so that logging out ends a session for good (a copy of its
cookie is no login afterwards). Nothing secret is kept in the cookie (user name, role, session id, CSRF token,
flash messages): it is signed, not encrypted.

Password throttling is the services' (:mod:`rtexport.services.access`), shared with the command line.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from starlette.middleware.sessions import SessionMiddleware

from rtexport.model.people import Actor, Role, User
from rtexport.services.records import record_refusal
from rtexport.services.workspaces import open_workspace

COOKIE = "rtexport_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_AGE_S = 12 * 3600  # one working day


class LiveSessions:
    """The ids of the sessions logged in to this process (thread-safe): a session is a login only while listed."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._ids.add(sid)
        return sid

    def end(self, sid: object) -> None:
        with self._lock:
            self._ids.discard(sid)

    def __contains__(self, sid: object) -> bool:
        with self._lock:
            return sid in self._ids


def add_sessions(app: FastAPI, secret: str | None = None, *, https: bool = False) -> None:
    """Signed-cookie sessions for ``app``, logins for as long as the process runs (or until logout). Over HTTPS
    the cookie is Secure (never sent in clear); over plain HTTP (loopback) it could not be."""
    app.state.live_sessions = LiveSessions()
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret or secrets.token_hex(32),
        session_cookie=COOKIE,
        max_age=MAX_AGE_S,
        same_site="strict",
        https_only=https,
    )


# No inline script or style, nothing from elsewhere, never inside a frame (clickjacking), no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


HSTS = "max-age=31536000"  # served over TLS: browsers use nothing else for a year
NO_STORE = "no-store"  # pages, pictures and reports hold patient data: no cache keeps a copy


def add_security_headers(app: FastAPI, *, https: bool = False) -> None:
    """Every response carries :data:`SECURITY_HEADERS`; all but the static files ``Cache-Control: no-store``;
    over TLS, ``Strict-Transport-Security`` too."""

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = NO_STORE
        if https:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response


def client_of(request: Request) -> str:
    """The client's address as the server sees it."""
    return request.client.host if request.client is not None else "unknown"


def _new_token(session: dict[str, Any]) -> str:
    token = secrets.token_urlsafe(32)
    session["csrf"] = token
    return token


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    return token if isinstance(token, str) else _new_token(request.session)


async def check_csrf(request: Request) -> None:
    """Refuse a POST whose form field or header does not carry this session's token."""
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or sent is None or not secrets.compare_digest(sent, expected):
        audit_refusal(request, "csrf", reason="missing or wrong CSRF token", path=request.url.path)
        raise HTTPException(403, "the form has expired or did not come from this page (CSRF check); reload and retry")


def audit_refusal(request: Request, action: str, **detail: Any) -> None:
    """Audit a refusal the web page made before any service ran (who as far as the session says, the client)."""
    name = request.session.get("user")
    user = name if isinstance(name, str) and request.session.get("sid") in _live(request) else None
    with open_workspace(request.app.state.home) as ws:
        record_refusal(ws, Actor.here("web", user), action, client=client_of(request), **detail)


class LoginRequired(Exception):
    """Raised by :func:`current_user` when nobody is logged in; the app redirects to the login page."""


def _live(request: Request) -> LiveSessions:
    live: LiveSessions = request.app.state.live_sessions
    return live


def current_user(request: Request) -> User:
    name, role = request.session.get("user"), request.session.get("role")
    if not isinstance(name, str) or not isinstance(role, str) or request.session.get("sid") not in _live(request):
        raise LoginRequired
    return User(name, Role(role))


def log_in(request: Request, user: User) -> None:
    _live(request).end(request.session.get("sid"))
    request.session.clear()  # a fresh session and CSRF token on login: nothing carried over from before
    request.session.update(user=user.name, role=user.role.value, sid=_live(request).start())
    _new_token(request.session)


def log_out(request: Request) -> None:
    _live(request).end(request.session.get("sid"))
    request.session.clear()


def flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = [*request.session.get("flash", []), [kind, text]]


def take_flashes(request: Request) -> list[tuple[str, str]]:
    return [(k, t) for k, t in request.session.pop("flash", [])]
