"""The plan report a physicist signs from: what it says (read back with pdftotext), that its pages render
(pdftoppm), that an approved plan's report is the same file every time, and that reports are kept and listed."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtexport.errors import PlanError
from rtexport.export.gate import ALL_ITEMS
from rtexport.model.display import local_time, person
from rtexport.model.people import Actor
from rtexport.model.plan import default_cutout
from rtexport.services.approval import approve
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import clone_plan
from rtexport.services.report import MadeReport, exports_of, make_report, plan_reports, report_pdf
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, PHYS, Clock
from tests.report.conftest import pdf_images, pdf_info, pdf_pages, pdf_text

pytestmark = pytest.mark.integration  # poppler-utils
PLAN = "CW-E1"
PAT = Actor("pat", "pat-os", "test")
KINDS = {"RS": "RT Structure Set", "RP": "RT Plan", "RD": "RT Dose"}


def equivalent_square(points: list[tuple[float, float]]) -> float:
    p = np.asarray(points, dtype=float)
    q = np.roll(p, -1, axis=0)
    area = abs(float(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]))) / 2
    return 4 * area / float(np.sum(np.hypot(*(q - p).T)))


@dataclass(frozen=True)
class Made:
    """A workspace as the ``planned`` fixture gives it and the report made of it: for the tests that only read."""

    ws: Workspace
    report: MadeReport


@pytest.fixture(scope="module")
def made(_planned_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    """The report of the planned workspace (demo plan, dose, export authorized, not approved), made once, in
    Berlin time as each test here reads it."""
    home = tmp_path_factory.mktemp("report") / "planned"
    shutil.copytree(_planned_master, home)
    clock = Clock()
    clock.now += timedelta(hours=1)  # after everything the master did
    ws = Workspace.open(home, clock=clock)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TZ", "Europe/Berlin")
            time.tzset()
            report = make_report(ws, PLAN, PAT)
        time.tzset()
        yield Made(ws, report)
    finally:
        ws.close()


def test_every_page_names_the_patient_and_counts_pages(made: Made, tmp_path: Path) -> None:
    pdf = made.report.pdf
    pages = pdf_pages(pdf, tmp_path)
    patient = made.ws.course("C1").patient
    assert len(pages) >= 2
    for k, page in enumerate(pages, start=1):
        assert f"{person(patient.patient_name)} · ID {patient.patient_id}" in page
        assert "course C1" in page and f"Plan {PLAN}" in page
        assert f"page {k} of {len(pages)}" in page


def test_an_unapproved_plans_report_says_so_and_when_and_by_whom_it_was_made(made: Made, tmp_path: Path) -> None:
    report = made.report
    text = pdf_text(report.pdf, tmp_path)
    when = local_time(report.stored.made_at)
    assert f"NOT APPROVED. Report made {when} by pat from revision 1" in text
    assert when.endswith(("CET", "CEST"))  # local time, the zone named
    assert pdf_info(report.pdf, tmp_path)["CreationDate"] == report.stored.made_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_report_shows_the_plan_its_beams_and_the_mu_check(made: Made, tmp_path: Path) -> None:
    planned = made.ws
    state = planned.plan_state(PLAN)
    assert state.dose is not None and state.authorization is not None
    text = pdf_text(made.report.pdf, tmp_path)
    auth = state.authorization
    for fact in (
        "Plan CW-E1 “Chestwall e-”",
        "Revision 1 of 1",
        f"Export authorization Phil Physicist (phil), {local_time(auth.at)}",
        "Machine DemoLinac",
        "Prescription 50 Gy in 25 fractions (2 Gy per fraction)",
        "Density overrides Prosthesis → Water",
        "CT curve · External Default · OUTLINE2",
    ):
        assert fact in text, fact
    site = planned.site()
    machine = site.machine("DemoLinac")
    assert machine is not None
    for beam in state.plan.beams:
        app = machine.applicator(beam.applicator)
        assert app is not None
        stored = state.dose.beam(beam.name)
        assert stored is not None
        eqsq = equivalent_square(beam.cutout_mm or default_cutout(app.shape, app.opening_mm))
        x, y, z = stored.normalization_point_mm
        for fact in (
            f"Beam {beam.name} · {beam.energy_mev:g} MeV electrons",
            f"Applicator · cutout {beam.applicator} · custom cutout, equivalent square {eqsq:.1f} mm",
            f"Setup fixed SSD · SSD {beam.ssd_mm:.1f} mm · surface entry (",
            f"Gantry · collimator · couch {beam.gantry_deg:g}° · {beam.collimator_deg:g}° · {beam.couch_deg:g}°",
            f"MU per fraction {stored.mu_per_fraction:.1f}",
            f"Normalization point ({x:.1f}, {y:.1f}, {z:.1f}) mm, {stored.normalization_depth_mm:.1f} mm deep · "
            f"{stored.dose_per_fraction_gy:.3f} Gy per fraction there",
        ):
            assert fact in text, fact
    # both beams cross ANT's bolus: each names the exported BOLUS ROI (the RT Plan references it on both)
    assert "Bolus Bolus_ANT · own bolus 10 mm Superflab, margin 10 mm" in text
    assert "Bolus Bolus_ANT Normalization" in text or "Bolus Bolus_ANT MU per fraction" in text
    assert "Bolus none" not in text
    # the independent check: each beam's engine MU beside the hand calculation and their difference
    for beam in state.plan.beams:
        stored = state.dose.beam(beam.name)
        assert stored is not None
        assert re.search(rf"{beam.name} {stored.mu_per_fraction:.1f} [0-9]+\.[0-9] [+-][0-9]+\.[0-9] %", text), (
            beam.name
        )
    # the target's row has D95, V90 and V95 besides volume, Dmax and Dmean; the others Dmax and Dmean
    assert "Structure Volume cm³ Dmax Gy Dmean Gy D95 Gy V90 % V95 %" in text
    assert re.search(r"PTV \(target\)( [0-9]+\.[0-9]+){6} BODY( [0-9]+\.[0-9]+){3} OUTLINE2", text)


def test_pages_render_with_their_pictures(made: Made, tmp_path: Path) -> None:
    pdf = made.report.pdf
    pages = pdf_images(pdf, tmp_path)
    assert len(pages) == len(pdf_pages(pdf, tmp_path))

    def share(img: object) -> tuple[float, float]:
        """Fractions of the page that are near black (the CT's air) and strongly coloured (dose, isodoses)."""
        a = np.asarray(img, dtype=np.int16)
        return float(np.mean(a.max(axis=2) < 40)), float(np.mean((a.max(axis=2) - a.min(axis=2)) > 60))

    # the page with the CT pictures: their air is black, their dose wash and isodose lines coloured
    black, colour = max(share(p) for p in pages)
    assert black > 0.02 and colour > 0.01


def test_the_exports_of_the_revision_are_listed_with_their_uids(planned: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    export_plan(planned, PLAN, ALL_ITEMS, FolderDestination(folder), PAT)
    text = pdf_text(make_report(planned, PLAN, PAT).pdf, tmp_path)
    (entry,) = [e for e in planned.audit_log.entries(PLAN) if e["action"] == "export" and e["outcome"] == "ok"]
    assert f"{local_time(datetime.fromisoformat(entry['at']))} · folder {folder} · by pat" in text
    assert "16 image(s), the imported instances unchanged" in text
    new_objects = [p for p in folder.glob("*.dcm") if not p.name.startswith("CT.")]
    assert len(new_objects) == 1 + 1 + 3  # RS, RP, plan and beam doses
    for path in new_objects:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert f"{KINDS[path.name[:2]]} {uid}" in text


def test_an_approved_plans_report_is_the_same_file_every_time(planned: Workspace, tmp_path: Path) -> None:
    approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True)
    first = make_report(planned, PLAN, PAT)
    second = make_report(planned, PLAN, Actor("phil", "phil-os", "test"))  # later, by someone else
    assert second.stored.made_at > first.stored.made_at
    assert first.pdf == second.pdf
    approval = planned.plan_state(PLAN).approval
    assert approval is not None
    assert pdf_info(first.pdf, tmp_path)["CreationDate"] == approval.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = pdf_text(first.pdf, tmp_path)
    assert f"Approved by Phil Physicist (phil) on {local_time(approval.at)}" in text
    assert "Report made" not in text
    # a later export is a new fact: the report lists it and is dated by it
    export_plan(planned, PLAN, ALL_ITEMS, FolderDestination(tmp_path / "out"), PAT)
    third = make_report(planned, PLAN, PAT).pdf
    last_export = max(e["at"] for e in planned.audit_log.entries(PLAN) if e["action"] == "export")
    assert third != first.pdf
    assert pdf_info(third, tmp_path)["CreationDate"] == last_export.replace("+00:00", "Z")


def test_reports_are_kept_listed_and_audited(planned: Workspace, tmp_path: Path) -> None:
    first = make_report(planned, PLAN, PAT)
    second = make_report(planned, PLAN, PAT)
    listed = plan_reports(planned, PLAN)
    assert [r.id for r in listed] == [second.stored.id, first.stored.id]  # newest first
    assert all(r.revision == 1 and not r.approved and r.made_by == "pat" for r in listed)
    stored, pdf = report_pdf(planned, PLAN, first.stored.id)
    assert stored == first.stored and pdf == first.pdf
    audited = [e for e in planned.audit_log.entries(PLAN) if e["action"] == "report"]
    assert [e["detail"]["report"] for e in audited] == [first.stored.id, second.stored.id]
    assert audited[0]["detail"]["sha256"] == first.stored.sha256


def test_a_plan_without_dose_has_no_report(planned: Workspace) -> None:
    clone_plan(planned, PLAN, "CW-E2", ACTOR)
    with pytest.raises(PlanError, match=r"plan CW-E2 revision 1 has no dose; run 'rtexport dose CW-E2'"):
        make_report(planned, "CW-E2", PAT)
    assert plan_reports(planned, "CW-E2") == []


def test_an_export_whose_process_stopped_is_listed_too(planned: Workspace) -> None:
    """An export audited as started with no end (the process was killed): its files may have left, so it is
    listed, with the UIDs it was sending and that no end was recorded."""
    uids = {"CT": ["1.2.3.1", "1.2.3.2"], "RP": ["2.25.42"]}
    planned.audit(PAT, "export-server", "started", PLAN, 1, destination="PACS@10.0.0.1:104", uids=uids)
    (row,) = exports_of(planned, PLAN, 1)
    assert row.outcome == "no end recorded" and row.to_server and row.destination == "PACS@10.0.0.1:104"
    assert row.ct_images == 2 and row.uids == {"RP": ["2.25.42"]} and row.who == "pat"
