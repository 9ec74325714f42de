"""Plan reports: the PDF a physicist signs a plan from, made from the workspace, kept, and listed.

The report of an approved plan is dated by its latest fact (the approval, or a later export it lists) and says so;
it holds no time of making and no random identifier, so making it again gives the same bytes. The report of an
unapproved plan states when and by whom it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rtexport.errors import InputError, PlanError
from rtexport.export.objects import ObjectKind
from rtexport.model.people import Actor
from rtexport.model.plan import default_cutout
from rtexport.model.state import PlanState
from rtexport.mucheck import equivalent_square_mm
from rtexport.pictures.render import ISODOSE, View, bev_svg, dvh_svg, render_slice
from rtexport.report import BeamRow, ExportRow, ReportContent, SliceImage, render_pdf
from rtexport.services.checks import dose_warnings, mu_check
from rtexport.services.views import bolus_outlines, colors, course_volume, plan_dvh, slices_through, targets
from rtexport.workspace import Workspace
from rtexport.workspace.reports import StoredReport
from rtexport.workspace.workspace import iso

EXPORT_ACTIONS = ("export", "export-server")
IMAGE_PX = 520  # each slice picture, about 60 mm wide on the page


@dataclass(frozen=True)
class MadeReport:
    """A report just made: its row in the workspace and the PDF."""

    stored: StoredReport
    pdf: bytes

    @property
    def filename(self) -> str:
        return report_filename(self.stored)


def report_filename(r: StoredReport) -> str:
    return f"report-{r.plan_id}-rev{r.revision}-{r.id}.pdf"


def exports_of(ws: Workspace, plan_id: str, revision: int) -> list[ExportRow]:
    """The DICOM exports of a revision the audit log knows of, oldest first: each finished one with its outcome,
    and each started one that never recorded an end (the process stopped), since its files may have left."""
    entries = [e for e in ws.audit_log.entries(plan_id) if e["revision"] == revision and e["action"] in EXPORT_ACTIONS]
    started = {e["id"]: e for e in entries if e["outcome"] == "started"}
    rows: list[ExportRow] = []
    ended: set[int] = set()
    for e in entries:
        d: dict[str, Any] = e["detail"]
        if e["outcome"] in ("started", "refused"):
            continue
        begin = started.get(d.get("started"))
        if begin is not None:
            ended.add(begin["id"])
        uids: dict[str, list[str]] = (begin or e)["detail"].get("uids") or {}
        rows.append(_export_row(e, uids, d.get("not_stored") or {}))
    unfinished = [e for e in started.values() if e["id"] not in ended]
    rows += [_export_row(e, e["detail"].get("uids") or {}, {}, "no end recorded") for e in unfinished]
    return sorted(rows, key=lambda r: r.at)


def _export_row(
    e: dict[str, Any], uids: dict[str, list[str]], not_stored: dict[str, str], outcome: str = ""
) -> ExportRow:
    return ExportRow(
        at=datetime.fromisoformat(e["at"]),
        who=e["actor"],
        os_user=e["os_user"],
        to_server=e["action"] == "export-server",
        destination=e["detail"].get("destination", ""),
        outcome=outcome or e["outcome"],
        ct_images=len(uids.get(ObjectKind.CT.value, [])),
        uids={k: list(v) for k, v in uids.items() if k != ObjectKind.CT.value},
        not_stored=dict(not_stored),
    )


def report_content(ws: Workspace, state: PlanState, made_at: datetime, made_by: str) -> ReportContent:
    """Everything the report shows, gathered from the workspace."""
    plan = state.plan
    site = ws.site()
    course = ws.course(plan.course)
    machine = site.machine(plan.machine)
    if state.dose is None:
        raise PlanError(f"plan {plan.id} revision {state.revision.number} has no dose; run 'rtexport dose {plan.id}'")
    dose = state.dose
    grid = dose.plan.load()
    vol = course_volume(ws, course)
    extra = bolus_outlines(site, course, plan, vol.contours)
    palette = colors(course, plan)
    first = dose.beams[0].normalization_point_mm if dose.beams else None
    where = slices_through(course.ct, first)
    rx = plan.prescription_gy
    images = [
        SliceImage(view.value, where[view], render_slice(vol, view, where[view], grid, rx, palette, IMAGE_PX, extra))
        for view in View
    ]
    curves = plan_dvh(vol, grid, course, plan)
    beams = []
    for b in plan.beams:
        app = machine.applicator(b.applicator) if machine else None
        outline = b.cutout_mm or (default_cutout(app.shape, app.opening_mm) if app else None)
        beams.append(
            BeamRow(
                beam=b,
                bev_svg=bev_svg(b, app),
                equivalent_square_mm=None if outline is None else equivalent_square_mm(outline),
                dose=dose.beam(b.name),
            )
        )
    approved = state.approval is not None
    exports = exports_of(ws, plan.id, state.revision.number)
    if approved:
        assert state.approval is not None
        made_at = max([state.approval.at, *(e.at for e in exports)])
    return ReportContent(
        state=state,
        course=course,
        site=site,
        machine=machine,
        beams=beams,
        mu_check=mu_check(site, state),
        warnings=dose_warnings(site, plan, grid, dose.beams),
        max_dose_gy=float(grid.gy.max()),
        images=images,
        colors=palette,
        isodose=ISODOSE,
        dvh_svg=dvh_svg(curves, plan.prescription_gy),
        curves=curves,
        targets=targets(course, plan),
        exports=exports,
        as_of=made_at,
        made_by=None if approved else made_by,
    )


def make_report(ws: Workspace, plan_id: str, actor: Actor) -> MadeReport:
    """Make the plan's report for its current revision, keep it, and audit it."""
    state = ws.plan_state(plan_id)
    made_at = ws.clock()
    who = actor.user if actor.user is not None else f"computer account {actor.os_user}"
    pdf = render_pdf(report_content(ws, state, made_at, who))
    digest, _ = ws.blobs.put(pdf)
    rev = state.revision.number
    with ws.transaction():
        if ws.plans.last_revision(plan_id).number != rev:
            raise PlanError(f"plan {plan_id} changed while its report was made; make the report again")
        report_id = ws.reports.add(plan_id, rev, state.approved, digest, len(pdf), iso(made_at), actor.name)
        ws.audit(actor, "report", "ok", plan_id, rev, report=report_id, sha256=digest, approved=state.approved)
    stored = ws.reports.get(report_id)
    assert stored is not None
    return MadeReport(stored, pdf)


def plan_reports(ws: Workspace, plan_id: str) -> list[StoredReport]:
    """The plan's reports, newest first."""
    ws.plans.last_revision(plan_id)  # the plan exists
    return ws.reports.of_plan(plan_id)


def report_pdf(ws: Workspace, plan_id: str, report_id: int) -> tuple[StoredReport, bytes]:
    """A kept report of the plan and its PDF (proven unchanged since it was made)."""
    r = ws.reports.get(report_id)
    if r is None or r.plan_id != plan_id:
        raise InputError(f"plan {plan_id} has no report {report_id} (see 'rtexport report {plan_id} --list')")
    return r, ws.blobs.verified(r.sha256)
