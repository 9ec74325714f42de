"""A small demo workspace with dose, built once per session and copied for each test; log-in helpers."""

from __future__ import annotations

import re
import shutil
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from rtexport.demo.build import build_demo_workspace
from rtexport.demo.phantom import PhantomSpec
from rtexport.demo.plan import DEMO_PLAN_ID, DEMO_USERS
from rtexport.errors import DoseError
from rtexport.model.dose import DoseGrid, GridGeometry
from rtexport.services import compute_dose
from rtexport.web.app import create_app
from rtexport.workspace import Workspace
from rtexport.workspace.workspace import StoredBeamDose

with warnings.catch_warnings():
    # Starlette asks for 'httpx2'; the project's test extra installs httpx, which works the same here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SMALL = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0)
PLAN = DEMO_PLAN_ID
PLANNER = ("pat", DEMO_USERS["pat"][1])
PHYSICIST = ("phil", DEMO_USERS["phil"][1])


def stand_in_dose(ws: Workspace, plan_id: str) -> None:
    """An electron-like dose under the anterior surface (100 % at 1.5 cm depth, gone by 4.5 cm), for when the
    dose engine refuses the demo plan on the small phantom."""
    state = ws.plan_state(plan_id)
    ct = ws.course(state.plan.course).ct
    step = 4.0
    xs, ys, zs = ct.x_mm(), ct.y_mm(), np.asarray(ct.slice_z_mm)
    shape = tuple(int((a[-1] - a[0]) // step) + 1 for a in (zs, ys, xs))
    geometry = GridGeometry((xs[0], ys[0], zs[0]), (step, step, step), (shape[0], shape[1], shape[2]))
    gx, gy, gz = geometry.axes()
    z, y, x = np.meshgrid(gz, gy, gx, indexing="ij")
    depth = y + 100.0
    pdd = np.interp(depth, [-1, 0, 15, 30, 45], [0, 0.85, 1.0, 0.5, 0.0])
    lateral = 1 / (1 + np.exp((np.abs(x) - 45) / 3)) / (1 + np.exp((np.abs(z) - 30) / 3))
    total = (state.plan.prescription_gy * 1.02 * pdd * lateral).astype(np.float32)
    frame = ct.frame_of_reference_uid
    weights = [0.6, 0.4]
    beams = [
        StoredBeamDose(
            b.name,
            150.0 * w,
            state.plan.prescription_per_fraction_gy * w,
            (0.0, -85.0, 0.0),
            DoseGrid(geometry, (total * w).astype(np.float32), frame),
        )
        for b, w in zip(state.plan.beams, weights, strict=True)
    ]
    ws.save_dose(plan_id, state.revision.number, beams, DoseGrid(geometry, total, frame), "stand-in (tests)")


@pytest.fixture(scope="session")
def _master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("web-master") / "home"
    ws = build_demo_workspace(home, spec=SMALL)
    try:
        compute_dose(ws, PLAN)
    except DoseError:
        # The engine refuses this plan on the 80x80 phantom today (the oblique beam's cutout touches the body).
        stand_in_dose(ws, PLAN)
    ws.close()
    return home


@pytest.fixture
def home(_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo workspace: unapproved plan CW-E1 with current dose, not yet authorized."""
    target = tmp_path / "home"
    shutil.copytree(_master, target)
    return target


def edit_site(home: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = home / "site.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(home, secret="test-secret"), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def log_in(client: TestClient, user: tuple[str, str]) -> str:
    """Log in through the form; the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    rsp = client.post("/login", data={"csrf": token, "name": user[0], "password": user[1], "next": "/"})
    assert rsp.status_code == 303, rsp.text
    return csrf_of(client.get("/").text)
