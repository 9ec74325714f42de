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
from rtexport.model.state import PlanState
from rtexport.pictures.render import ISODOSE, View, dvh_svg, render_slice
from rtexport.report import BeamRow, ExportRow, ReportContent, SliceImage, render_pdf
from rtexport.services.planview import BeamView, view_of
from rtexport.services.site import site_status
from rtexport.services.views import bolus_outlines, colors, course_volume, plan_dvh, targets
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


def _beam_row(b: BeamView) -> BeamRow:
    setup = b.setup
    return BeamRow(
        beam=b.beam,
        bev_svg=b.bev_svg,
        equivalent_square_mm=b.equivalent_square_mm,
        dose=b.dose,
        aim=b.aim,
        technique=setup.technique if setup else None,
        isocenter_mm=setup.isocenter_mm if setup else None,
        ssd_mm=setup.ssd_mm if setup else None,
        entry_mm=setup.entry_mm if setup else None,
        boli=b.boli,
        mu_per_fraction=b.mu_per_fraction,
    )


def report_content(ws: Workspace, state: PlanState, made_at: datetime, made_by: str) -> ReportContent:
    """Everything the report shows: the plan view (:mod:`rtexport.services.planview`), the pictures, the DVH and
    the exports the audit log knows of."""
    plan = state.plan
    if state.dose is None:
        raise PlanError(f"plan {plan.id} revision {state.revision.number} has no dose; run 'rtexport dose {plan.id}'")
    status = site_status(ws)
    site = status.require()
    view = view_of(ws, state, status)
    if view.setup_problem:
        raise PlanError(f"plan {plan.id}: {view.setup_problem}")
    course = view.course
    grid = state.dose.plan.load()
    vol = course_volume(ws, course)
    extra = bolus_outlines(site, course, plan, vol.contours)
    palette = colors(course, plan)
    rx = plan.prescription_gy
    images = []
    for v in View:
        index = view.first_slices[v.value]
        images.append(SliceImage(v.value, index, render_slice(vol, v, index, grid, rx, palette, IMAGE_PX, extra)))
    curves = plan_dvh(vol, grid, course, plan)
    approved = state.approval is not None
    exports = exports_of(ws, plan.id, state.revision.number)
    if state.approval is not None:
        made_at = max([state.approval.at, *(e.at for e in exports)])
    return ReportContent(
        state=state,
        course=course,
        site=site,
        machine=view.machine,
        beams=[_beam_row(b) for b in view.beams],
        mu_check=view.mu_check,
        warnings=list(view.warnings),
        max_dose_gy=float(view.max_dose_gy or 0.0),
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
    if stored is None:  # the row written in this transaction
        raise PlanError(f"plan {plan_id}: the report just stored cannot be read back")
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
