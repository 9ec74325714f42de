"""The web page's routes as a browser uses them: log in, CSRF, authorization, export folders, the Export block."""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import itsdangerous
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rtexport.errors import InputError
from rtexport.model.people import Actor
from rtexport.services.export import FolderDestination, resolve_destination
from rtexport.services.plans import load_plan
from rtexport.web.app import create_app
from rtexport.web.auth import COOKIE
from rtexport.workspace import Workspace
from tests.web.conftest import PHYSICIST, PLAN, PLANNER, csrf_of, edit_site, log_in, wait_job

ALL_ITEMS = ["ct", "rtstruct", "rtplan", "dose-plan", "dose-beam"]


def authorize(client: TestClient, token: str, user: tuple[str, str] = PHYSICIST) -> None:
    rsp = client.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": user[0], "password": user[1]})
    assert rsp.status_code == 303


def test_pages_need_a_login(client: TestClient) -> None:
    rsp = client.get(f"/plans/{PLAN}")
    assert rsp.status_code == 303 and rsp.headers["location"].startswith("/login")
    assert client.get(f"/plans/{PLAN}/slice/axial/0.png").status_code == 303
    assert client.get("/jobs/x", headers={"accept": "application/json"}).status_code == 401


def test_login_wrong_password_then_right_then_logout(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"csrf": token, "name": "pat", "password": "nope-nope"})
    assert bad.status_code == 401 and "Unknown user or wrong password" in bad.text
    token = log_in(client, PLANNER)
    home = client.get("/")
    assert home.status_code == 200 and "Course C1" in home.text and f"/plans/{PLAN}" in home.text
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/").status_code == 303


def test_logout_ends_the_session_for_good(client: TestClient, home: Path) -> None:
    token = log_in(client, PHYSICIST)
    copied = client.cookies[COOKIE]
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    client.cookies.clear()
    client.cookies.set(COOKIE, copied)  # the cookie as it was before logout, e.g. kept by another browser
    assert client.get("/").status_code == 303
    rsp = client.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": PHYSICIST[0], "password": "x"})
    assert rsp.status_code == 401 and "log in first" in rsp.text
    # a server restarted with the same signing key does not bring a login back either
    with TestClient(create_app(home, secret="test-secret"), follow_redirects=False) as restarted:
        restarted.cookies.set(COOKIE, copied)
        assert restarted.get("/").status_code == 303


def test_post_without_or_with_wrong_csrf_token_is_refused(client: TestClient, home: Path) -> None:
    log_in(client, PLANNER)
    for data in ({}, {"csrf": "forged"}):
        rsp = client.post(f"/plans/{PLAN}/authorize", data={**data, "name": PHYSICIST[0], "password": PHYSICIST[1]})
        assert rsp.status_code == 403 and "CSRF" in rsp.text
    ws = Workspace.open(home)
    assert ws.plan_state(PLAN).authorization is None
    ws.close()


def test_login_form_needs_csrf_too(client: TestClient) -> None:
    client.get("/login")
    rsp = client.post("/login", data={"name": PLANNER[0], "password": PLANNER[1]})
    assert rsp.status_code == 403


def test_tampered_or_foreign_session_cookie_is_not_a_login(client: TestClient, home: Path) -> None:
    log_in(client, PLANNER)
    value = client.cookies[COOKIE]
    i = len(value) // 2
    client.cookies.clear()
    client.cookies.set(COOKIE, value[:i] + ("B" if value[i] == "A" else "A") + value[i + 1 :])
    assert client.get("/").status_code == 303
    # A physicist's session from an app with another secret is no login here.
    with TestClient(create_app(home, secret="another-secret"), follow_redirects=False) as other:
        log_in(other, PHYSICIST)
        foreign = other.cookies[COOKIE]
    client.cookies.clear()
    client.cookies.set(COOKIE, foreign)
    assert client.get("/").status_code == 303


def test_session_cookie_is_httponly_strict_and_lasts_a_working_day(client: TestClient) -> None:
    cookie = client.get("/login").headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie


