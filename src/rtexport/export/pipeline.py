"""The export pipeline: gate → build → write (folder) or send (C-STORE), each export audited."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset

from rtexport import __version__
from rtexport.dicom.common import BuildContext, encode
from rtexport.dicom.rtdose import build_rtdose
from rtexport.dicom.rtplan import Approval, build_rtplan
from rtexport.dicom.rtstruct import build_rtstruct, needs_derived_structure_set
from rtexport.dicom.uids import UIDFactory
from rtexport.errors import ConfigError, GateError, RTExportError
from rtexport.export.gate import DOSE_ITEMS, Item, check_export, site_findings
from rtexport.export.local import WriteReport, write_folder
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.export.send import Destination, InstanceOutcome, InstanceResult, SendReport, send_objects
from rtexport.geometry.setup import AimedPlan, aim_plan, plan_structures
from rtexport.model.course import Contour
from rtexport.model.dose import DoseGrid
from rtexport.model.site import Site
from rtexport.services import course_contours
from rtexport.workspace import PlanState, Workspace
from rtexport.workspace.dicomio import read_dataset, read_file_meta

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
    """The plan's state and every reason its export of ``items`` is refused."""
    state = ws.plan_state(plan_id)
    return state, _findings(ws, state, items)


def _findings(ws: Workspace, state: PlanState, items: Collection[Item], *, to_build_only: bool = False) -> list[str]:
    """``to_build_only``: the reasons the objects cannot be built (building needs no authorization; exporting does)."""
    site, problems = _site(ws)
    return check_export(
        site=site,
        site_problems=problems,
        course=ws.course(state.plan.course),
        plan=state.plan,
        revision=state.revision.number,
        approved=state.approved or to_build_only,
        authorized_by=state.authorization.user if state.authorization else None,
        has_current_dose=state.dose is not None,
        items=items,
    )


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
    return _build(ws, state, items)


def prebuild(ws: Workspace, plan_id: str) -> int:
    """Build and keep every object an export of the plan's current state can hold (structure set, plan, doses),
    so that exporting it later only copies files. Called when that state is fixed: after the dose is computed and
    when the plan is approved. Builds nothing while the site or plan cannot be exported (the export says why);
    a build error is raised, as the export would raise it. Returns the number of objects ready."""
    state = ws.plan_state(plan_id)
    items = tuple(i for i in Item if i is not Item.CT and (state.dose is not None or i not in DOSE_ITEMS))
    if _findings(ws, state, items, to_build_only=True):
        return 0
    return len(_build(ws, state, items).objects)


def _build(ws: Workspace, state: PlanState, items: Collection[Item]) -> PreparedExport:
    """The objects of ``items`` for ``state``: CT as stored; the others built once per UID key, then kept."""
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
    key = "\x1f".join(ctx.uids.key)

    def stored(kind: ObjectKind, digest: str, description: str) -> ExportObject:
        path = ws.store.path(digest)
        meta = read_file_meta(path)
        return ExportObject(
            kind, meta.sop_class_uid, meta.sop_instance_uid, path.stat().st_size, path=path, description=description
        )

    @functools.cache
    def contours() -> dict[str, list[Contour]]:
        return course_contours(ws, course, plan_structures(plan))

    @functools.cache
    def aimed() -> AimedPlan:
        # Set every beam up once, exactly as the dose engine did (same function, same contours).
        return aim_plan(plan, site, course.ct, contours())

    def build_rs() -> bytes:
        imported = ws.store.get(course.structure_set.sha256)
        original = read_dataset(imported)
        bolus = aimed().bolus
        if not needs_derived_structure_set(original, plan, bolus):
            return imported
        return encode(build_rtstruct(ctx, original, plan, site, bolus, slices=course.slices))

    rs_digest = ws.built(key + "\x1fRS", build_rs)
    derived = rs_digest != course.structure_set.sha256
    rs_obj = stored(
        ObjectKind.RTSTRUCT, rs_digest, "RT Structure Set (derived)" if derived else "RT Structure Set (as imported)"
    )
    if Item.RTSTRUCT in chosen:
        objects.append(rs_obj)
    dose = state.dose
    needs_plan = bool({Item.RTPLAN, Item.DOSE_PLAN, Item.DOSE_BEAM} & set(chosen))
    if not needs_plan:
        return PreparedExport(state, chosen, tuple(objects), ctx.when)

    def build_rp() -> bytes:
        rs = read_dataset(ws.store.get(rs_digest))
        mu = {b.name: b.mu for b in plan.beams if b.mu is not None}
        beam_dose: dict[str, float] = {}
        if dose is not None:
            mu = {b.beam_name: b.mu_per_fraction for b in dose.beams}
            beam_dose = {b.beam_name: b.dose_per_fraction_gy for b in dose.beams}
        approval = (
            Approval("APPROVED", state.approval.user, state.approval.at) if state.approval else Approval("UNAPPROVED")
        )
        return encode(build_rtplan(ctx, course, plan, site, rs, aimed(), mu, beam_dose, approval))

    rp_digest = ws.built(key + "\x1fRP", build_rp)
    if Item.RTPLAN in chosen:
        objects.append(stored(ObjectKind.RTPLAN, rp_digest, f"RT Plan {plan.label}"))
    if dose is not None:
        grids: list[tuple[str | None, DoseGrid, str]] = []
        if Item.DOSE_PLAN in chosen:
            grids.append((None, dose.plan, "RT Dose (plan)"))
        if Item.DOSE_BEAM in chosen:
            grids += [(b.beam_name, b.dose, f"RT Dose (beam {b.beam_name})") for b in dose.beams]

        @functools.cache
        def rp() -> Dataset:
            return read_dataset(ws.store.get(rp_digest))

        for beam_name, grid, description in grids:

            def build_rd(beam_name: str | None = beam_name, grid: DoseGrid = grid) -> bytes:
                return encode(build_rtdose(ctx, course, grid, rp(), beam_name))

            digest = ws.built(f"{key}\x1fRD\x1f{beam_name or ''}", build_rd)
            objects.append(stored(ObjectKind.RTDOSE, digest, description))
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
