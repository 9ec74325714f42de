"""The plan page as a physicist reads it: a refusal next to the form that was used, names and times as people
write them, the MU check, the bolus in the viewer, plan reports, and error pages that are pages."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import rtexport.web.pages as web_pages
from rtexport.model.display import local_time
from rtexport.model.people import Actor
from rtexport.pictures.render import IMAGE_PX, View, render_slice
from rtexport.services.pictures import Pictures
from rtexport.services.plans import load_plan
from rtexport.services.views import BOLUS_COLOR, bolus_outlines, colors, course_volume, slices_through
from rtexport.web.app import create_app
from rtexport.workspace import Workspace
from tests.conftest import forget_beam_setups, strict_mu_check
from tests.web.conftest import PHYSICIST, PLAN, PLANNER, edit_site, log_in

HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture(autouse=True)
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def between(page: str, start: str, end: str) -> str:
    """The part of ``page`` from the first ``start`` to the next ``end``."""
    i = page.index(start)
    return page[i : page.index(end, i)]


def test_a_refused_authorization_is_shown_next_to_its_form(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    rsp = client.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": PHYSICIST[0], "password": "wrong-one"})
    assert rsp.status_code == 303 and rsp.headers["location"] == f"/plans/{PLAN}#authorization"
    page = client.get(f"/plans/{PLAN}").text
    block = between(page, 'id="authorization"', 'id="authorize-form"')
    assert "unknown user or wrong password for &#39;phil&#39;" in block
    assert 'class="flash error"' not in page  # not at the top of the page, out of sight
    assert "wrong password" not in client.get(f"/plans/{PLAN}").text  # shown once


def test_approval_asks_to_acknowledge_the_mu_check_next_to_its_form(client: TestClient, home: Path) -> None:
    strict_mu_check(home)
    token = log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    form = between(page, 'id="approve-form"', "</form>")
    assert 'name="acknowledge_mu_check"' in form and "I have reviewed the independent MU check" in form
    signed = {"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1]}
    rsp = client.post(f"/plans/{PLAN}/approve", data=signed)
    assert rsp.headers["location"] == f"/plans/{PLAN}#approval"
    page = client.get(f"/plans/{PLAN}").text
    block = between(page, 'id="approval"', 'id="approve-form"')
    assert "approval needs you to acknowledge the independent MU check" in block
    assert "beam ANT: engine" in block and "beyond the action level of 0.01 %" in block
    assert '<details class="approve" open>' in block
    client.post(f"/plans/{PLAN}/approve", data={**signed, "acknowledge_mu_check": "true"})
    page = client.get(f"/plans/{PLAN}").text
    assert f"Plan {PLAN} approved by phil." in between(page, 'id="approval"', "</section>")
    with Workspace.open(home) as ws:
        (ok,) = [e for e in ws.audit_log.entries(PLAN) if e["action"] == "approve" and e["outcome"] == "ok"]
        assert ok["detail"]["mu_check_acknowledged"] is True


def test_names_as_people_write_them_and_times_in_local_time(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    client.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1]})
    courses = client.get("/").text
    assert "Electron Phantom" in courses and "Phantom^Electron" not in courses
    page = client.get(f"/plans/{PLAN}").text
    with Workspace.open(home) as ws:
        state = ws.plan_state(PLAN)
    assert state.authorization is not None and state.dose is not None
    assert f"<strong>Phil Physicist</strong> (phil), revision 1, {local_time(state.authorization.at)}" in page
    assert f"Computed {local_time(state.dose.computed_at)}" in page
    assert "UTC" not in page and re.search(r"\d\d:\d\d CES?T", page)
    assert '<span class="badge info">Export authorized</span>' in between(
        page, '<header class="plan-head">', "</header>"
    )


def test_the_plan_page_shows_the_mu_check_and_dose_warnings(client: TestClient, home: Path) -> None:
    edit_site(home, lambda s: s.update(checks={"mu_per_fraction_max": 100.0}))
    forget_beam_setups(home, PLAN)  # a dose record from before the beams' SSD and depth were kept
    log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    check = between(page, 'id="mu-check"', "</table>")
    assert check.count("not checkable: the dose record does not give this beam") == 2
    with Workspace.open(home) as ws:
        dose = ws.plan_state(PLAN).dose
    assert dose is not None
    ant = dose.beam("ANT")
    assert ant is not None and ant.mu_per_fraction > 100
    usual = (
        f"beam[0].mu: {ant.mu_per_fraction:.1f} MU per fraction (computed) is outside the site&#39;s usual 20-100 MU"
    )
    assert usual in page
    ptv = between(page, "PTV <small", "</tr>")
    assert "target" in ptv and re.search(r"<td>\d+\.\d\d Gy</td><td>\d+\.\d %</td>$", ptv)  # D95, V95


def test_the_bolus_is_outlined_in_the_viewer(client: TestClient, home: Path) -> None:
    with Workspace.open(home) as ws:
        state = ws.plan_state(PLAN)
        course = ws.course(state.plan.course)
        vol = course_volume(ws, course)
        bolus = bolus_outlines(ws.site(), course, state.plan, vol.contours)
        grid = state.dose.plan.load() if state.dose else None
    assert bolus is not None and list(bolus.contours) == ["Bolus_ANT"]
    axial = slices_through(course.ct, (0.0, -100.0, 0.0))[View.AXIAL]
    palette = colors(course, state.plan)
    plain = np.asarray(Image.open(io.BytesIO(render_slice(vol, View.AXIAL, axial, grid, 50.0, palette))))
    outlined = np.asarray(
        Image.open(io.BytesIO(render_slice(vol, View.AXIAL, axial, grid, 50.0, palette, IMAGE_PX, bolus)))
    )
    changed = np.any(plain != outlined, axis=-1)
    rgb = tuple(int(BOLUS_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert changed.sum() > 50 and np.all(outlined[changed] == rgb)  # only the bolus line, in its own colour
    log_in(client, PLANNER)
    served = np.asarray(Image.open(io.BytesIO(client.get(f"/plans/{PLAN}/slice/axial/{axial}.png").content)))
    with Workspace.open(home) as ws:
        beams = Pictures().aimed(ws, ws.plan_state(PLAN), ws.site(), vol).beams
    drawn = render_slice(vol, View.AXIAL, axial, grid, 50.0, palette, IMAGE_PX, bolus, beams)
    assert np.array_equal(served, np.asarray(Image.open(io.BytesIO(drawn))))  # the same, with the beams' lines
    assert "Bolus_ANT" in between(client.get(f"/plans/{PLAN}").text, "<h3>Structures (outlines)</h3>", "</ul>")


def test_reports_are_made_downloaded_and_listed(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    assert page.index("Plan Reports") < page.index(">DICOM</h3>") and "No report made yet." in page
    rsp = client.post(f"/plans/{PLAN}/reports", data={"csrf": token})  # a plain form: sent the PDF
    assert rsp.status_code == 303 and rsp.headers["location"] == f"/plans/{PLAN}/reports/1.pdf"
    pdf = client.get(rsp.headers["location"])
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-disposition"] == 'attachment; filename="report-CW-E1-rev1-1.pdf"'
    made = client.post(f"/plans/{PLAN}/reports", headers={"X-CSRF-Token": token, "accept": "application/json"})
    assert made.status_code == 201
    body = made.json()
    assert body["id"] == 2 and body["url"] == f"/plans/{PLAN}/reports/2.pdf" and body["revision"] == 1
    listed = between(client.get(f"/plans/{PLAN}").text, 'id="reports-list"', "</table>")
    assert listed.index("Report 2") < listed.index("Report 1") and body["made_at"] in listed
    assert client.get(f"/plans/{PLAN}/reports/9.pdf", headers=HTML).status_code == 404


def test_a_report_refusal_is_shown_next_to_the_button(client: TestClient, home: Path) -> None:
    with Workspace.open(home) as ws:
        changed = ws.plan_state(PLAN).plan.to_toml().replace("fractions = 25", "fractions = 20")
        load_plan(ws, changed, "plan.toml", Actor("pat", "pat-os", "test"))  # revision 2: no dose yet
    token = log_in(client, PLANNER)
    before = client.get(f"/plans/{PLAN}").text
    assert 'id="make-report" disabled aria-describedby="report-reasons"' in before
    assert "Disabled: no dose for revision 2: compute it first." in before
    rsp = client.post(f"/plans/{PLAN}/reports", data={"csrf": token})
    assert rsp.headers["location"] == f"/plans/{PLAN}#reports"
    page = client.get(f"/plans/{PLAN}").text
    assert "plan CW-E1 revision 2 has no dose; run &#39;rtexport dose CW-E1&#39;" in between(
        page, 'id="reports"', 'id="report-form"'
    )


def test_errors_are_pages_for_a_browser_and_json_for_the_script(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(home, secret="test-secret")
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
        log_in(client, PLANNER)
        missing = client.get("/plans/NOPE", headers=HTML)
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "no plan &#39;NOPE&#39; in this workspace" in missing.text and 'href="/"' in missing.text
        nowhere = client.get("/no/such/page", headers=HTML)
        assert nowhere.status_code == 404 and "There is no page at /no/such/page." in nowhere.text
        assert client.get("/plans/NOPE", headers={"accept": "application/json"}).json() == {
            "detail": "no plan 'NOPE' in this workspace (see 'rtexport plan list')"
        }

        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("a bug")

        monkeypatch.setattr(web_pages, "plan_states", broken)
        failed = client.get("/", headers=HTML)
        assert failed.status_code == 500 and "Something went wrong" in failed.text
        assert "a bug" not in failed.text and "Traceback" not in failed.text


def test_favicon_and_the_server_list(client: TestClient, home: Path) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    servers = [{"name": "Archive", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242}]
    edit_site(home, lambda s: s["dicom"].update(servers=servers))
    log_in(client, PHYSICIST)
    page = client.get(f"/plans/{PLAN}").text
    assert '<link rel="icon" href="/favicon.ico"' in page
    select = between(page, "<label>DICOM server:", "</select>")
    assert '<optgroup label="Servers of the site configuration">' in select
    assert "Archive — AE title ORTHANC</option>" in select
