"""The logged-in user, CSRF tokens and flash messages, kept in Starlette's signed-cookie session.

Starlette's ``SessionMiddleware`` (itsdangerous) signs, expires and writes the cookie (:func:`add_sessions`); this
module adds only what it does not do: a CSRF token per session checked on every POST, a fresh session on log-in,
and a server-side list of the sessions logged in, so that logging out ends a session for good (a copy of its
cookie is no login afterwards). Nothing secret is kept in the cookie (user name, role, session id, CSRF token,
flash messages): it is signed, not encrypted.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.middleware.sessions import SessionMiddleware

from rtexport.workspace import Role, User

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


def add_sessions(app: FastAPI, secret: str | None = None) -> None:
    """Signed-cookie sessions for ``app``, logins for as long as the process runs (or until logout)."""
    app.state.live_sessions = LiveSessions()
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret or secrets.token_hex(32),
        session_cookie=COOKIE,
        max_age=MAX_AGE_S,
        same_site="strict",
        https_only=False,  # served on loopback over plain HTTP: a Secure cookie would never come back
    )


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
        raise HTTPException(403, "the form has expired or did not come from this page (CSRF check); reload and retry")


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
