"""The build stage of an export: the objects of a plan state, CT as stored and the RT objects built once per UID
key (so an export only copies files, and one UID never names two contents).

It reads storage through :class:`BuildStore` alone (stored files, objects built earlier) and keeps nothing: the
objects it builds come back in memory (:attr:`PreparedExport.new`) for the export service to keep. Pure of policy:
what may be exported is the gate's (:mod:`rtexport.export.gate`) and the export service's.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from rtexport import __version__
from rtexport.dicom.common import BuildContext, encode
from rtexport.dicom.contours import contours_by_name
from rtexport.dicom.rtdose import build_rtdose
from rtexport.dicom.rtplan import Approval, build_rtplan
from rtexport.dicom.rtstruct import bolus_roi_numbers, build_rtstruct, needs_derived_structure_set
from rtexport.dicom.uids import UIDFactory
from rtexport.errors import StoreError
from rtexport.export.gate import DOSE_ITEMS, Item
from rtexport.export.objects import ExportObject, ObjectKind, read_file_meta
from rtexport.geometry.setup import AimedPlan, aim_plan, plan_structures
from rtexport.model.course import Contour, Course
from rtexport.model.dose import DoseGrid
from rtexport.model.site import Site
from rtexport.model.state import PlanState, StoredDose, StoredGrid
from rtexport.model.values import time_zone


class BuildStore(Protocol):
    """What the build stage reads from storage (read-only)."""

    def paths(self, digests: Sequence[str]) -> list[Path]:
        """Where the stored files with these SHA-256 digests lie."""
        ...

    def verified(self, digest: str) -> bytes:
        """A stored file's bytes, proven to hash to ``digest`` (raises :class:`~rtexport.errors.StoreError`)."""
        ...

    def built(self, keys: Sequence[str]) -> Mapping[str, str]:
        """The digests of the objects built earlier under these keys whose files are still stored."""
        ...


@dataclass(frozen=True)
class NewObject:
    """An object built now, to keep under its UID key (then the same bytes on every export)."""

    key: str
    data: bytes


class Lineage(Protocol):
    """Where objects built now stand among those built before (the caller's policy, asked only for what is built):
    the series number each new series gets, and the RT Plan a new RT Plan replaces (PREDECESSOR)."""

    def series_number(self, key: str) -> int:
        """The series number of the object built under ``key`` (the same for the same key, every time)."""
        ...

    def predecessor(self, key: str) -> str | None:
        """The SOP Instance UID of the RT Plan the one built under ``key`` replaces; None when there is none."""
        ...


class Unrecorded:
    """The lineage of objects built only to be looked at, never kept or exported: series 1, no predecessor."""

    def series_number(self, key: str) -> int:
        return 1

    def predecessor(self, key: str) -> str | None:
        return None


@dataclass(frozen=True)
class PreparedExport:
    """Everything an export will write or send, in order (CT, structure set, plan, doses); ``new``: the objects
    built for it now (the export service keeps them)."""

    state: PlanState
    items: tuple[Item, ...]
    objects: tuple[ExportObject, ...]
    when: datetime
    new: tuple[NewObject, ...] = ()

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


def _dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _described(kind: ObjectKind, path: Path, digest: str, description: str) -> ExportObject:
    """A stored Part 10 file as an export object (its UIDs from its file meta)."""
    try:
        with path.open("rb") as fp:
            meta = read_file_meta(fp)
        size = path.stat().st_size
    except (OSError, EOFError, InvalidDicomError, KeyError, ValueError) as e:
        raise StoreError(
            f"stored file {path} cannot be read as DICOM ({e}): it is missing or damaged; nothing was exported; "
            "run 'rtexport verify'"
        ) from e
    return ExportObject(
        kind, meta.sop_class_uid, meta.sop_instance_uid, size, path=path, sha256=digest, description=description
    )


