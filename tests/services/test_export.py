"""The export as a user runs it: gate, objects, references, UIDs, validity, audit."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import GateError, StoreError
from rtexport.export.gate import Item
from rtexport.model.people import Actor
from rtexport.services.approval import approve, authorize
from rtexport.services.dose import compute_dose
from rtexport.services.export import ExportReport, FolderDestination, export_plan, prepare
from rtexport.services.plans import load_plan
from rtexport.services.site import availability
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE, PHYS
from tests.support.dciodvfy import assert_valid

ALL = tuple(Item)
PAT = Actor("pat", "pat-os", "test")


def export_to_folder(
    ws: Workspace, plan_id: str, items: tuple[Item, ...], folder: Path, actor: Actor = ACTOR
) -> ExportReport:
    return export_plan(ws, plan_id, items, FolderDestination(folder), actor)


def read_all(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for p in sorted(folder.glob("*.dcm")):
        out.setdefault(p.name.split(".")[0], []).append(pydicom.dcmread(p))
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.dcm"))}


@pytest.mark.integration
def test_full_export_is_valid_and_every_reference_resolves(
    planned: Workspace, phantom_dir: Path, tmp_path: Path
) -> None:
    report = export_to_folder(planned, "CW-E1", ALL, tmp_path / "out", PAT)
    course = planned.course("C1")
    assert report.written is not None
    assert len(report.written.written) == len(course.slices) + 1 + 1 + 1 + 2
    # CT: byte-for-byte copies of the imported files
    imported = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in phantom_dir.glob("CT*.dcm")}
    for p in (tmp_path / "out").glob("CT.*.dcm"):
        assert p.read_bytes() == imported[p.name[3:-4]]
    for p in (tmp_path / "out").glob("R[SPD].*.dcm"):
        assert_valid(p)
    objs = read_all(tmp_path / "out")
    (rs,), (rp,) = objs["RS"], objs["RP"]
    frame = course.ct.frame_of_reference_uid
    # RS → CT slices, same Frame of Reference and study
    contour_refs = {
        i.ReferencedSOPInstanceUID
        for fr in rs.ReferencedFrameOfReferenceSequence
        for st in fr.RTReferencedStudySequence
        for se in st.RTReferencedSeriesSequence
        for i in se.ContourImageSequence
    }
    assert contour_refs == set(imported)
    assert rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == frame
    assert rs.SOPInstanceUID != course.structure_set.sop_instance_uid  # derived: new UID
    # RP → the exported RS, bolus → a BOLUS ROI of it
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    bolus_rois = {o.ReferencedROINumber for o in rs.RTROIObservationsSequence if o.RTROIInterpretedType == "BOLUS"}
    referenced_boli = {
        b.ReferencedROINumber for beam in rp.BeamSequence for b in beam.get("ReferencedBolusSequence", [])
    }
    assert referenced_boli == bolus_rois and len(bolus_rois) == 1
    externals = [o.ReferencedROINumber for o in rs.RTROIObservationsSequence if o.RTROIInterpretedType == "EXTERNAL"]
    names = {r.ROINumber: r.ROIName for r in rs.StructureSetROISequence}
    assert [names[n] for n in externals] == ["OUTLINE2"]
    # RD → RP (and beam), same frame, per-beam doses add up to the plan dose
    beam_numbers = {b.BeamName: b.BeamNumber for b in rp.BeamSequence}
    plan_dose = [d for d in objs["RD"] if d.DoseSummationType == "PLAN"]
    beam_doses = [d for d in objs["RD"] if d.DoseSummationType == "BEAM"]
    assert len(plan_dose) == 1 and len(beam_doses) == 2
    for d in objs["RD"]:
        assert d.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rp.SOPInstanceUID
        assert d.FrameOfReferenceUID == frame and d.StudyInstanceUID == course.patient.study_instance_uid
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
    assert "ReferencedFractionGroupSequence" not in plan_dose[0].ReferencedRTPlanSequence[0]
    assert {
        d.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence[0].ReferencedBeamSequence[0].ReferencedBeamNumber
        for d in beam_doses
    } == set(beam_numbers.values())
    total = plan_dose[0].pixel_array * float(plan_dose[0].DoseGridScaling)
    summed = sum(d.pixel_array * float(d.DoseGridScaling) for d in beam_doses)
    tolerance = float(plan_dose[0].DoseGridScaling) / 2 + sum(float(d.DoseGridScaling) / 2 for d in beam_doses)
    assert np.max(np.abs(total - summed)) <= tolerance + 1e-9
    assert float(total.max()) > 0.5 * 50.0  # 50 Gy prescription: dose is real, in Gy, for the whole course


def test_unapproved_same_revision_gives_same_files_and_a_change_gives_new_uids(
    planned: Workspace, tmp_path: Path
) -> None:
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "a")
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    load_plan(planned, DEMO_PLAN.replace("fractions = 25", "fractions = 20"), "plan.toml", ACTOR)
    compute_dose(planned, "CW-E1", ACTOR, engine=COARSE)
    authorize(planned, "CW-E1", PHYS, ACTOR)
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "c")
    first, second = set(files(tmp_path / "a")), set(files(tmp_path / "c"))
    assert {n for n in first if n.startswith("CT.")} == {n for n in second if n.startswith("CT.")}
    assert not {n for n in first if not n.startswith("CT.")} & second  # every RS/RP/RD UID is new


def test_approved_plan_exports_byte_identical_files_with_fixed_uids(planned: Workspace, tmp_path: Path) -> None:
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "unapproved")
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "a")
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    (rp,) = read_all(tmp_path / "a")["RP"]
    assert rp.ApprovalStatus == "APPROVED" and rp.ReviewerName == "Physicist^Phil"
    unapproved = {n for n in files(tmp_path / "unapproved") if not n.startswith("CT.")}
    assert not unapproved & set(files(tmp_path / "a"))  # approval changes content, so UIDs change too


def test_unchanged_structure_set_is_exported_as_imported(planned: Workspace, phantom_dir: Path, tmp_path: Path) -> None:
    plain = (
        DEMO_PLAN.replace('external = "OUTLINE2"', 'external = "BODY"')
        .replace('[[override]]\nstructure = "Prosthesis"\nmaterial = "Water"\n', "")
        .replace('bolus = { thickness_mm = 10, margin_mm = 10, material = "Superflab" }\n', "")
        .replace('id = "CW-E1"', 'id = "PLAIN"')
    )
    load_plan(planned, plain, "plain.toml", ACTOR)
    compute_dose(planned, "PLAIN", ACTOR, engine=COARSE)
    authorize(planned, "PLAIN", PHYS, ACTOR)
    export_to_folder(planned, "PLAIN", (Item.RTSTRUCT, Item.RTPLAN), tmp_path / "out")
    (rs_file,) = (tmp_path / "out").glob("RS.*.dcm")
    assert rs_file.read_bytes() == next(phantom_dir.glob("RS*.dcm")).read_bytes()
    (rp,) = read_all(tmp_path / "out")["RP"]
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(rs_file).SOPInstanceUID


def test_gate_lists_every_finding_writes_nothing_and_is_audited(planned: Workspace, tmp_path: Path) -> None:
    load_plan(
        planned, DEMO_PLAN.replace("fractions = 25", "fractions = 24"), "plan.toml", ACTOR
    )  # new revision: no dose, no authorization
    site = planned.site_path
    text = site.read_text()
    site.write_text(text[: text.index("[[ct_curves]]")] + text[text.index("[[materials]]") :])
    with pytest.raises(GateError) as info:
        export_to_folder(planned, "CW-E1", ALL, tmp_path / "out", PAT)
    findings = "\n".join(info.value.findings)
    assert "no CT curve" in findings
    assert "dose-plan, dose-beam need current dose for revision 2" in findings
    assert "unapproved and its export is not authorized" in findings and "rtexport authorize CW-E1" in findings
    assert not (tmp_path / "out").exists()
    refused = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export"]
    assert refused[-1]["outcome"] == "refused" and refused[-1]["actor"] == "pat" and refused[-1]["os_user"] == "pat-os"


def test_site_without_machine_blocks_export(planned: Workspace, tmp_path: Path) -> None:
    site = planned.site_path
    text = site.read_text()
    site.write_text(text[: text.index("[[machines]]")] + text[text.index("[[ct_curves]]") :])
    with pytest.raises(GateError, match=r"no treatment machine"):
        export_to_folder(planned, "CW-E1", (Item.CT,), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_is_audited_with_who_what_and_where(planned: Workspace, tmp_path: Path) -> None:
    export_to_folder(planned, "CW-E1", (Item.RTPLAN, Item.DOSE_PLAN), tmp_path / "out", PAT)
    started, entry = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export"][-2:]
    assert started["outcome"] == "started" and started["detail"]["uids"] == entry["detail"]["uids"]
    assert entry["detail"]["started"] == started["id"]  # the outcome points back at the intent, recorded first
    assert entry["outcome"] == "ok" and entry["actor"] == "pat" and entry["os_user"] == "pat-os"
    assert entry["revision"] == 1
    assert entry["detail"]["items"] == ["rtplan", "dose-plan"]
    assert entry["detail"]["destination"] == str(tmp_path / "out")
    assert sorted(entry["detail"]["uids"]) == ["RD", "RP"]


def test_one_uid_always_stands_for_the_same_bytes(
    planned: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once exported, an object is kept: a later export (even by a changed builder) sends the same bytes."""
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "a")
    import rtexport.export.build as pipeline

    def changed_builder(*args: object, **kwargs: object) -> None:
        raise AssertionError("an exported object was built again")

    monkeypatch.setattr(pipeline, "build_rtplan", changed_builder)
    monkeypatch.setattr(pipeline, "build_rtstruct", changed_builder)
    monkeypatch.setattr(pipeline, "build_rtdose", changed_builder)
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")


