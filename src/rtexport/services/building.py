"""The export objects of a plan state: the build stage reads the workspace through a narrow read-only store, and
this service keeps what it built (so an export only copies files, and one UID never names two contents)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from rtexport.errors import StoreError
from rtexport.export.build import PreparedExport, build_objects
from rtexport.export.gate import Item
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.services.lineage import WorkspaceLineage
from rtexport.workspace import Workspace


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


def export_objects(ws: Workspace, site: Site, state: PlanState, items: Collection[Item]) -> PreparedExport:
    """The objects of ``items`` for ``state``, every one a stored file: those built now are kept first."""
    course = ws.course(state.plan.course)
    operator = operator_name(ws, state)
    store = WorkspaceStore(ws)
    prepared = build_objects(store, site, state, course, items, operator, lineage=WorkspaceLineage(ws, state, course))
    lost = ws.built.kept([obj.key for obj in prepared.new]) if state.approved else {}
    if lost:  # an approved plan's objects are fixed: other bytes under its UIDs would be two contents for one UID
        kinds = {"RS": "RT Structure Set", "RP": "RT Plan", "RD": "RT Dose"}
        names = ", ".join(
            f"{kinds.get(p[-1], kinds.get(p[-2], p[-1]))} (sha256 {lost[k]})"
            for k in sorted(lost)
            if (p := k.split("\x1f"))
        )
        raise StoreError(
            f"plan {state.plan.id} revision {state.revision.number} is approved; its stored export object(s) {names} "
            "are missing, never rebuilt for an approved plan (other bytes under its fixed UIDs): restore the store "
            "from a backup ('rtexport verify' lists what is missing)"
        )
    if prepared.new:
        now = ws.now()
        with ws.transaction():
            for obj in prepared.new:
                ws.built.keep(obj.key, obj.data, now)
        prepared = build_objects(store, site, state, course, items, operator)
    return prepared
