"""The export pipeline: gate → build → write (folder) or send (C-STORE), each export audited."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rtexport import __version__
from rtexport.dicom.common import BuildContext, encode
from rtexport.dicom.rtdose import build_rtdose
from rtexport.dicom.rtplan import Approval, build_rtplan
from rtexport.dicom.rtstruct import build_rtstruct, needs_derived_structure_set
from rtexport.dicom.uids import UIDFactory
from rtexport.errors import ConfigError, GateError, RTExportError
from rtexport.export.gate import Item, check_export, site_findings
from rtexport.export.local import WriteReport, write_folder
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.export.send import Destination, InstanceOutcome, InstanceResult, SendReport, send_objects
from rtexport.model.site import Site
from rtexport.services import course_contours, plan_bolus_contours, plan_structures, resolve_plan
from rtexport.workspace import PlanState, Workspace
from rtexport.workspace.dicomio import read_dataset

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
Progress = Callable[[ExportObject], None]


@dataclass(frozen=True)
class PreparedExport:
    """Everything an export will write or send, in order (CT, structure set, plan, doses)."""

    state: PlanState
    items: tuple[Item, ...]
    objects: tuple[ExportObject, ...]
    when: datetime

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def uids(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for o in self.objects:
            out.setdefault(o.kind.value, []).append(o.sop_instance_uid)
        return out


def _site(ws: Workspace) -> tuple[Site | None, list[str]]:
    try:
        problems = ws.site_problems()
    except ConfigError as e:
        return None, [str(e)]
    return (ws.site() if not problems else None), problems


def availability(ws: Workspace) -> list[str]:
    """Why export is unavailable for this site (empty when available)."""
    site, problems = _site(ws)
    return site_findings(site, problems)


def gate(ws: Workspace, plan_id: str, items: Collection[Item]) -> tuple[PlanState, list[str]]:
    state = ws.plan_state(plan_id)
    site, problems = _site(ws)
    findings = check_export(
        site=site,
        site_problems=problems,
        course=ws.course(state.plan.course),
        plan=state.plan,
        revision=state.revision.number,
        approved=state.approved,
        authorized_by=state.authorization.user if state.authorization else None,
        has_current_dose=state.dose is not None,
        items=items,
    )
    return state, findings


def build_context(site: Site, state: PlanState) -> BuildContext:
    """UIDs and timestamps of one export state: fixed for an approved plan, per revision (and dose) otherwise."""
    status = "APPROVED" if state.approval else "UNAPPROVED"
    key = [state.plan.id, str(state.revision.number), state.revision.token, status]
    if state.dose is not None:
        key.append(state.dose.computed_at.isoformat())
    when = state.approval.at if state.approval else state.revision.created_at
    return BuildContext(
        uids=UIDFactory(site.uid_root, key),
        when=when,
        manufacturer=site.manufacturer,
        software_version=f"rtexport {__version__}",
    )


def prepare(ws: Workspace, plan_id: str, items: Collection[Item], actor: str) -> PreparedExport:
    """Gate and build; raise :class:`GateError` (audited) with every finding when refused."""
    state, findings = gate(ws, plan_id, items)
    if findings:
        ws.audit(
            actor,
            "export",
            "refused",
            plan_id,
            state.revision.number,
            findings=findings,
            items=[i.value for i in items],
        )
        raise GateError(findings)
    site = ws.site()
    plan = state.plan
    course = ws.course(plan.course)
    ctx = build_context(site, state)
    chosen = tuple(i for i in Item if i in items)
    objects: list[ExportObject] = []
    if Item.CT in chosen:
        objects += [
            ExportObject(
                ObjectKind.CT,
                s.sop_class_uid,
                s.sop_instance_uid,
                s.size,
                path=ws.store.path(s.sha256),
                description=f"CT z={s.z_mm:g}",
            )
            for s in course.slices
        ]
    original = read_dataset(ws.store.get(course.structure_set.sha256))
    contours = course_contours(ws, course, plan_structures(plan))
    # Aim every beam once, as the dose engine did: a beam given a target gets that structure's centroid.
    plan = resolve_plan(plan, contours)
    bolus = plan_bolus_contours(site, course, plan, contours)
    if needs_derived_structure_set(original, plan, bolus):
        rs = build_rtstruct(ctx, original, plan, site, bolus, slices=course.slices)
        rs_obj = ExportObject.from_bytes(
            ObjectKind.RTSTRUCT,
            encode(rs),
            RT_STRUCTURE_SET_STORAGE,
            str(rs.SOPInstanceUID),
            "RT Structure Set (derived)",
        )
    else:
        rs = original
        rs_obj = ExportObject(
            ObjectKind.RTSTRUCT,
            RT_STRUCTURE_SET_STORAGE,
            course.structure_set.sop_instance_uid,
            ws.store.path(course.structure_set.sha256).stat().st_size,
            path=ws.store.path(course.structure_set.sha256),
            description="RT Structure Set (as imported)",
        )
    if Item.RTSTRUCT in chosen:
        objects.append(rs_obj)
    dose = state.dose
    mu = {b.name: b.mu for b in plan.beams if b.mu is not None}
    beam_dose: dict[str, float] = {}
    if dose is not None:
        mu = {b.beam_name: b.mu_per_fraction for b in dose.beams}
        beam_dose = {b.beam_name: b.dose_per_fraction_gy for b in dose.beams}
    approval = (
        Approval("APPROVED", state.approval.user, state.approval.at) if state.approval else Approval("UNAPPROVED")
    )
    needs_plan = bool({Item.RTPLAN, Item.DOSE_PLAN, Item.DOSE_BEAM} & set(chosen))
    if needs_plan:
        rp = build_rtplan(ctx, course, plan, site, rs, mu, beam_dose, approval)
        if Item.RTPLAN in chosen:
            objects.append(
                ExportObject.from_bytes(
                    ObjectKind.RTPLAN,
                    encode(rp),
                    str(rp.SOPClassUID),
                    str(rp.SOPInstanceUID),
                    f"RT Plan {plan.label}",
                )
            )
        if dose is not None and Item.DOSE_PLAN in chosen:
            rd = build_rtdose(ctx, course, dose.plan, rp, None)
            objects.append(
                ExportObject.from_bytes(
                    ObjectKind.RTDOSE,
                    encode(rd),
                    str(rd.SOPClassUID),
                    str(rd.SOPInstanceUID),
                    "RT Dose (plan)",
                )
            )
        if dose is not None and Item.DOSE_BEAM in chosen:
            for b in dose.beams:
                rd = build_rtdose(ctx, course, b.dose, rp, b.beam_name)
                objects.append(
                    ExportObject.from_bytes(
                        ObjectKind.RTDOSE,
                        encode(rd),
                        str(rd.SOPClassUID),
                        str(rd.SOPInstanceUID),
                        f"RT Dose (beam {b.beam_name})",
                    )
                )
    return PreparedExport(state, chosen, tuple(objects), ctx.when)


def export_to_folder(
    ws: Workspace,
    plan_id: str,
    items: Collection[Item],
    folder: Path | None = None,
    actor: str = "system",
    progress: Progress | None = None,
    prepared: PreparedExport | None = None,
) -> tuple[PreparedExport, WriteReport]:
    """Gate, build and write to ``folder`` (default: the site's export folder)."""
    prep = prepared or prepare(ws, plan_id, items, actor)
    target = folder if folder is not None else ws.resolve(ws.site().dicom.export_folder)
    rev = prep.state.revision.number
    try:
        report = write_folder(prep.objects, target, progress)
    except RTExportError as e:
        ws.audit(
            actor,
            "export",
            "failed",
            plan_id,
            rev,
            destination=str(target),
            items=[i.value for i in prep.items],
            error=str(e),
            written=getattr(e, "written", []),
        )
        raise
    ws.audit(
        actor,
        "export",
        "ok",
        plan_id,
        rev,
        destination=str(target),
        items=[i.value for i in prep.items],
        written=len(report.written),
        identical=len(report.identical),
        uids=prep.uids(),
    )
    return prep, report


def export_to_server(
    ws: Workspace,
    plan_id: str,
    items: Collection[Item],
    dest: Destination,
    actor: str = "system",
    progress: Callable[[InstanceResult], None] | None = None,
    commit: bool = False,
    prepared: PreparedExport | None = None,
) -> tuple[PreparedExport, SendReport]:
    """Gate, build and C-STORE to ``dest``; audited in the spirit of "DICOM Instances Transferred" (110104)."""
    prep = prepared or prepare(ws, plan_id, items, actor)
    site = ws.site()
    rev = prep.state.revision.number
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    try:
        report = send_objects(
            prep.objects,
            dest,
            site.dicom.local_ae_title,
            progress=progress,
            commit=commit,
            commit_listen_port=site.dicom.commitment_port,
            commit_listen_host=site.dicom.commitment_host,
        )
    except RTExportError as e:
        ws.audit(
            actor,
            "export-server",
            "failed",
            plan_id,
            rev,
            destination=where,
            items=[i.value for i in prep.items],
            error=str(e),
            event="110104 DICOM Instances Transferred",
        )
        raise
    stored = [
        r.obj.sop_instance_uid for r in report.results if r.outcome in (InstanceOutcome.STORED, InstanceOutcome.WARNING)
    ]
    failed = {
        r.obj.sop_instance_uid: f"{r.outcome.value} {r.meaning}"
        for r in report.results
        if r.outcome not in (InstanceOutcome.STORED, InstanceOutcome.WARNING)
    }
    ws.audit(
        actor,
        "export-server",
        "ok" if report.ok else "incomplete",
        plan_id,
        rev,
        destination=where,
        items=[i.value for i in prep.items],
        event="110104 DICOM Instances Transferred",
        calling_ae=site.dicom.local_ae_title,
        stored=stored,
        not_stored=failed,
        committed=None if report.committed is None else list(report.committed),
        study=prep.state.plan.course,
    )
    return prep, report