def forbid_building(monkeypatch: pytest.MonkeyPatch) -> None:
    import rtexport.export.build as pipeline

    def builder(*args: object, **kwargs: object) -> None:
        raise AssertionError("an object was built at export time")

    for name in ("build_rtplan", "build_rtstruct", "build_rtdose"):
        monkeypatch.setattr(pipeline, name, builder)


def test_objects_prepared_with_the_dose_are_what_the_export_writes(
    planned: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After dose (and again after approval) the export only copies: the objects are built when the state is fixed,
    and they are the bytes an export that builds them itself would write."""
    planned.close()
    twin = tmp_path / "twin"
    shutil.copytree(planned.home, twin)
    with sqlite3.connect(twin / "rtexport.db") as db:
        db.execute("DELETE FROM built")  # the twin has nothing prepared: its export builds every object itself
    reference = Workspace.open(twin)
    export_to_folder(reference, "CW-E1", ALL, tmp_path / "built-at-export")
    ws = Workspace.open(planned.home)
    assert prepare(ws, "CW-E1", ACTOR).count == 1 + 1 + 1 + 2  # RS, RP, plan dose, two beam doses
    with monkeypatch.context() as m:
        forbid_building(m)
        export_to_folder(ws, "CW-E1", ALL, tmp_path / "prepared")
    assert files(tmp_path / "prepared") == files(tmp_path / "built-at-export")
    approve(ws, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)  # builds the approved state's objects
    forbid_building(monkeypatch)
    export_to_folder(ws, "CW-E1", ALL, tmp_path / "approved")
    assert set(files(tmp_path / "approved")) != set(files(tmp_path / "prepared"))  # approval: new UIDs
    ws.close()
    reference.close()


def test_nothing_is_prepared_while_export_is_unavailable(planned: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    site = planned.site_path
    text = site.read_text()
    site.write_text(text[: text.index("[[ct_curves]]")] + text[text.index("[[materials]]") :])
    assert any("no CT curve" in f for f in availability(planned))
    forbid_building(monkeypatch)
    assert prepare(planned, "CW-E1", ACTOR).count == 0


def damage(path: Path, at: int = 400) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + 8] = bytes(255 - b for b in data[at : at + 8])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["ct", "rp"])
def test_a_damaged_stored_object_refuses_the_export_names_it_and_is_audited(
    planned: Workspace, tmp_path: Path, which: str
) -> None:
    course = planned.course("C1")
    export_to_folder(planned, "CW-E1", ALL, tmp_path / "first")  # builds and keeps RS, RP, RD
    rp_file = next((tmp_path / "first").glob("RP.*.dcm"))
    if which == "ct":
        victim, name = planned.blobs.path(course.slices[5].sha256), f"CT.{course.slices[5].sop_instance_uid}.dcm"
    else:
        (row,) = [r for r in planned.db.all("SELECT key, sha256 FROM built") if r["key"].endswith("\x1fRP")]
        victim, name = planned.blobs.path(row["sha256"]), rp_file.name
    original = victim.read_bytes()
    damage(victim)
    with pytest.raises(StoreError, match=rf"{re.escape(name)} .*{re.escape(str(victim))} is damaged.*rtexport verify"):
        export_to_folder(planned, "CW-E1", ALL, tmp_path / "out", PAT)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.part-*"))
    started, failed = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export"][-2:]
    assert (started["outcome"], failed["outcome"]) == ("started", "failed") and name in failed["detail"]["error"]
    victim.write_bytes(original)  # the store is whole again: every RT object under tmp_path is then checked


def test_the_user_is_told_of_another_export_of_the_plan_in_the_folder(planned: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = export_to_folder(planned, "CW-E1", ALL, out)
    assert first.warnings == []
    (old_rp,) = out.glob("RP.*.dcm")
    approve(planned, "CW-E1", PHYS, ACTOR)
    second = export_to_folder(planned, "CW-E1", ALL, out)
    assert len(second.warnings) == 1
    assert old_rp.name in second.warnings[0] and "another RT Plan of plan CW-E1 (UNAPPROVED" in second.warnings[0]
    entry = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export"][-1]
    assert entry["outcome"] == "ok" and entry["detail"]["warnings"] == second.warnings


def test_the_user_is_told_of_the_same_instance_under_another_name(planned: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    s = planned.course("C1").slices[0]
    (out / "image0001.dcm").write_bytes(planned.blobs.verified(s.sha256))
    report = export_to_folder(planned, "CW-E1", (Item.CT,), out)
    assert len(report.warnings) == 1
    assert f"image0001.dcm in the folder is the same instance as CT.{s.sop_instance_uid}.dcm" in report.warnings[0]


@pytest.mark.parametrize(
    ("beam", "charset"),
    [("Ωμέγα", "ISO_IR 126"), ("Ωμέγα 線", "ISO_IR 192"), ("Brüst", "ISO_IR 100"), ("Ärmel-Äußerst", "ISO_IR 100")],
)
def test_the_derived_structure_set_switches_character_set_for_text_its_own_cannot_hold(
    planned: Workspace, tmp_path: Path, beam: str, charset: str
) -> None:
    load_plan(planned, DEMO_PLAN.replace('name = "ANT"', f'name = "{beam}"', 1), "plan.toml", ACTOR)
    compute_dose(planned, "CW-E1", ACTOR, engine=COARSE)
    authorize(planned, "CW-E1", PHYS, ACTOR)
    export_to_folder(planned, "CW-E1", (Item.RTSTRUCT, Item.RTPLAN), tmp_path / "out")  # dciodvfy checks both
    objs = read_all(tmp_path / "out")
    (rs,), (rp,) = objs["RS"], objs["RP"]
    assert rs.SpecificCharacterSet == charset
    bolus = next(r for r in rs.StructureSetROISequence if r.ROIName.startswith("Bolus_"))
    assert bolus.ROIName == f"Bolus_{beam}" and rp.BeamSequence[0].BeamName == beam
    names = {r.ROIName for r in rs.StructureSetROISequence}
    assert "Prosthesis" in names and "OUTLINE2" in names  # the imported text reads the same as before


def test_a_built_object_whose_header_is_damaged_is_refused_not_a_crash(planned: Workspace, tmp_path: Path) -> None:
    (row,) = [r for r in planned.db.all("SELECT key, sha256 FROM built") if r["key"].endswith("\x1fRP")]
    victim = planned.blobs.path(row["sha256"])
    original = victim.read_bytes()
    victim.write_bytes(original[:128] + b"JUNK" + original[132:])
    with pytest.raises(StoreError, match=rf"stored file {re.escape(str(victim))} cannot be read as DICOM"):
        export_to_folder(planned, "CW-E1", ALL, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    entry = planned.audit_log.entries("CW-E1")[-1]
    assert (entry["action"], entry["outcome"]) == ("export", "failed") and str(victim) in entry["detail"]["error"]
    victim.write_bytes(original)


def test_people_are_named_as_dicom_person_names(planned: Workspace, tmp_path: Path) -> None:
    """ReviewerName is the approving physicist's full name, OperatorsName the planner's who loaded the revision,
    both as Family^Given from the user records (never a login)."""
    load_plan(planned, DEMO_PLAN.replace("fractions = 25", "fractions = 20"), "plan.toml", PAT)
    compute_dose(planned, "CW-E1", PAT, engine=COARSE)
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    export_to_folder(planned, "CW-E1", (Item.RTPLAN, Item.DOSE_PLAN), tmp_path / "out")
    objs = read_all(tmp_path / "out")
    (rp,) = objs["RP"]
    assert rp.ReviewerName == "Physicist^Phil" and rp.OperatorsName == "Planner^Pat"
    assert all(d.OperatorsName == "Planner^Pat" for d in objs["RD"])
