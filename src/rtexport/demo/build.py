"""Build the demo workspace end to end: phantom, site, users, plan, dose, authorization, export."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.demo.plan import DEMO_COURSE_ID, DEMO_PLAN, DEMO_PLAN_ID, DEMO_USERS
from rtexport.errors import ConfigError
from rtexport.workspace import Workspace
from rtexport.workspace.workspace import Role

MARKER = ".rtexport-demo"


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
    """Everything up to (not including) dose and export."""
    prepare_demo_home(home)
    ws = Workspace.init(home, demo_site(export_folder="dicom-export"))
    step("generating the phantom CT and structure set")
    write_phantom(home / "phantom-dicom", spec or PhantomSpec())
    step("importing the phantom course")
    ws.import_course(home / "phantom-dicom", DEMO_COURSE_ID, actor="demo")
    for name, (role, password) in DEMO_USERS.items():
        ws.add_user(name, Role(role), password)
    (home / "plan-CW-E1.toml").write_text(DEMO_PLAN, encoding="utf-8")
    step("loading the two-beam plan")
    ws.load_plan(DEMO_PLAN, str(home / "plan-CW-E1.toml"), actor="pat")
    return ws


def authorize_demo(ws: Workspace) -> None:
    ws.authorize(DEMO_PLAN_ID, "phil", DEMO_USERS["phil"][1])
