"""Sessions (an HMAC-signed cookie, stdlib only), the logged-in user and CSRF tokens.

The cookie holds ``base64(json).timestamp.signature``; nothing secret is stored in it (user name, role, CSRF
token, flash messages). The signing secret is per process unless the caller gives one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtexport.workspace.workspace import Role, User

COOKIE = "rtexport_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_AGE_S = 12 * 3600  # one working day


class Session(dict[str, Any]):
    """A dict that knows whether it was changed (and so must be sent back)."""

    modified = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.modified = True
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.modified = True
        return super().pop(key, *default)

    def clear(self) -> None:
        self.modified = True
        super().clear()


class Signer:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(secret.encode()).digest()

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def dumps(self, data: dict[str, Any], now: float | None = None) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        payload = f"{body}.{int(now if now is not None else time.time())}"
        return f"{payload}.{self._mac(payload.encode())}"

    def loads(self, value: str, max_age_s: int = MAX_AGE_S, now: float | None = None) -> dict[str, Any] | None:
        """The data, or None when the signature is wrong or the cookie is too old."""
        try:
            body, stamp, mac = value.split(".")
            if not hmac.compare_digest(mac, self._mac(f"{body}.{stamp}".encode())):
                return None
            if (now if now is not None else time.time()) - int(stamp) > max_age_s:
                return None
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


class SessionMiddleware:
    """Puts a :class:`Session` in ``scope["session"]`` and writes it back to the cookie when changed."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.signer = Signer(secret)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = HTTPConnection(scope).cookies.get(COOKIE)
        data = self.signer.loads(raw) if raw else None
        session = Session(data or {})
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and session.modified:
                headers = MutableHeaders(scope=message)
                flags = "Path=/; HttpOnly; SameSite=Strict"
                if session:
                    headers.append("Set-Cookie", f"{COOKIE}={self.signer.dumps(dict(session))}; {flags}")
                else:
                    headers.append("Set-Cookie", f"{COOKIE}=; {flags}; Max-Age=0")
            await send(message)

        await self.app(scope, receive, send_wrapper)


def session(request: Request) -> Session:
    s = request.scope["session"]
    assert isinstance(s, Session)
    return s


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    s = session(request)
    token = s.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        s["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Refuse a POST whose form field or header does not carry this session's token."""
    expected = session(request).get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or sent is None or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "the form has expired or did not come from this page (CSRF check); reload and retry")


class LoginRequired(Exception):
    """Raised by :func:`current_user` when nobody is logged in; the app redirects to the login page."""


def current_user(request: Request) -> User:
    s = session(request)
    name, role = s.get("user"), s.get("role")
    if not isinstance(name, str) or not isinstance(role, str):
        raise LoginRequired
    return User(name, Role(role))


def log_in(request: Request, user: User) -> None:
    s = session(request)
    s.clear()  # a fresh session (and CSRF token) on login: no fixation
    s["user"] = user.name
    s["role"] = user.role.value
    s["csrf"] = secrets.token_urlsafe(32)


def log_out(request: Request) -> None:
    session(request).clear()


def flash(request: Request, kind: str, text: str) -> None:
    s = session(request)
    s["flash"] = [*s.get("flash", []), [kind, text]]


def take_flashes(request: Request) -> list[tuple[str, str]]:
    return [(k, t) for k, t in session(request).pop("flash", [])]
