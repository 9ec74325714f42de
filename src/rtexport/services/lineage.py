"""Where a plan state's new RT objects stand among those built before: the series number each new series gets, and
the RT Plan a new RT Plan replaces.

**Series numbers.** Every series rtexport makes (a derived structure set, an RT Plan, the plan dose, each beam dose)
gets its own number, distinct within the study: from 901 up, in the order the objects are first built, each the
next above the highest rtexport has given in the study, skipping the numbers of the study's imported series (the CT
and structure set of every course on it) and of objects built before numbers were allocated. The number is
allocated once per built object and kept with it, so the object never changes it.

**Predecessor.** A new RT Plan names the RT Plan it replaces (RTPlanRelationship PREDECESSOR): the one last built
for an earlier state of the same plan (the previous revision's, the unapproved one an approved plan replaces, that
of an earlier dose of the same revision); for a clone's first, the one last built for the revision it was cloned
from (or an earlier revision of that plan). Only RT Plans that were built and are still stored are named, never an
invented UID.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from rtexport.export.objects import read_file_meta
from rtexport.model.course import Course
from rtexport.model.state import PlanState
from rtexport.workspace import Workspace

LOGGER = logging.getLogger(__name__)

FIRST_SERIES_NUMBER = 901


def _series_number_in(path: Path) -> int | None:
    """The SeriesNumber of a stored file (its header only); None when it has none or cannot be read (a damaged
    stored file is for 'rtexport verify' to name)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesNumber"])
        value = ds.get("SeriesNumber")
        return None if value is None or value == "" else int(value)
    except (OSError, InvalidDicomError, ValueError, TypeError, EOFError):
        return None


class SeriesNumbers:
    """Allocates the series numbers of the objects built for one plan on ``course``'s study (see the module)."""

    def __init__(self, ws: Workspace, course: Course) -> None:
        self._ws = ws
        self._course = course
        self.study_uid = course.patient.study_instance_uid

    @functools.cached_property
    def taken(self) -> frozenset[int]:
        """Numbers of the study's series that rtexport did not allocate: imported, or built before allocation."""
        ws = self._ws
        courses = [c for c in ws.courses.all() if c.patient.study_instance_uid == self.study_uid]
        digests = [d for c in courses for d in (c.structure_set.sha256, *(s.sha256 for s in c.slices[:1]))]
        ids = {c.id for c in courses}
        plans = [p for p in ws.plans.ids() if ws.plans.course_of(p) in ids]
        digests += ws.built.without_series_number(plans)
        numbers = (_series_number_in(ws.blobs.path(d)) for d in digests)
        return frozenset(n for n in numbers if n is not None)

    def __call__(self, key: str) -> int:
        """The series number of the object built under ``key`` (allocated now if it has none)."""
        number = self._ws.built.series_number(key, self.study_uid, FIRST_SERIES_NUMBER, self.taken)
        LOGGER.debug("series number %d for built object %r", number, key)
        return number


def _stored_plan_uid(ws: Workspace, digest: str) -> str | None:
    try:
        with ws.blobs.path(digest).open("rb") as fp:
            return read_file_meta(fp).sop_instance_uid or None
    except (OSError, EOFError, InvalidDicomError, KeyError, ValueError):
        return None


def _last_built(ws: Workspace, plan_id: str, revision: int, exclude: str) -> str | None:
    """The SOP Instance UID of the RT Plan last built for ``plan_id`` at ``revision`` or before (not ``exclude``)."""
    for built in ws.built.rt_plans(plan_id):
        if built.revision <= revision and built.key != exclude:
            uid = _stored_plan_uid(ws, built.sha256)
            if uid is not None:
                return uid
    return None


def _clone_source(ws: Workspace, plan_id: str) -> tuple[str, int] | None:
    """The plan and revision ``plan_id`` was cloned from, as the audit log recorded it; None when not a clone."""
    for entry in ws.audit_log.entries(plan_id):
        if (entry["action"], entry["outcome"]) == ("plan-clone", "ok"):
            detail = entry["detail"]
            return str(detail["source_plan"]), int(detail["source_revision"])
    return None


def predecessor_plan_uid(ws: Workspace, state: PlanState, key: str) -> str | None:
    """The SOP Instance UID of the RT Plan that the one built under ``key`` for ``state`` replaces (see the module),
    or None when no earlier RT Plan of this plan or of the plan it was cloned from was built."""
    plan_id = state.plan.id
    uid = _last_built(ws, plan_id, state.revision.number, key)
    seen = {plan_id}
    source = _clone_source(ws, plan_id) if uid is None else None
    while uid is None and source is not None and source[0] not in seen:
        seen.add(source[0])
        uid = _last_built(ws, source[0], source[1], key)
        source = _clone_source(ws, source[0])
    return uid


class WorkspaceLineage:
    """:class:`~rtexport.export.build.Lineage` over a workspace, for the objects built for ``state`` on ``course``:
    series numbers allocated and kept in the workspace, predecessors among the RT Plans it keeps."""

    def __init__(self, ws: Workspace, state: PlanState, course: Course) -> None:
        self._ws, self._state = ws, state
        self._numbers = SeriesNumbers(ws, course)

    def series_number(self, key: str) -> int:
        return self._numbers(key)

    def predecessor(self, key: str) -> str | None:
        return predecessor_plan_uid(self._ws, self._state, key)