class _Builder:
    """One build: each object looked up among those built earlier (one query for all), else built in memory."""

    def __init__(
        self,
        store: BuildStore,
        site: Site,
        state: PlanState,
        course: Course,
        keys: list[str],
        aimed: AimedPlan | None,
        lineage: Lineage,
    ) -> None:
        self.store, self.site, self.state, self.course, self.lineage = store, site, state, course, lineage
        self.found = dict(store.built(keys))
        self.new: list[NewObject] = []
        self.datasets: dict[str, Dataset] = {}
        if aimed is not None:
            self.__dict__["aimed"] = aimed  # the cached property's value, set up by the caller

    @functools.cached_property
    def imported_rs(self) -> Dataset:
        return _dataset(self.store.verified(self.course.structure_set.sha256))

    @functools.cached_property
    def aimed(self) -> AimedPlan:
        # Set every beam up once, exactly as the dose engine did (same function, same contours).
        plan = self.state.plan
        contours: dict[str, list[Contour]] = contours_by_name(self.imported_rs, plan_structures(plan))
        return aim_plan(plan, self.site, self.course.ct, contours)

    def get(self, key: str, kind: ObjectKind, description: str, build: Callable[[], bytes]) -> ExportObject:
        """The object kept under ``key``, or built now (in memory, and listed in :attr:`new`)."""
        digest = self.found.get(key)
        if digest is None:
            made = build()
            self.new.append(NewObject(key, made))
            ds = self.datasets[key] = _dataset(made)
            return ExportObject.from_bytes(kind, made, str(ds.SOPClassUID), str(ds.SOPInstanceUID), description)
        (path,) = self.store.paths([digest])
        return _described(kind, path, digest, description)

    def dataset(self, key: str) -> Dataset:
        if key not in self.datasets:
            self.datasets[key] = _dataset(self.store.verified(self.found[key]))
        return self.datasets[key]


def _rt_keys(ctx: BuildContext, state: PlanState) -> tuple[str, str, dict[str | None, str]]:
    key = "\x1f".join(ctx.uids.key)
    beams = [b.beam_name for b in state.dose.beams] if state.dose is not None else []
    return key + "\x1fRS", key + "\x1fRP", {name: f"{key}\x1fRD\x1f{name or ''}" for name in [None, *beams]}


def structure_set(
    store: BuildStore,
    site: Site,
    state: PlanState,
    course: Course,
    operator: str = "",
    *,
    aimed: AimedPlan | None = None,
) -> Dataset:
    """The RT Structure Set an export of ``state`` holds, as a dataset: the one kept, else the imported one or one
    built now (not encoded, not kept)."""
    ctx = build_context(site, state, operator)
    rs_key, _, _ = _rt_keys(ctx, state)
    b = _Builder(store, site, state, course, [rs_key], aimed, Unrecorded())
    if rs_key in b.found:
        return b.dataset(rs_key)
    if not needs_derived_structure_set(b.imported_rs, state.plan, b.aimed.bolus):
        return b.imported_rs
    return build_rtstruct(ctx, b.imported_rs, state.plan, site, b.aimed.bolus, series_number=1, slices=course.slices)


def bolus_roi_names(structure_set: Dataset) -> dict[str, str]:
    """Beam name → the name of its bolus ROI, in a structure set the build stage made."""
    names = {int(r.ROINumber): str(r.ROIName) for r in structure_set.get("StructureSetROISequence", [])}
    return {beam: names[number] for beam, number in bolus_roi_numbers(structure_set).items()}


def _ct_objects(store: BuildStore, course: Course) -> list[ExportObject]:
    """The course's CT images, as stored (byte-for-byte copies)."""
    paths = store.paths([s.sha256 for s in course.slices])
    return [
        ExportObject(
            ObjectKind.CT,
            s.sop_class_uid,
            s.sop_instance_uid,
            s.size,
            path=path,
            sha256=s.sha256,
            description=f"CT z={s.z_mm:g}",
        )
        for s, path in zip(course.slices, paths, strict=True)
    ]


