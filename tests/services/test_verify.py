"""`rtexport verify`: every stored file the workspace references is hashed; each damaged or missing one is named
with what references it."""

from __future__ import annotations

from rtexport.export.gate import Item
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.verify import verify_workspace
from rtexport.workspace import Workspace
from tests.conftest import ACTOR


def test_an_intact_workspace_verifies(planned: Workspace) -> None:
    report = verify_workspace(planned, ACTOR)
    course = planned.course("C1")
    dose = planned.plan_state("CW-E1").dose
    assert dose is not None
    # every CT image, the structure set, the plan dose and two beam doses, and the built RS, RP and three RD
    assert report.ok and report.checked == len(course.slices) + 1 + 3 + 5
    assert planned.audit_log.entries()[-1]["action"] == "verify"


def test_each_damaged_or_missing_file_is_listed_with_what_references_it(
    planned: Workspace,
) -> None:
    course = planned.course("C1")
    state = planned.plan_state("CW-E1")
    assert state.dose is not None
    ct = course.slices[3]
    ct_path = planned.blobs.path(ct.sha256)
    original_ct = ct_path.read_bytes()
    ct_path.write_bytes(original_ct[:-1] + bytes([original_ct[-1] ^ 1]))
    beam = state.dose.beams[1]
    planned.blobs.path(beam.grid.sha256).unlink()
    report = verify_workspace(planned, ACTOR)
    assert not report.ok and report.checked == len(course.slices) + 1 + 3 + 5
    by_digest = {p.sha256: p for p in report.problems}
    assert set(by_digest) == {ct.sha256, beam.grid.sha256}
    assert by_digest[ct.sha256].state == "damaged"
    assert by_digest[ct.sha256].referenced_by == (f"course C1: CT image z={ct.z_mm:g} mm ({ct.sop_instance_uid})",)
    assert by_digest[beam.grid.sha256].state == "missing"
    assert by_digest[beam.grid.sha256].referenced_by == (f"plan CW-E1 revision 1: dose array of beam {beam.beam_name}",)
    entry = planned.audit_log.entries()[-1]
    assert entry["outcome"] == "damaged" and entry["detail"]["problems"] == {
        ct.sha256: "damaged",
        beam.grid.sha256: "missing",
    }
    ct_path.write_bytes(original_ct)


def test_built_objects_are_verified_too(
    planned: Workspace,
) -> None:
    export_plan(planned, "CW-E1", (Item.RTPLAN,), FolderDestination(planned.home / "out"), ACTOR)
    (row,) = [r for r in planned.db.all("SELECT key, sha256 FROM built") if r["key"].endswith("\x1fRP")]
    planned.blobs.path(row["sha256"]).unlink()
    (problem,) = verify_workspace(planned, ACTOR).problems
    assert problem.referenced_by == ("plan CW-E1 revision 1 (UNAPPROVED): RT Plan built for export",)
