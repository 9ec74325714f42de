"""Fixtures shared by the whole suite: a small generated phantom and a workspace with the demo site."""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom.config
import pydicom.filereader
import pytest
import tomli_w

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.demo.plan import DEMO_PLAN
from rtexport.dose import PencilBeamEngine
from rtexport.model.people import Actor, Role
from rtexport.services.approval import authorize
from rtexport.services.courses import import_course
from rtexport.services.dose import compute_dose
from rtexport.services.plans import load_plan
from rtexport.services.users import add_user
from rtexport.workspace import Workspace
from tests.support.dciodvfy import assert_valid

PHYS = ("phil", "physicist-pass-1")
PLANNER = ("pat", "planner-pass-1")
ACTOR = Actor("tester", "tester-os", "test")  # who acts in tests that do not test who acts
SMALL = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0, seed="test")
# The pencil-beam engine with 5 mm pencils and planes (the clinical default: 2.5 and 1.25 mm), about a fifth of
# the time: for tests about what is stored, named, numbered or refused, whose assertions are not about dose values.
COARSE = PencilBeamEngine(lateral_mm=5.0, depth_mm=5.0)


RT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
}
_validated: set[str] = set()  # digests of the objects dciodvfy passed in this session


def _rt_objects(folder: Path) -> Iterator[Path]:
    """Every DICOM Part 10 file below ``folder`` (any name, as receivers choose their own) holding an RT object."""
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as f:
            if f.read(132)[128:] != b"DICM":
                continue
        try:
            meta = pydicom.filereader.read_file_meta_info(path)
        except Exception:  # not readable as DICOM: a test's deliberately broken file, nothing this checks
            continue
        if str(meta.get("MediaStorageSOPClassUID", "")) in RT_SOP_CLASSES:
            yield path


@pytest.fixture(autouse=True)
def _every_rt_object_a_test_writes_passes_dciodvfy(tmp_path: Path) -> Iterator[None]:
    """After each test, dciodvfy checks every RT Structure Set, Plan and Dose written under its tmp_path (by the
    export, by a receiver, by the test itself): 0 errors, or the test fails."""
    yield
    for path in _rt_objects(tmp_path):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in _validated:
            assert_valid(path)
            _validated.add(digest)


@pytest.fixture(autouse=True)
def _strict_pydicom() -> Iterator[None]:
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.RAISE
    yield
    pydicom.config.settings.writing_validation_mode = old


@pytest.fixture(scope="session")
def _phantom_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom-master")
    write_phantom(folder, SMALL)
    return folder


@pytest.fixture
def phantom_dir(_phantom_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small phantom's DICOM files (tests may damage it)."""
    target = tmp_path / "phantom"
    shutil.copytree(_phantom_master, target)
    return target


class Clock:
    """A controllable clock: each call returns the time, then moves it on by one second."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        t = self.now
        self.now += timedelta(seconds=1)
        return t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workspace(tmp_path: Path, clock: Clock) -> Iterator[Workspace]:
    """An empty workspace with the demo site configuration."""
    ws = Workspace.init(tmp_path / "home", demo_site(), clock=clock)
    yield ws
    ws.close()


@pytest.fixture
def course_ws(workspace: Workspace, phantom_dir: Path) -> Workspace:
    """The workspace with the small phantom imported as course C1."""
    import_course(workspace, phantom_dir, "C1", ACTOR)
    return workspace


def add_demo_users(ws: Workspace) -> Workspace:
    """phil (physicist, the first user) and pat (planner, with phil's consent)."""
    add_user(ws, PHYS[0], Role.PHYSICIST, PHYS[1], ACTOR, full_name="Physicist^Phil")
    add_user(ws, PLANNER[0], Role.PLANNER, PLANNER[1], ACTOR, full_name="Planner^Pat", consent=PHYS)
    return ws


@pytest.fixture(scope="session")
def _planned_master(tmp_path_factory: pytest.TempPathFactory, _phantom_master: Path) -> Path:
    """The phantom course with the demo plan, dose (the coarse engine's) and export authorization: built once per
    session."""
    home = tmp_path_factory.mktemp("planned-master") / "home"
    ws = Workspace.init(home, demo_site(), clock=Clock())
    import_course(ws, _phantom_master, "C1", ACTOR)
    add_demo_users(ws)
    load_plan(ws, DEMO_PLAN, "plan.toml", ACTOR)
    compute_dose(ws, "CW-E1", ACTOR, engine=COARSE)
    authorize(ws, "CW-E1", PHYS, ACTOR)
    ws.close()
    return home


@pytest.fixture
def planned(_planned_master: Path, tmp_path: Path, clock: Clock) -> Iterator[Workspace]:
    """A fresh copy of a workspace with the phantom course, the demo plan, its dose (computed with COARSE: a test
    that computes it again for the same result uses COARSE too) and its export authorized (users phil, a physicist,
    and pat, a planner)."""
    home = tmp_path / "planned"
    shutil.copytree(_planned_master, home)
    clock.now += timedelta(hours=1)  # after everything the master did
    ws = Workspace.open(home, clock=clock)
    yield ws
    ws.close()


def edit_site_toml(home: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the workspace's site.toml as a site administrator would (parse, change, write)."""
    path = home / "site.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def strict_mu_check(home: Path) -> None:
    """A site whose MU-check action level (0.01 %) every beam exceeds: approval then needs an acknowledgement."""
    edit_site_toml(home, lambda s: s.setdefault("checks", {}).update(mu_check_action_level_pct=0.01))


def forget_beam_setups(home: Path, plan_id: str) -> None:
    """Make the plan's dose records like those of earlier versions, which did not keep each beam's SSD, surface
    entry and normalization depth (the MU check then cannot check the beams). Written through the workspace, as
    the upgrade seals rows found (a direct SQL change would be refused as a row changed outside rtexport)."""
    with Workspace.open(home) as ws, ws.transaction():
        for row in ws.db.all("SELECT revision, data, computed_at FROM doses WHERE plan_id = ?", (plan_id,)):
            record = json.loads(row["data"])
            for beam in record["beams"]:
                for key in ("ssd_mm", "surface_entry_mm", "normalization_depth_mm"):
                    beam.pop(key, None)
            ws.doses.save(plan_id, row["revision"], record, row["computed_at"])
            ws.audit(ACTOR, "row-seals", "sealed as found", plan_id, row["revision"])
