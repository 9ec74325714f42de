"""Imported courses, kept as JSON of the model (their files are in the blob store)."""

from __future__ import annotations

import json
from dataclasses import asdict

from rtexport.errors import PlanError
from rtexport.model.course import Course, CTGeometry, CTSlice, PatientStudy, Structure, StructureSetRef
from rtexport.workspace.db import Database
from rtexport.workspace.seals import Seals


def course_to_json(course: Course) -> str:
    return json.dumps(asdict(course), sort_keys=True)


def course_from_json(text: str) -> Course:
    d = json.loads(text)
    ss = d["structure_set"]
    ct = d["ct"]
    return Course(
        id=d["id"],
        patient=PatientStudy(**d["patient"]),
        ct=CTGeometry(
            **{
                **ct,
                "origin_mm": tuple(ct["origin_mm"]),
                "pixel_spacing_mm": tuple(ct["pixel_spacing_mm"]),
                "slice_z_mm": tuple(ct["slice_z_mm"]),
            }
        ),
        slices=tuple(CTSlice(**s) for s in d["slices"]),
        structure_set=StructureSetRef(**{**ss, "structures": tuple(Structure(**s) for s in ss["structures"])}),
        imported_at=d.get("imported_at", ""),
        extras=d.get("extras", {}),
    )


class CourseRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._seals = Seals(db)

    def exists(self, course_id: str) -> bool:
        return self._db.one("SELECT 1 FROM courses WHERE id = ?", (course_id,)) is not None

    def add(self, course: Course, imported_by: str) -> None:
        self._db.execute(
            "INSERT INTO courses VALUES (?,?,?,?)", (course.id, course_to_json(course), course.imported_at, imported_by)
        )
        self._seals.seal("courses", course.id)

    def get(self, course_id: str) -> Course:
        row = self._db.one("SELECT data FROM courses WHERE id = ?", (course_id,))
        if row is None:
            raise PlanError(f"no course {course_id!r} in this workspace (see 'rtexport course list')")
        return course_from_json(row["data"])

    def blob_references(self) -> list[tuple[str, str]]:
        """(sha256, what references it) for every stored file of every course."""
        refs: list[tuple[str, str]] = []
        for c in self.all():
            refs += [(s.sha256, f"course {c.id}: CT image z={s.z_mm:g} mm ({s.sop_instance_uid})") for s in c.slices]
            ss = c.structure_set
            refs.append((ss.sha256, f"course {c.id}: imported RT Structure Set ({ss.sop_instance_uid})"))
        return refs

    def all(self) -> list[Course]:
        return [course_from_json(r["data"]) for r in self._db.all("SELECT data FROM courses ORDER BY id")]
