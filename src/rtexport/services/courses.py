"""Import a course: one CT series and one RT Structure Set, checked, stored all or nothing."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from rtexport.errors import CourseImportError
from rtexport.model.course import Course
from rtexport.model.people import Actor
from rtexport.workspace import Workspace
from rtexport.workspace.importer import ImportResult, read_course

_COURSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def import_course(ws: Workspace, folder: Path, course_id: str, actor: Actor) -> ImportResult:
    """Read and check everything under ``folder``, then store it; nothing is stored when anything is wrong."""
    if not _COURSE_ID.match(course_id):
        raise CourseImportError(
            f"invalid course id {course_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if ws.courses.exists(course_id):
        raise CourseImportError(f"course {course_id!r} exists already in this workspace")
    result = read_course(folder, course_id)
    created: list[str] = []
    try:
        for f in result.files:
            digest, new = ws.blobs.put(f.data)
            if new:
                created.append(digest)
        course = replace(result.course, imported_at=ws.now())
        with ws.transaction():
            if ws.courses.exists(course_id):
                raise CourseImportError(f"course {course_id!r} was imported meanwhile by another command")
            ws.courses.add(course, actor.name)
            ws.audit(
                actor,
                "import",
                "ok",
                course=course_id,
                folder=str(folder),
                files=len(result.files),
                skipped=[str(p) for p, _ in result.skipped],
            )
    except BaseException:
        for digest in created:
            ws.blobs.remove(digest)
        raise
    result.course = course
    return result


def courses(ws: Workspace) -> list[Course]:
    return ws.courses.all()
