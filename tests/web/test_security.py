"""What the web page does against a hostile network or user: throttled password guesses (with the lockout in the
audit), custom servers for physicists only, export folders that a swapped symlink cannot redirect, refusals
audited, security headers and a page that works without inline script or style, TLS beyond loopback."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import rtexport.web.exports as web_exports
from rtexport.errors import InputError
from rtexport.services.export import ExportRun
from rtexport.web.app import create_app, listen_warning
from rtexport.web.auth import CONTENT_SECURITY_POLICY
from rtexport.web.jobs import Job, export_work
from rtexport.workspace import Workspace
from tests.web.conftest import PHYSICIST, PLAN, PLANNER, csrf_of, edit_site, log_in, wait_job

ALL_ITEMS = ["ct", "rtstruct", "rtplan", "dose-plan", "dose-beam"]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client_at(home: Path, clock: Clock, address: str = "10.0.0.1") -> TestClient:
    return TestClient(
        create_app(home, secret="test-secret", clock=clock), follow_redirects=False, client=(address, 5000)
    )


@pytest.fixture
def web(home: Path, clock: Clock) -> Iterator[TestClient]:
    with client_at(home, clock) as c:
        yield c
    c.app.state.jobs.join_all()  # type: ignore[attr-defined]


def audit(home: Path) -> list[dict[str, Any]]:
    ws = Workspace.open(home)
    try:
        return ws.audit_log.entries()
    finally:
        ws.close()


def try_login(client: TestClient, name: str, password: str) -> int:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "name": name, "password": password}).status_code


# -- throttling ----------------------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_user_out_for_a_while(web: TestClient, home: Path, clock: Clock) -> None:
    for _ in range(5):
        assert try_login(web, PLANNER[0], "wrong-guess") == 401
        clock.t += 10
    assert try_login(web, PLANNER[0], PLANNER[1]) == 429  # the right password, but not even checked now
    page = web.get("/login")
    assert page.status_code == 200
    entries = audit(home)
    (lockout,) = [e for e in entries if e["action"] == "lockout"]
    assert lockout["outcome"] == "locked" and lockout["detail"]["locked"] == "user pat"
    assert lockout["detail"]["client"] == "10.0.0.1" and lockout["detail"]["minutes"] == 15
    refused = entries[-1]
    assert refused["action"] == "login" and refused["outcome"] == "refused"
    assert "too many failed passwords for user 'pat'" in refused["detail"]["reason"]
    clock.t += 15 * 60
    assert try_login(web, PLANNER[0], PLANNER[1]) == 303


def test_a_locked_user_is_locked_from_every_client(web: TestClient, home: Path, clock: Clock) -> None:
    for _ in range(5):
        try_login(web, PHYSICIST[0], "wrong-guess")
    with TestClient(web.app, follow_redirects=False, client=("10.0.0.2", 5000)) as other:  # the same server
        assert try_login(other, PHYSICIST[0], PHYSICIST[1]) == 429
        assert try_login(other, PLANNER[0], PLANNER[1]) == 303  # another user from another client: not affected


def test_guesses_at_many_users_lock_the_client_out(web: TestClient, home: Path, clock: Clock) -> None:
    for k in range(20):
        assert try_login(web, f"user{k}", "wrong-guess") == 401
    assert try_login(web, PLANNER[0], PLANNER[1]) == 429
    assert any(e["action"] == "lockout" and e["detail"]["locked"] == "client 10.0.0.1" for e in audit(home))
    with TestClient(web.app, follow_redirects=False, client=("10.0.0.2", 5000)) as other:
        assert try_login(other, PLANNER[0], PLANNER[1]) == 303


def test_failures_outside_the_window_are_forgotten(web: TestClient, clock: Clock) -> None:
    for _ in range(4):
        try_login(web, PLANNER[0], "wrong-guess")
    clock.t += 16 * 60
    try_login(web, PLANNER[0], "wrong-guess")
    assert try_login(web, PLANNER[0], PLANNER[1]) == 303


def test_guessing_a_physicists_password_at_authorize_is_throttled(web: TestClient, home: Path) -> None:
    token = log_in(web, PLANNER)
    for _ in range(5):
        data = {"csrf": token, "name": PHYSICIST[0], "password": "wrong-guess"}
        assert web.post(f"/plans/{PLAN}/authorize", data=data).status_code == 303
    data = {"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1]}
    web.post(f"/plans/{PLAN}/approve", data=data)
    assert ">too many failed passwords for user &#39;phil&#39;" in web.get(f"/plans/{PLAN}").text
    ws = Workspace.open(home)
    assert not ws.plan_state(PLAN).approved and ws.plan_state(PLAN).authorization is None
    ws.close()
    lockout = next(e for e in audit(home) if e["action"] == "lockout")
    assert lockout["actor"] == "pat" and lockout["detail"]["after"] == "authorize"


# -- custom servers ------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def custom(token: str, port: int) -> dict[str, Any]:
    return {"csrf": token, "server": "custom", "aet": "ELSEWHERE", "host": "127.0.0.1", "port": str(port)}


def test_a_planner_may_not_use_or_probe_custom_servers(web: TestClient, home: Path) -> None:
    token = log_in(web, PLANNER)
    page = web.get(f"/plans/{PLAN}").text
    assert re.search(r'<option value="custom" disabled', page)
    port = closed_port()
    rsp = web.post("/echo", data=custom(token, port))
    assert rsp.status_code == 403 and "only a physicist may export to or test a custom server" in rsp.json()["error"]
    rsp = web.post(f"/plans/{PLAN}/export/server", data={**custom(token, port), "items": ["rtplan"]})
    assert rsp.status_code == 403
    refused = [(e["action"], e["actor"]) for e in audit(home) if e["outcome"] == "refused"]
    assert ("echo", "pat") in refused and ("export-server", "pat") in refused


def test_a_physicist_may_and_so_may_anyone_where_the_site_allows(web: TestClient, home: Path) -> None:
    token = log_in(web, PHYSICIST)
    rsp = web.post("/echo", data=custom(token, closed_port()))
    assert rsp.status_code == 200 and rsp.json()["ok"] is False  # tried: nothing listens there
    web.post("/logout", data={"csrf": token})
    edit_site(home, lambda s: s["dicom"].update(allow_custom_servers=True))
    token = log_in(web, PLANNER)
    assert '<option value="custom">' in web.get(f"/plans/{PLAN}").text
    assert web.post("/echo", data=custom(token, closed_port())).status_code == 200


# -- export folders ------------------------------------------------------------------------------------------


def test_a_symlink_swapped_in_after_the_check_cannot_redirect_the_export(
    web: TestClient, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is checked and opened when the export is asked for; the files are written later by a job. A
    symlink swapped in between (here, deterministically, just before the job writes) must not lead outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    today = home / "dicom-export" / "today"
    today.mkdir(parents=True)
    real_work = export_work

    def swap_then_work(h: Path, run: ExportRun) -> Any:
        work = real_work(h, run)

        def swapped(job: Job) -> None:
            os.rename(today, home / "dicom-export" / "moved")
            os.symlink(outside, today)
            work(job)

        return swapped

    monkeypatch.setattr(web_exports, "export_work", swap_then_work)
    token = log_in(web, PHYSICIST)
    web.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1]})
    rsp = web.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export/today/x", "items": ALL_ITEMS}
    )
    assert rsp.status_code == 202, rsp.text
    job = wait_job(web, rsp.json()["job"])
    assert job["ok"], job
    assert list(outside.iterdir()) == []
    assert len(list((home / "dicom-export" / "moved" / "x").glob("*.dcm"))) == 16 + 1 + 1 + 1 + 2


# -- refusals audited, headers, CSP ------------------------------------------------------------------------


def test_a_csrf_refusal_is_audited(web: TestClient, home: Path) -> None:
    log_in(web, PLANNER)
    assert (
        web.post(f"/plans/{PLAN}/authorize", data={"csrf": "forged", "name": "phil", "password": "x"}).status_code
        == 403
    )
    entry = audit(home)[-1]
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("csrf", "refused", "pat")
    assert entry["detail"]["path"] == f"/plans/{PLAN}/authorize" and entry["detail"]["client"] == "10.0.0.1"


def test_every_response_carries_the_security_headers(web: TestClient) -> None:
    token = log_in(web, PLANNER)
    for rsp in (
        web.get("/login"),
        web.get(f"/plans/{PLAN}"),
        web.get("/static/plan.js"),
        web.get("/jobs/none", headers={"accept": "application/json"}),
        web.post("/echo", data={"csrf": token, "server": "nowhere"}),
    ):
        assert rsp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert rsp.headers["x-content-type-options"] == "nosniff"
        assert rsp.headers["referrer-policy"] == "no-referrer"
        assert rsp.headers["x-frame-options"] == "DENY"


def test_no_cache_keeps_patient_data_and_tls_is_insisted_on(web: TestClient, home: Path) -> None:
    token = log_in(web, PLANNER)
    made = web.post(f"/plans/{PLAN}/reports", data={"csrf": token}, headers={"accept": "application/json"})
    assert made.status_code == 201, made.text
    for path in (f"/plans/{PLAN}", "/", f"/plans/{PLAN}/slice/axial/3.png", made.json()["url"]):
        rsp = web.get(path)
        assert rsp.status_code == 200 and rsp.headers["cache-control"] == "no-store", path
        assert "strict-transport-security" not in rsp.headers  # plain HTTP (loopback): no HSTS
    with TestClient(create_app(home, secret="s", https=True), base_url="https://testserver") as tls:
        rsp = tls.get("/login")
        assert rsp.headers["strict-transport-security"] == "max-age=31536000"


def test_the_pages_need_no_inline_script_or_style(web: TestClient) -> None:
    log_in(web, PLANNER)
    for path in ("/login", "/", f"/plans/{PLAN}"):
        html = web.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert re.findall(r"\sstyle\s*=", html) == [] and "<style" not in html, path
        assert re.findall(r"\son[a-z]+\s*=", html) == [], path  # no inline event handlers either


# -- serving beyond loopback ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_is_served_without_tls(host: str) -> None:
    assert listen_warning(host, tls=False, insecure_http=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "pc-12.clinic.example"])
def test_beyond_loopback_plain_http_is_refused_unless_forced(host: str) -> None:
    with pytest.raises(InputError, match=r"refusing to serve .* over plain HTTP.*--cert FILE --key FILE"):
        listen_warning(host, tls=False, insecure_http=False)
    assert listen_warning(host, tls=True, insecure_http=False) is None
    warning = listen_warning(host, tls=False, insecure_http=True)
    assert warning is not None and "clear" in warning


def test_the_page_is_told_of_another_export_of_the_plan_in_the_folder(web: TestClient, home: Path) -> None:
    token = log_in(web, PHYSICIST)
    web.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1]})
    data = {"csrf": token, "folder": "dicom-export", "items": ["rtplan"]}
    first = wait_job(web, web.post(f"/plans/{PLAN}/export/folder", data=data).json()["job"])
    assert first["ok"] and first["warnings"] == []
    web.post(f"/plans/{PLAN}/approve", data={"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1]})
    second = wait_job(web, web.post(f"/plans/{PLAN}/export/folder", data=data).json()["job"])
    assert second["ok"] and len(second["warnings"]) == 1
    assert "another RT Plan of plan CW-E1 (UNAPPROVED" in second["warnings"][0]
