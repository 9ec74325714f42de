"""Lineage and series numbers as an archive sees them: each RT Plan names the RT Plan it replaces (a new revision
the previous one, the approved plan the unapproved one, a clone its source), never an invented one; every series of
every plan and revision has its own number within the study, kept with its object."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import RTPlanStorage

from rtexport.demo.plan import DEMO_PLAN
from rtexport.export.gate import Item
from rtexport.services.approval import approve, authorize
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import clone_plan, load_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE, PHYS

ALL = tuple(Item)


def export(ws: Workspace, plan_id: str, folder: Path) -> dict[str, list[Dataset]]:
    """Every object of the plan's current state, exported to ``folder`` (dciodvfy checks each), by kind."""
    export_plan(ws, plan_id, ALL, FolderDestination(folder), ACTOR)
    out: dict[str, list[Dataset]] = {}
    for p in sorted(folder.glob("*.dcm")):
        out.setdefault(p.name.split(".")[0], []).append(pydicom.dcmread(p, stop_before_pixels=True))
    return out


def rt_plan(ws: Workspace, plan_id: str, folder: Path) -> Dataset:
    (rp,) = export(ws, plan_id, folder)["RP"]
    return rp


def predecessor(rp: Dataset) -> str | None:
    refs = rp.get("ReferencedRTPlanSequence", [])
    if not refs:
        return None
    (ref,) = refs
    assert (ref.ReferencedSOPClassUID, ref.RTPlanRelationship) == (RTPlanStorage, "PREDECESSOR")
    return str(ref.ReferencedSOPInstanceUID)


def new_revision(ws: Workspace, plan_id: str = "CW-E1", fractions: int = 20) -> None:
    text = DEMO_PLAN.replace('id = "CW-E1"', f'id = "{plan_id}"').replace("fractions = 25", f"fractions = {fractions}")
    load_plan(ws, text, "plan.toml", ACTOR)
    compute_dose(ws, plan_id, ACTOR, engine=COARSE)  # what is held here is names and numbers, not dose
    authorize(ws, plan_id, PHYS, ACTOR)


def test_each_rt_plan_names_the_one_it_replaces(planned: Workspace, tmp_path: Path) -> None:
    first = rt_plan(planned, "CW-E1", tmp_path / "r1")
    assert predecessor(first) is None  # the plan's first
    new_revision(planned)
    second = export(planned, "CW-E1", tmp_path / "r2")
    (rp2,) = second["RP"]
    assert predecessor(rp2) == first.SOPInstanceUID  # a new revision: the previous revision's
    assert {d.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID for d in second["RD"]} == {rp2.SOPInstanceUID}
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    approved = rt_plan(planned, "CW-E1", tmp_path / "r2a")
    assert approved.ApprovalStatus == "APPROVED" and predecessor(approved) == rp2.SOPInstanceUID
    clone_plan(planned, "CW-E1", "CW-E2", ACTOR, label="Chestwall 2")
    compute_dose(planned, "CW-E2", ACTOR, engine=COARSE)
    authorize(planned, "CW-E2", PHYS, ACTOR)
    assert predecessor(rt_plan(planned, "CW-E2", tmp_path / "c1")) == approved.SOPInstanceUID  # a clone: its source's


def test_an_rt_plan_no_longer_stored_is_never_named(planned: Workspace, tmp_path: Path) -> None:
    (row,) = [r for r in planned.db.all("SELECT key, sha256 FROM built") if r["key"].endswith("\x1fRP")]
    planned.blobs.path(row["sha256"]).unlink()
    new_revision(planned)
    assert predecessor(rt_plan(planned, "CW-E1", tmp_path / "r2")) is None


def series(objects: dict[str, list[Dataset]]) -> dict[str, int]:
    return {str(ds.SeriesInstanceUID): int(ds.SeriesNumber) for kind in ("RS", "RP", "RD") for ds in objects[kind]}


def test_every_series_of_the_study_has_its_own_number(planned: Workspace, phantom_dir: Path, tmp_path: Path) -> None:
    numbers = series(export(planned, "CW-E1", tmp_path / "r1"))
    new_revision(planned)
    numbers |= series(export(planned, "CW-E1", tmp_path / "r2"))
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    numbers |= series(export(planned, "CW-E1", tmp_path / "r2a"))
    new_revision(planned, "CW-E9")  # another plan on the same course
    numbers |= series(export(planned, "CW-E9", tmp_path / "p2"))
    assert len(numbers) == 4 * 5  # structure set, plan, plan dose, two beam doses: per state
    assert sorted(numbers.values()) == list(range(901, 921))  # each its own, in the order they were built
    imported = {int(pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber) for p in phantom_dir.glob("*.dcm")}
    assert imported.isdisjoint(numbers.values())


def test_a_series_number_stays_with_its_object(planned: Workspace, tmp_path: Path) -> None:
    export(planned, "CW-E1", tmp_path / "a")
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").glob("*.dcm")}
    (row,) = [r for r in planned.db.all("SELECT key, sha256 FROM built") if r["key"].endswith("\x1fRP")]
    planned.blobs.path(row["sha256"]).unlink()  # built again on the next export: the same number, the same bytes
    export(planned, "CW-E1", tmp_path / "b")
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").glob("*.dcm")} == before


def test_numbers_of_objects_built_before_allocation_are_avoided(planned: Workspace, tmp_path: Path) -> None:
    """Objects an earlier version built (numbers 901-905, fixed then) keep theirs; new series go around them."""
    old = series(export(planned, "CW-E1", tmp_path / "r1"))
    with closing(sqlite3.connect(planned.home / "rtexport.db")) as db, db:
        db.execute("DELETE FROM built_series")
    new_revision(planned)
    new = series(export(planned, "CW-E1", tmp_path / "r2"))
    assert set(old.values()).isdisjoint(new.values())
