"""End to end in headless Chromium: log in, authorize, export to a folder and to Orthanc, a disabled block."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest
import uvicorn

from rtexport.web.app import create_app
from tests.conftest import strict_mu_check
from tests.support.dciodvfy import assert_valid
from tests.support.orthanc import Orthanc, free_port
from tests.web.conftest import PHYSICIST, PLAN, PLANNER, edit_site, pages_of

SCREENSHOT = Path("/tmp/rtexport-plan.png")

pytestmark = pytest.mark.integration


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    with Orthanc(tmp_path / "orthanc") as o:
        yield o


@contextmanager
def serving(home: Path) -> Iterator[str]:
    """The app for ``home`` on a free loopback port, for as long as the block runs."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(home), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the web app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def server(home: Path, orthanc: Orthanc) -> Iterator[str]:
    """The app on a free loopback port, with the test Orthanc in the site's server list."""
    servers = [{"name": "Test PACS", "ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}]
    edit_site(home, lambda s: s["dicom"].update(servers=servers))
    with serving(home) as url:
        yield url


def test_authorize_export_to_folder_and_orthanc_then_disabled(
    server: str, home: Path, orthanc: Orthanc, tmp_path: Path, chromium: Any
) -> None:
    from playwright.sync_api import expect

    with pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.goto(f"{server}/plans/{PLAN}")
        # Log in as the planner: the login page brings us back to the plan.
        page.fill("input[name=name]", PLANNER[0])
        page.fill("input[name=password]", PLANNER[1])
        page.click("button:has-text('Log in')")
        expect(page.locator("h1")).to_contain_text("Chestwall e-")
        expect(page.locator("#export-local")).to_be_disabled()  # not authorized yet
        # A physicist authorizes at the planner's screen.
        form = page.locator("#authorize-form")
        form.locator("input[name=name]").fill(PHYSICIST[0])
        form.locator("input[name=password]").fill(PHYSICIST[1])
        form.locator("button").click()
        expect(page.locator("#authorization")).to_contain_text("A qualified person has authorized the export")
        expect(page.locator("#authorization")).to_contain_text("phil")
        for view in ("axial", "sagittal", "coronal"):
            img = page.locator(f"figure[data-view={view}] img")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        # The page works under its Content-Security-Policy: colours set by the script, nothing refused.
        swatch = page.locator(".legend i").first
        assert swatch.evaluate("el => getComputedStyle(el).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")

        # Local export into a sub-folder of the export root.
        folder = home / "dicom-export" / "browser"
        page.fill("#folder", str(folder))
        page.click("#export-local")
        expect(page.locator("#progress-title")).to_have_text("Export complete")
        files = sorted(folder.glob("*.dcm"))
        assert len(files) == 16 + 1 + 1 + 1 + 2
        expect(page.locator("#results tbody tr")).to_have_count(len(files))
        assert_valid(next(p for p in files if p.name.startswith("RP.")))

        # Server export: the site's server is preselected; test the connection, then export.
        expect(page.locator("#server-info")).to_contain_text(str(orthanc.dicom_port))
        page.click("#echo")
        expect(page.locator("#echo-result")).to_contain_text("success")
        page.click("#export-server")
        expect(page.locator("#progress-title")).to_have_text("Export complete", timeout=60_000)
        sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
        assert orthanc.sop_instance_uids() == sent
        expect(page.locator("#results tbody td.good")).to_have_count(len(files))
        page.locator("#export").screenshot(path=str(SCREENSHOT.with_name("rtexport-export.png")))

        # The same page on a site without a CT curve: the block is disabled and says why.
        edit_site(home, lambda s: s.update(ct_curves=[]))
        page.reload()
        expect(page.locator(".disabled-reasons")).to_contain_text("no CT curve")
        expect(page.locator("#export-local")).to_be_disabled()
        expect(page.locator("#export-server")).to_be_disabled()
    assert [m for m in console if "Content Security Policy" in m] == []


def test_refusals_beside_their_forms_and_a_report_downloaded(home: Path, tmp_path: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    strict_mu_check(home)  # every beam beyond the action level: approval asks for an acknowledgement

    with serving(home) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/plans/{PLAN}")
        page.fill("input[name=name]", PLANNER[0])
        page.fill("input[name=password]", PLANNER[1])
        page.click("button:has-text('Log in')")
        # A wrong password on Authorize: the message is in sight, beside the form that was used.
        form = page.locator("#authorize-form")
        form.locator("input[name=name]").fill(PHYSICIST[0])
        form.locator("input[name=password]").fill("not-the-password")
        form.locator("button").click()
        message = page.locator("#authorize-message")
        expect(message).to_contain_text("unknown user or wrong password")
        expect(message).to_be_in_viewport()
        expect(page.locator("#authorize-form")).to_be_in_viewport()
        # Approval without acknowledging the MU check: refused beside the approval form, with the beams.
        page.locator("details.approve summary").click()
        approve = page.locator("#approve-form")
        approve.locator("input[name=name]").fill(PHYSICIST[0])
        approve.locator("input[name=password]").fill(PHYSICIST[1])
        approve.locator("button").click()
        refused = page.locator("#approve-message")
        expect(refused).to_contain_text("acknowledge the independent MU check")
        expect(refused).to_contain_text("beam ANT_OBL: engine")
        expect(refused).to_be_in_viewport()
        # The report: made, downloaded, listed (Plan Reports is folded at first).
        page.locator("#reports > summary").click()
        page.locator("#make-report").scroll_into_view_if_needed()
        with page.expect_download() as download:
            page.click("#make-report")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "report-CW-E1-rev1-1.pdf" and saved.read_bytes().startswith(b"%PDF-")
        expect(page.locator("#reports-message")).to_contain_text("Report 1 made")
        expect(page.locator("#reports-list tbody tr")).to_have_count(1)
        expect(page.locator("#reports-list tbody tr").first).to_contain_text("pat")
        page.reload()
        expect(page.locator("#reports-list tbody tr")).to_have_count(1)
