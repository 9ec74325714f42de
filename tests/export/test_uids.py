"""UIDs follow content: re-dosing an unchanged revision to the same result keeps the RT objects' UIDs and files (a
folder exported before holds them already); a different result gets new ones. An approved plan's never change."""

from __future__ import annotations

from pathlib import Path

from rtexport.export.build import build_context
from rtexport.export.gate import Item
from rtexport.services.approval import approve
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE, PHYS, edit_site_toml

ALL = tuple(Item)


def exported(ws: Workspace, folder: Path) -> dict[str, bytes]:
    report = export_plan(ws, "CW-E1", ALL, FolderDestination(folder), ACTOR)
    assert report.written is not None and report.warnings == []
    return {p.name: p.read_bytes() for p in sorted(folder.glob("R[SPD].*.dcm"))}


def test_an_unchanged_revision_dosed_again_keeps_its_uids_and_files(planned: Workspace, tmp_path: Path) -> None:
    before = exported(planned, tmp_path / "out")
    state = planned.plan_state("CW-E1")
    compute_dose(planned, "CW-E1", ACTOR, engine=COARSE)  # the engine of the dose before: the same result
    again = planned.plan_state("CW-E1")
    assert again.dose is not None and state.dose is not None and again.dose.computed_at > state.dose.computed_at
    report = export_plan(planned, "CW-E1", ALL, FolderDestination(tmp_path / "out"), ACTOR)
    assert report.written is not None
    assert (report.written.written, report.warnings) == ([], [])  # everything was there: no second RT Plan
    assert exported(planned, tmp_path / "fresh") == before


def test_another_dose_result_gets_new_uids(planned: Workspace, tmp_path: Path) -> None:
    before = exported(planned, tmp_path / "a")
    compute_dose(planned, "CW-E1", ACTOR, grid_mm=3.0, engine=COARSE)  # another grid: another result
    after = exported(planned, tmp_path / "b")
    assert {n.split(".", 1)[1] for n in before}.isdisjoint(n.split(".", 1)[1] for n in after)


def test_an_approved_plans_uids_keep_the_key_they_were_approved_with(planned: Workspace, tmp_path: Path) -> None:
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    state = planned.plan_state("CW-E1")
    ctx = build_context(planned.site(), state)
    assert state.dose is not None and ctx.uids.key[-1] == state.dose.computed_at.isoformat()
    first = exported(planned, tmp_path / "a")
    edit_site_toml(planned.home, lambda s: s["dicom"].update(timezone="Pacific/Auckland"))
    assert exported(planned, tmp_path / "b") == first  # built once, kept: the same bytes in any time zone
