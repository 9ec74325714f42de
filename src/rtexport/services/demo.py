"""The built-in demo: a phantom course, a site, users and a two-beam plan; dose, authorization and an export of
everything to the site's default folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.demo.plan import DEMO_COURSE_ID, DEMO_PLAN, DEMO_PLAN_ID, DEMO_USERS
from rtexport.errors import ConfigError
from rtexport.export.gate import ALL_ITEMS
from rtexport.model.people import Actor, Role
from rtexport.model.state import PlanState, StoredDose
from rtexport.services.approval import authorize
from rtexport.services.courses import import_course
from rtexport.services.dose import compute_dose
from rtexport.services.export import ExportReport, FolderDestination, Progress, default_folder, export_plan
from rtexport.services.plans import load_plan
from rtexport.services.site import load_site
from rtexport.services.users import add_user
from rtexport.workspace import Workspace

MARKER = ".rtexport-demo"
DEMO_FULL_NAMES = {"phil": "Physicist^Phil", "pat": "Planner^Pat"}
PHYSICIST = "phil"


def prepare_demo_home(home: Path) -> None:
    """Recreate a previous demo workspace; refuse to touch any other folder."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).is_file():
            raise ConfigError(f"{home} exists and is not a demo workspace; choose another folder with --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("made by 'rtexport demo'; the next 'rtexport demo' replaces this folder\n")


def build_demo_workspace(
    home: Path, spec: PhantomSpec | None = None, step: Callable[[str], None] = lambda _: None
) -> Workspace:
    """Everything up to (not including) dose and export: site, phantom course, users, plan."""
    prepare_demo_home(home)
    ws = Workspace.init(home, demo_site(export_folder="dicom-export"))
    actor = Actor.here("demo")
    step("generating the phantom CT and structure set")
    write_phantom(home / "phantom-dicom", spec or PhantomSpec())
    step("importing the phantom course")
    import_course(ws, home / "phantom-dicom", DEMO_COURSE_ID, actor)
    consent = (PHYSICIST, DEMO_USERS[PHYSICIST][1])
    for name in sorted(DEMO_USERS, key=lambda n: n != PHYSICIST):  # the physicist first: they consent to the rest
        role, password = DEMO_USERS[name]
        add_user(
            ws,
            name,
            Role(role),
            password,
            actor,
            full_name=DEMO_FULL_NAMES.get(name, ""),
            consent=None if name == PHYSICIST else consent,
        )
    (home / "plan-CW-E1.toml").write_text(DEMO_PLAN, encoding="utf-8")
    step("loading the two-beam plan")
    load_plan(ws, DEMO_PLAN, str(home / "plan-CW-E1.toml"), actor.as_user("pat"))
    return ws


@dataclass(frozen=True)
class DemoResult:
    workspace: Workspace
    state: PlanState
    dose: StoredDose
    export: ExportReport


def run_demo(home: Path, step: Callable[[str], None], progress: Progress | None = None) -> DemoResult:
    """The whole demo; the caller closes ``result.workspace``."""
    ws = build_demo_workspace(home, step=step)
    planner = Actor.here("demo", "pat")
    step("computing dose (pencil beam)")
    dose = compute_dose(ws, DEMO_PLAN_ID, planner).dose
    step("authorizing export (physicist phil)")
    authorize(ws, DEMO_PLAN_ID, (PHYSICIST, DEMO_USERS[PHYSICIST][1]), Actor.here("demo"))
    step("exporting every DICOM object")
    folder = FolderDestination(default_folder(ws, load_site(ws)))
    report = export_plan(ws, DEMO_PLAN_ID, ALL_ITEMS, folder, planner, progress)
    return DemoResult(ws, ws.plan_state(DEMO_PLAN_ID), dose, report)
