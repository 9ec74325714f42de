"""The build stage of an export: the objects of a plan state, CT as stored and the RT objects built once per UID
key and then kept (so an export only copies files, and one UID never names two contents).

Pure of policy: what may be exported is the gate's (:mod:`rtexport.export.gate`) and the export service's.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from rtexport import __version__
from rtexport.dicom.common import BuildContext, encode
from rtexport.dicom.rtdose import build_rtdose
from rtexport.dicom.rtplan import Approval, build_rtplan
from rtexport.dicom.rtstruct import build_rtstruct, needs_derived_structure_set
from rtexport.dicom.uids import UIDFactory
from rtexport.errors import StoreError
from rtexport.export.gate import DOSE_ITEMS, Item
from rtexport.export.lineage import SeriesNumbers, predecessor_plan_uid
from rtexport.export.objects import ExportObject, ObjectKind, read_file_meta
from rtexport.geometry.setup import AimedPlan, aim_plan, plan_structures
from rtexport.model.course import Contour
from rtexport.model.dose import DoseGrid
from rtexport.model.site import Site
from rtexport.model.state import PlanState, StoredDose, StoredGrid
from rtexport.model.values import time_zone
from rtexport.workspace import Workspace
from rtexport.workspace.dicomio import course_contours, read_dataset


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


def _grid_content(grid: StoredGrid) -> dict[str, object]:
    g = grid.geometry
    return {
        "sha256": grid.sha256,
        "origin": g.origin_mm,
        "spacing": g.spacing_mm,
        "shape": g.shape,
        "frame": grid.frame_of_reference_uid,
    }


def dose_content_key(dose: StoredDose) -> str:
    """A digest of everything of a dose that reaches the RT Plan and RT Dose: each grid's array hash, geometry and
    frame, each beam's MU and dose per fraction. Not when it was computed: the same result, the same key."""
    content = {
        "plan": _grid_content(dose.plan),
        "beams": [
            {"name": b.beam_name, "mu": b.mu_per_fraction, "gy": b.dose_per_fraction_gy, "grid": _grid_content(b.grid)}
            for b in dose.beams
        ],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def build_context(site: Site, state: PlanState, operator: str = "") -> BuildContext:
    """UIDs, timestamps and time zone of one export state: fixed for an approved plan, per revision and dose
    content otherwise. ``operator``: the Person Name of who made the revision (OperatorsName)."""
    status = "APPROVED" if state.approval else "UNAPPROVED"
    key = [state.plan.id, str(state.revision.number), state.revision.token, status]
    if state.dose is not None:
        # An approved revision's dose can no longer change: its key keeps the time that dose was computed, as it
        # always has, so the UIDs it was approved with stay. Before approval the dose's content decides: re-dosing
        # an unchanged revision to the same result keeps its UIDs and files, another result gets new ones.
        key.append(state.dose.computed_at.isoformat() if state.approval else dose_content_key(state.dose))
    when = state.approval.at if state.approval else state.revision.created_at
    zone = site.dicom.timezone
    return BuildContext(
        uids=UIDFactory(site.uid_root, key),
        when=when,
        manufacturer=site.manufacturer,
        software_version=f"rtexport {__version__}",
        operator=operator,
        zone=None if zone is None else time_zone(zone),
    )


def buildable_items(state: PlanState) -> tuple[Item, ...]:
    """Every built (non-CT) item an export of ``state`` can hold."""
    return tuple(i for i in Item if i is not Item.CT and (state.dose is not None or i not in DOSE_ITEMS))


def build_objects(ws: Workspace, site: Site, state: PlanState, items: Collection[Item]) -> PreparedExport:
    """The objects of ``items`` for ``state``: CT as stored; the others built once per UID key, then kept."""
    plan = state.plan
    course = ws.course(plan.course)
    maker = ws.users.get(state.revision.created_by)
    ctx = build_context(site, state, maker[0].full_name if maker else "")
    chosen = tuple(i for i in Item if i in items)
    objects: list[ExportObject] = []
    if Item.CT in chosen:
        objects += [
            ExportObject(
                ObjectKind.CT,
                s.sop_class_uid,
                s.sop_instance_uid,
                s.size,
                path=ws.blobs.path(s.sha256),
                sha256=s.sha256,
                description=f"CT z={s.z_mm:g}",
            )
            for s in course.slices
        ]
    key = "\x1f".join(ctx.uids.key)
    now = ws.now()
    series_number = SeriesNumbers(ws, course)

    def stored(kind: ObjectKind, digest: str, description: str) -> ExportObject:
        path = ws.blobs.path(digest)
        try:
            with path.open("rb") as fp:
                meta = read_file_meta(fp)
        except (OSError, EOFError, InvalidDicomError, KeyError, ValueError) as e:
            raise StoreError(
                f"stored file {path} cannot be read as DICOM ({e}): it is missing or damaged; nothing was exported; "
                "run 'rtexport verify'"
            ) from e
        return ExportObject(
            kind,
            meta.sop_class_uid,
            meta.sop_instance_uid,
            path.stat().st_size,
            path=path,
            sha256=digest,
            description=description,
        )

    @functools.cache
    def contours() -> dict[str, list[Contour]]:
        return course_contours(ws, course, plan_structures(plan))

    @functools.cache
    def aimed() -> AimedPlan:
        # Set every beam up once, exactly as the dose engine did (same function, same contours).
        return aim_plan(plan, site, course.ct, contours())

    def build_rs() -> bytes:
        imported = ws.blobs.verified(course.structure_set.sha256)
        original = read_dataset(imported)
        bolus = aimed().bolus
        if not needs_derived_structure_set(original, plan, bolus):
            return imported
        return encode(
            build_rtstruct(ctx, original, plan, site, bolus, series_number=series_number(rs_key), slices=course.slices)
        )

    rs_key = key + "\x1fRS"
    rs_digest = ws.built.digest(rs_key, build_rs, now)
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
        rs = read_dataset(ws.blobs.verified(rs_digest))
        mu = {b.name: b.mu for b in plan.beams if b.mu is not None}
        beam_dose: dict[str, float] = {}
        if dose is not None:
            mu = {b.beam_name: b.mu_per_fraction for b in dose.beams}
            beam_dose = {b.beam_name: b.dose_per_fraction_gy for b in dose.beams}
        approval = (
            Approval("APPROVED", state.approval.person_name, state.approval.at)
            if state.approval
            else Approval("UNAPPROVED")
        )
        number, before = series_number(rp_key), predecessor_plan_uid(ws, state, rp_key)
        rp = build_rtplan(
            ctx, course, plan, site, rs, aimed(), mu, beam_dose, approval, series_number=number, predecessor=before
        )
        return encode(rp)

    rp_key = key + "\x1fRP"
    rp_digest = ws.built.digest(rp_key, build_rp, now)
    if Item.RTPLAN in chosen:
        objects.append(stored(ObjectKind.RTPLAN, rp_digest, f"RT Plan {plan.label}"))
    if dose is not None:
        grids: list[tuple[str | None, str]] = []
        if Item.DOSE_PLAN in chosen:
            grids.append((None, "RT Dose (plan)"))
        if Item.DOSE_BEAM in chosen:
            grids += [(b.beam_name, f"RT Dose (beam {b.beam_name})") for b in dose.beams]

        @functools.cache
        def rp() -> Dataset:
            return read_dataset(ws.blobs.verified(rp_digest))

        def grid_of(beam_name: str | None) -> DoseGrid:
            assert dose is not None
            if beam_name is None:
                return dose.plan.load()
            stored_beam = dose.beam(beam_name)
            assert stored_beam is not None
            return stored_beam.grid.load()

        for beam_name, description in grids:
            rd_key = f"{key}\x1fRD\x1f{beam_name or ''}"

            def build_rd(beam_name: str | None = beam_name, rd_key: str = rd_key) -> bytes:
                grid = grid_of(beam_name)
                return encode(build_rtdose(ctx, course, grid, rp(), beam_name, series_number=series_number(rd_key)))

            digest = ws.built.digest(rd_key, build_rd, now)
            objects.append(stored(ObjectKind.RTDOSE, digest, description))
    return PreparedExport(state, chosen, tuple(objects), ctx.when)