def test_session_expires_after_a_working_day(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    log_in(client, PLANNER)
    assert client.get("/").status_code == 200
    later = int(time.time()) + 12 * 3600 + 60
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: later)
    assert client.get("/").status_code == 303


def test_login_starts_a_fresh_session_with_a_new_csrf_token(client: TestClient) -> None:
    before = csrf_of(client.get("/login").text)
    after = log_in(client, PLANNER)
    assert after != before
    rsp = client.post(f"/plans/{PLAN}/authorize", data={"csrf": before, "name": PHYSICIST[0], "password": PHYSICIST[1]})
    assert rsp.status_code == 403
    assert (
        client.post(
            f"/plans/{PLAN}/authorize",
            headers={"X-CSRF-Token": after},
            data={"name": PHYSICIST[0], "password": PHYSICIST[1]},
        ).status_code
        == 303
    )


def test_planner_cannot_authorize_but_physicist_can(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    authorize(client, token, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    assert "only a physicist may authorize" in page
    assert 'id="authorize-form"' in page
    authorize(client, token, PHYSICIST)
    page = client.get(f"/plans/{PLAN}").text
    assert "A qualified person has authorized the export of this plan" in page
    assert "<strong>Phil Physicist</strong> (phil)" in page
    ws = Workspace.open(home)
    entries = [(e["actor"], e["action"], e["outcome"]) for e in ws.audit_log.entries(PLAN)]
    ws.close()
    assert ("pat", "authorize", "refused") in entries and ("phil", "authorize", "ok") in entries


def test_planner_cannot_approve(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    client.post(f"/plans/{PLAN}/approve", data={"csrf": token, "name": PLANNER[0], "password": PLANNER[1]})
    assert "only a physicist may approve" in client.get(f"/plans/{PLAN}").text
    ws = Workspace.open(home)
    assert not ws.plan_state(PLAN).approved
    ws.close()


def test_export_waits_for_authorization(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    assert 'class="needs-auth" disabled' in page
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export", "items": ALL_ITEMS}
    )
    assert rsp.status_code == 409 and any("not authorized" in f for f in rsp.json()["findings"])
    assert not (home / "dicom-export").exists()


def test_local_export_writes_every_file(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    authorize(client, token)
    page = client.get(f"/plans/{PLAN}").text
    assert f'value="{(home / "dicom-export").resolve()}"' in page  # prefilled with the site's default folder
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export/today", "items": ALL_ITEMS}
    )
    assert rsp.status_code == 202, rsp.text
    job = wait_job(client, rsp.json()["job"])
    assert job["state"] == "done" and job["ok"], job
    files = sorted(p.name for p in (home / "dicom-export" / "today").iterdir())
    assert len(files) == 16 + 1 + 1 + 1 + 2
    assert {r["file"] for r in job["results"]} == set(files)
    assert all(r["outcome"] == "written" for r in job["results"])
    assert sum(f.startswith("RD.") for f in files) == 3 and sum(f.startswith("RP.") for f in files) == 1


def test_export_only_the_chosen_items(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    authorize(client, token)
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export", "items": ["rtplan"]}
    )
    job = wait_job(client, rsp.json()["job"])
    assert job["ok"] and [p.name[:3] for p in (home / "dicom-export").iterdir()] == ["RP."]


def test_paths_outside_the_export_roots_are_refused(client: TestClient, home: Path, tmp_path: Path) -> None:
    token = log_in(client, PLANNER)
    authorize(client, token)
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "dicom-export").mkdir()
    os.symlink(outside, home / "dicom-export" / "link")
    for folder in ("../escape", str(outside), "dicom-export/../../escape", "dicom-export/link/sub", "/etc", "site"):
        rsp = client.post(f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": folder, "items": ALL_ITEMS})
        assert rsp.status_code == 403, folder
        assert "outside the folders the site allows" in rsp.json()["error"]
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape").exists()


def test_web_folders_must_lie_in_the_export_roots(home: Path) -> None:
    ws = Workspace.open(home)
    site = ws.site()
    root = (home / "dicom-export").resolve()

    def folder(typed: str) -> Path:
        dest = resolve_destination(ws, site, folder=typed, within_roots=True)
        assert isinstance(dest, FolderDestination)
        return dest.path

    assert folder("dicom-export") == root
    assert folder(f"{root}/a/b") == root / "a" / "b"
    with pytest.raises(InputError, match="outside the folders the site allows"):
        folder("dicom-export-2")  # a sibling with the same prefix
    with pytest.raises(InputError, match="type the folder"):
        folder("  ")
    ws.close()


def test_block_disabled_without_ct_curve_with_the_reason(client: TestClient, home: Path) -> None:
    edit_site(home, lambda s: s.update(ct_curves=[]))
    token = log_in(client, PHYSICIST)
    page = client.get(f"/plans/{PLAN}").text
    assert "DICOM export is disabled" in page and "no CT curve" in page
    assert '<fieldset class="export-block" disabled>' in page
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export", "items": ALL_ITEMS}
    )
    assert rsp.status_code == 409 and any("no CT curve" in f for f in rsp.json()["findings"])


def test_block_disabled_without_machine_or_dose(client: TestClient, home: Path) -> None:
    ws = Workspace.open(home)
    changed = ws.plan_state(PLAN).plan.to_toml().replace("fractions = 25", "fractions = 20")
    load_plan(ws, changed, "plan.toml", Actor("pat", "pat-os", "test"))
    ws.close()  # a new revision: no current dose
    edit_site(home, lambda s: s.update(machines=[]))
    log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    assert "no treatment machine" in page and "need current dose for revision 2" in page
    assert '<fieldset class="export-block" disabled>' in page


def test_plan_page_shows_beams_state_and_dvh(client: TestClient) -> None:
    log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    for text in ("ANT_OBL", "16 MeV", "15x15", "1000 mm", "20°", "Revision", "Unapproved", 'class="dvh"'):
        assert text in page, text
    assert page.count('class="bev-cutout"') == 2


def test_slices_show_ct_outlines_and_dose(client: TestClient) -> None:
    log_in(client, PLANNER)
    for view, count in (("axial", 16), ("sagittal", 80), ("coronal", 80)):
        rsp = client.get(f"/plans/{PLAN}/slice/{view}/{count // 2}.png")
        assert rsp.status_code == 200 and rsp.headers["content-type"] == "image/png"
        rgb = np.asarray(Image.open(io.BytesIO(rsp.content)).convert("RGB")).astype(int)
        assert max(rgb.shape[:2]) == 480
        colour = np.abs(rgb[..., 0] - rgb[..., 2]) > 60  # grey CT has none; outlines and dose wash do
        assert colour.mean() > 0.002, view
    assert client.get(f"/plans/{PLAN}/slice/axial/16.png").status_code == 404


def test_echo_to_a_closed_port_says_why(client: TestClient) -> None:
    token = log_in(client, PHYSICIST)  # custom servers: physicists only (tests/web/test_security.py)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rsp = client.post(
        "/echo", data={"csrf": token, "server": "custom", "aet": "NOBODY", "host": "127.0.0.1", "port": str(port)}
    )
    body = rsp.json()
    assert rsp.status_code == 200 and body["ok"] is False and "C-ECHO" in body["message"]
    bad = client.post("/echo", data={"csrf": token, "server": "custom", "aet": "X", "host": "h", "port": "70000"})
    assert bad.status_code == 422


def test_another_users_job_is_not_visible(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    authorize(client, token)
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export", "items": ["rtplan"]}
    )
    job = rsp.json()["job"]
    wait_job(client, job)
    client.post("/logout", data={"csrf": token})
    log_in(client, PHYSICIST)
    assert client.get(f"/jobs/{job}").status_code == 404


def test_physicist_approves_then_export_needs_no_authorization(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    signed = {"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1], "acknowledge_mu_check": "true"}
    client.post(f"/plans/{PLAN}/approve", data=signed)
    page = client.get(f"/plans/{PLAN}").text
    assert "Approved by <strong>Phil Physicist</strong> (phil)" in page and "export needs no authorization" in page
    assert 'class="needs-auth" disabled' not in page