def _dose_objects(
    b: _Builder,
    ctx: BuildContext,
    dose: StoredDose,
    chosen: tuple[Item, ...],
    rp_key: str,
    rd_keys: Mapping[str | None, str],
) -> list[ExportObject]:
    """The plan's RT Dose and each beam's, as chosen: kept, or built now referencing the RT Plan."""
    grids: list[tuple[str | None, str]] = []
    if Item.DOSE_PLAN in chosen:
        grids.append((None, "RT Dose (plan)"))
    if Item.DOSE_BEAM in chosen:
        grids += [(d.beam_name, f"RT Dose (beam {d.beam_name})") for d in dose.beams]

    def grid_of(beam_name: str | None) -> DoseGrid:
        stored_beam = dose.beam(beam_name) if beam_name is not None else None
        return stored_beam.grid.load() if stored_beam is not None else dose.plan.load()

    objects = []
    for beam_name, description in grids:

        def build_rd(beam_name: str | None = beam_name) -> bytes:
            number = b.lineage.series_number(rd_keys[beam_name])
            return encode(
                build_rtdose(ctx, b.course, grid_of(beam_name), b.dataset(rp_key), beam_name, series_number=number)
            )

        objects.append(b.get(rd_keys[beam_name], ObjectKind.RTDOSE, description, build_rd))
    return objects


def build_objects(
    store: BuildStore,
    site: Site,
    state: PlanState,
    course: Course,
    items: Collection[Item],
    operator: str = "",
    *,
    aimed: AimedPlan | None = None,
    lineage: Lineage | None = None,
) -> PreparedExport:
    """The objects of ``items`` for ``state``: CT as stored; the others as built earlier under their UID key, or
    built now (returned in :attr:`PreparedExport.new`). ``operator``: the DICOM Person Name of who made the
    revision; ``aimed``: the plan's beams set up already (else set up here when something must be built);
    ``lineage``: the series numbers and predecessor of what is built now (default: :class:`Unrecorded`)."""
    plan = state.plan
    ctx = build_context(site, state, operator)
    chosen = tuple(i for i in Item if i in items)
    objects = _ct_objects(store, course) if Item.CT in chosen else []
    rs_key, rp_key, rd_keys = _rt_keys(ctx, state)
    b = _Builder(store, site, state, course, [rs_key, rp_key, *rd_keys.values()], aimed, lineage or Unrecorded())

    as_imported = course.structure_set.sha256 == b.found.get(rs_key)

    def build_rs() -> bytes:
        nonlocal as_imported
        as_imported = not needs_derived_structure_set(b.imported_rs, plan, b.aimed.bolus)
        if as_imported:  # kept under its key like a built one: the same file on every export
            return b.store.verified(course.structure_set.sha256)
        number = b.lineage.series_number(rs_key)
        return encode(
            build_rtstruct(ctx, b.imported_rs, plan, site, b.aimed.bolus, series_number=number, slices=course.slices)
        )

    rs_obj = b.get(rs_key, ObjectKind.RTSTRUCT, "", build_rs)
    description = "RT Structure Set (as imported)" if as_imported else "RT Structure Set (derived)"
    rs_obj = replace(rs_obj, description=description)
    if Item.RTSTRUCT in chosen:
        objects.append(rs_obj)
    dose = state.dose
    if not {Item.RTPLAN, Item.DOSE_PLAN, Item.DOSE_BEAM} & set(chosen):
        return PreparedExport(state, chosen, tuple(objects), ctx.when, tuple(b.new))

    def build_rp() -> bytes:
        mu = {beam.name: beam.mu for beam in plan.beams if beam.mu is not None}
        beam_dose: dict[str, float] = {}
        if dose is not None:
            mu = {d.beam_name: d.mu_per_fraction for d in dose.beams}
            beam_dose = {d.beam_name: d.dose_per_fraction_gy for d in dose.beams}
        approval = (
            Approval("APPROVED", state.approval.person_name, state.approval.at)
            if state.approval
            else Approval("UNAPPROVED")
        )
        rs, number, before = b.dataset(rs_key), b.lineage.series_number(rp_key), b.lineage.predecessor(rp_key)
        rp = build_rtplan(
            ctx, course, plan, site, rs, b.aimed, mu, beam_dose, approval, series_number=number, predecessor=before
        )
        return encode(rp)

    rp_obj = b.get(rp_key, ObjectKind.RTPLAN, f"RT Plan {plan.label}", build_rp)
    if Item.RTPLAN in chosen:
        objects.append(rp_obj)
    if dose is not None:
        objects += _dose_objects(b, ctx, dose, chosen, rp_key, rd_keys)
    return PreparedExport(state, chosen, tuple(objects), ctx.when, tuple(b.new))
