"""Query/retrieve from the import page against a real archive (Orthanc): find a patient's studies (C-FIND), retrieve
one (C-MOVE) into the receiver, import it; each step through the services of ``rtexport query``/``retrieve``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtexport.demo.phantom import write_phantom
from rtexport.services.workspaces import open_workspace
from tests.support.orthanc import Orthanc, free_port
from tests.web.conftest import PLANNER, SMALL, edit_site, log_in, pages_of
from tests.web.test_browser import serving

pytestmark = pytest.mark.integration
AET = "RTEXPORT"  # the site's local AE title: the archive knows one AE title of ours


@pytest.fixture
def archive(home: Path, tmp_path: Path) -> Iterator[Orthanc]:
    """Orthanc holding the small phantom and knowing our receiver; the site names it "pacs"."""
    port = free_port()
    sent = tmp_path / "sent"
    write_phantom(sent, SMALL)
    with Orthanc(tmp_path / "orthanc", modalities={"rtx": (AET, "127.0.0.1", port)}) as orthanc:
        for path in sorted(sent.glob("*.dcm")):
            orthanc.request("POST", "/instances", raw=path.read_bytes())
        server = {"name": "pacs", "ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}
        edit_site(home, lambda s: s["dicom"].update(receiver={"ae_title": AET, "port": port}, servers=[server]))
        yield orthanc


def _section(html: str) -> str:
    return html[html.index('id="import-archive"') :]


def test_a_study_found_on_the_archive_is_retrieved_and_imported(
    archive: Orthanc, client: TestClient, home: Path
) -> None:
    token = log_in(client, PLANNER)
    assert "<option>pacs</option>" in _section(client.get("/import").text)

    patients = client.post("/import/query", data={"csrf": token, "server": "pacs", "level": "patient",
                                                  "patient_id": "RTX*"})  # fmt: skip
    assert patients.status_code == 200
    assert "1 patient match(es) on pacs" in _section(patients.text)
    patient_id = re.search(r'name="patient_id" value="(RTX[^"]*)"', _section(patients.text).split("<table", 1)[1])
    assert patient_id is not None  # the patient's row asks for their studies
    found = client.post("/import/query", data={"csrf": token, "server": "pacs", "level": "study",
                                               "patient_id": patient_id[1]})  # fmt: skip
    results = _section(found.text)
    assert "1 study match(es) on pacs" in results and "Electron Phantom" in results
    study_uid = re.search(r'name="study_uid" value="([0-9.]+)"', results)
    assert study_uid is not None
    series = _section(client.post("/import/query", data={"csrf": token, "server": "pacs", "level": "series",
                                                         "study_uid": study_uid[1]}).text)  # fmt: skip
    assert "2 series match(es) on pacs" in series
    assert re.search(r"<td>CT</td>.*<td>16</td>", series) and "<td>RTSTRUCT</td>" in series
    none = client.post("/import/query", data={"csrf": token, "server": "pacs", "patient_name": "Nobody*"})
    assert "No study on pacs matches." in _section(none.text)

    moved = client.post("/import/retrieve", data={"csrf": token, "server": "pacs", "study_uid": study_uid[1]})
    assert moved.status_code == 303 and moved.headers["location"] == "/import#import-incoming"
    listed = client.get("/import").text
    assert "pacs sent 17 instance(s), 0 failed" in listed
    incoming = listed[listed.index('id="import-incoming"') : listed.index('id="import-archive"')]
    set_id = incoming.split('name="set_id" value="', 1)[1].split('"', 1)[0]
    rsp = client.post("/import/incoming", data={"csrf": token, "set_id": set_id, "course_id": "C-QR"})
    assert rsp.headers["location"] == "/courses/C-QR/plans/new"

    with open_workspace(home) as ws:
        assert len(ws.course("C-QR").slices) == 16
        done = [(e["actor"], e["via"], e["action"], e["outcome"]) for e in ws.audit_log.entries()]
    assert [d for d in done if d[2] in ("query", "retrieve")] == [
        *[("pat", "web", "query", "ok")] * 4,
        ("pat", "web", "retrieve", "ok"),
    ]


def test_query_refusals_are_shown_beside_the_form(archive: Orthanc, client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    rsp = client.post("/import/query", data={"csrf": token, "server": "nope"})
    assert rsp.status_code == 303 and rsp.headers["location"] == "/import#query-message"
    assert "no DICOM server &#39;nope&#39; to query" in _section(client.get("/import").text)

    archive.stop()
    client.post("/import/query", data={"csrf": token, "server": "pacs"})
    shown = _section(client.get("/import").text)
    assert re.search(r'id="query-message">cannot query ORTHANC@127\.0\.0\.1:\d+: connection refused', shown)
    # without CSRF nothing is asked of the archive
    assert client.post("/import/query", data={"server": "pacs"}).status_code == 403


def test_in_chromium_by_keyboard_a_patient_is_found_retrieved_and_imported(
    archive: Orthanc, home: Path, chromium: Any
) -> None:
    """The dosimetrist's way in a real browser: find the patient (typed, Enter), list the study's series, retrieve
    it, import it as a course; the course is then offered for a new plan."""
    from playwright.sync_api import expect

    with serving(home) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/import")
        page.fill("input[name=name]", PLANNER[0])
        page.fill("input[name=password]", PLANNER[1])
        page.keyboard.press("Enter")
        block = page.locator("#import-archive")
        block.get_by_label("Find").select_option("patient")
        block.get_by_label("Patient ID").fill("RTX*")
        block.get_by_label("Patient ID").press("Enter")
        expect(page.locator("#query-results caption")).to_have_text("1 patient match(es) on pacs")
        page.locator("#query-results button", has_text="Studies").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#query-results")).to_contain_text("Electron Phantom")
        page.locator("#query-results button", has_text="Series").click()
        expect(page.locator("#query-results caption")).to_have_text("2 series match(es) on pacs")
        expect(page.locator("#query-results")).to_contain_text("RTSTRUCT")
        page.get_by_role("button", name="Retrieve this study").click()
        expect(page.locator("#import-message")).to_contain_text("pacs sent 17 instance(s), 0 failed")
        incoming = page.locator("#import-incoming")
        incoming.get_by_label("Course id").fill("C-BR")
        incoming.get_by_label("Course id").press("Enter")
        expect(page.locator("h1")).to_contain_text("C-BR")
    with open_workspace(home) as ws:
        assert len(ws.course("C-BR").slices) == 16
