"""The export objects of a plan state: the build stage reads the workspace through a narrow read-only store, and
this service keeps what it built (so an export only copies files, and one UID never names two contents); the
reasons an export is refused, and the objects prepared when a state is fixed. Nothing here reaches the network
(the dose and approval use cases import it without the DICOM network stack)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rtexport.errors import RTExportError, StoreError
from rtexport.export.build import PreparedExport, build_objects, buildable_items
from rtexport.export.gate import ALL_ITEMS, DOSE_ITEMS, Item, check_export
from rtexport.model.people import Actor
from rtexport.model.plan import mu_problems
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.services.integrity import stale_reasons
from rtexport.services.lineage import WorkspaceLineage
from rtexport.services.site import SiteStatus, site_status
from rtexport.workspace import Workspace
from rtexport.workspace.built import built_object

if TYPE_CHECKING:
    from rtexport.geometry.setup import AimedPlan

_PUTS_AT_ONCE = 8


class WorkspaceStore:
    """:class:`~rtexport.export.build.BuildStore` over a workspace: stored files and the objects built before."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def paths(self, digests: Sequence[str]) -> list[Path]:
        return [self._ws.blobs.path(d) for d in digests]

    def verified(self, digest: str) -> bytes:
        return self._ws.blobs.verified(digest)

    def built(self, keys: Sequence[str]) -> Mapping[str, str]:
        return self._ws.built.found(keys)


def operator_name(ws: Workspace, state: PlanState) -> str:
    """The DICOM Person Name of who made the revision (OperatorsName), '' when unknown."""
    maker = ws.users.get(state.revision.created_by)
    return maker[0].full_name if maker else ""


def export_objects(
    ws: Workspace,
    site: Site,
    state: PlanState,
    items: Collection[Item],
    actor: Actor,
    *,
    aimed: AimedPlan | None = None,
) -> PreparedExport:
    """The objects of ``items`` for ``state``, every one a stored file: those built now are kept first, their rows
    sealed in a ``build`` audit record of ``actor`` (whose command built them).
    ``aimed``: the plan's beams as set up already for ``state`` (else set up here when something must be built)."""
    course = ws.course(state.plan.course)
    operator = operator_name(ws, state)
    store = WorkspaceStore(ws)
    lineage = WorkspaceLineage(ws, state, course)
    prepared = build_objects(store, site, state, course, items, operator, aimed=aimed, lineage=lineage)
    lost = ws.built.kept([obj.key for obj in prepared.new]) if state.approved else {}
    if lost:  # an approved plan's objects are fixed: other bytes under its UIDs would be two contents for one UID
        names = ", ".join(f"{built_object(k)[2]} (sha256 {lost[k]})" for k in sorted(lost))
        raise StoreError(
            f"plan {state.plan.id} revision {state.revision.number} is approved; its stored export object(s) {names} "
            "are missing, never rebuilt for an approved plan (other bytes under its fixed UIDs): restore the store "
            "from a backup ('rtexport verify' lists what is missing)"
        )
    if prepared.new:
        _put_all(ws, [obj.data for obj in prepared.new])
        now = ws.now()
        with ws.transaction():
            built = {}
            for obj in prepared.new:
                built[built_object(obj.key)[2]] = ws.built.keep(obj.key, obj.data, now)
            ws.audit(actor, "build", "ok", state.plan.id, state.revision.number, objects=built)
        prepared = build_objects(store, site, state, course, items, operator)
    return prepared


def _put_all(ws: Workspace, blobs: Sequence[bytes]) -> None:
    """Put files in the store at once, before the transaction that names them: each is written and fsynced as
    :meth:`~rtexport.workspace.store.BlobStore.put` always does (so none is named before it is on disk), but their
    fsyncs wait together instead of one after another. A file no row names is harmless (content-addressed)."""
    if len(blobs) < 2:
        return
    with ThreadPoolExecutor(min(len(blobs), _PUTS_AT_ONCE), thread_name_prefix="store-put") as pool:
        list(pool.map(ws.blobs.put, blobs))


# -- gate and preparation ----------------------------------------------------------------------------------------


def findings(
    ws: Workspace,
    state: PlanState,
    items: Collection[Item],
    *,
    to_build_only: bool = False,
    status: SiteStatus | None = None,
) -> list[str]:
    """Every reason the export of ``items`` is refused (empty: go). ``to_build_only``: the reasons the objects
    cannot be built (building needs no authorization; exporting does). ``status``: the site as read already."""
    status = status or site_status(ws)
    found = check_export(
        site=status.site,
        site_problems=status.problems,
        course=ws.course(state.plan.course),
        plan=state.plan,
        revision=state.revision.number,
        approved=state.approved or to_build_only,
        authorized_by=state.authorization.user if state.authorization else None,
        has_current_dose=state.dose is not None,
        items=items,
    )
    if state.dose is not None and status.site is not None:
        computed = {b.beam_name: b.mu_per_fraction for b in state.dose.beams}
        found += [f"plan {state.plan.id}: {p}" for p in mu_problems(state.plan, status.site, computed)]
    found += [f"plan {state.plan.id}: {f} (restore the workspace from a backup)" for f in state.integrity]
    found += [f"{p} (stored before a stricter rule: load a corrected plan file)" for p in state.stored_problems]
    dose_items = [i.value for i in items if i in (Item.RTPLAN, *DOSE_ITEMS)]
    stale = stale_reasons(status.site, state) if dose_items else ()
    if stale:
        found.append(
            f"{', '.join(dose_items)}: the dose of plan {state.plan.id} is stale ({'; '.join(stale)}): run "
            f"'rtexport dose {state.plan.id}' again, or a physicist accepts it with 'rtexport dose-accept'"
        )
    return found


def export_block_reasons(ws: Workspace, state: PlanState, status: SiteStatus | None = None) -> list[str]:
    """Why the Export block is disabled for this plan: the site cannot export, or the objects cannot be built
    (no current dose). Authorization is not among them: it is asked for inside the block."""
    return findings(ws, state, ALL_ITEMS, to_build_only=True, status=status)


@dataclass(frozen=True)
class Prepared:
    """How many export objects of a plan state are ready, or why they could not be built."""

    count: int
    warning: str | None = None


def prepare_objects(
    ws: Workspace,
    plan_id: str,
    actor: Actor,
    status: SiteStatus | None = None,
    *,
    setup: tuple[str, AimedPlan] | None = None,
) -> str | None:
    """Build and keep every object an export of the plan's current state can hold, so that exporting it later only
    copies files. Called when that state is fixed (after dose, on approval). Builds nothing while the objects
    cannot be built (the export says why). Returns a warning when a build fails (the export will refuse with it).
    ``status``: the site as the use case read it; ``setup``: the beams as set up already for the revision whose
    token is given (ignored if another revision is current by now)."""
    return prepare(ws, plan_id, actor, status, setup=setup).warning


def prepare(
    ws: Workspace,
    plan_id: str,
    actor: Actor,
    status: SiteStatus | None = None,
    *,
    setup: tuple[str, AimedPlan] | None = None,
) -> Prepared:
    state = ws.plan_state(plan_id)
    items = buildable_items(state)
    status = status or site_status(ws)
    if findings(ws, state, items, to_build_only=True, status=status) or status.site is None:
        return Prepared(0)
    aimed = setup[1] if setup is not None and setup[0] == state.revision.token else None
    try:
        prepared = export_objects(ws, status.site, state, items, actor, aimed=aimed)
    except RTExportError as e:
        return Prepared(0, f"the export of {plan_id} cannot be prepared: {e}")
    return Prepared(len(prepared.objects))
