"""The export objects of a plan state: the build stage reads the workspace through a narrow read-only store, and
this service keeps what it built (so an export only copies files, and one UID never names two contents)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rtexport.export.build import PreparedExport, build_objects
from rtexport.export.gate import Item
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.services.lineage import WorkspaceLineage
from rtexport.workspace import Workspace

if TYPE_CHECKING:
    from rtexport.geometry.setup import AimedPlan


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
    ws: Workspace, site: Site, state: PlanState, items: Collection[Item], *, aimed: AimedPlan | None = None
) -> PreparedExport:
    """The objects of ``items`` for ``state``, every one a stored file: those built now are kept first.
    ``aimed``: the plan's beams as set up already for ``state`` (else set up here when something must be built)."""
    course = ws.course(state.plan.course)
    operator = operator_name(ws, state)
    store = WorkspaceStore(ws)
    lineage = WorkspaceLineage(ws, state, course)
    prepared = build_objects(store, site, state, course, items, operator, aimed=aimed, lineage=lineage)
    if prepared.new:
        now = ws.now()
        with ws.transaction():
            for obj in prepared.new:
                ws.built.keep(obj.key, obj.data, now)
        prepared = build_objects(store, site, state, course, items, operator)
    return prepared
