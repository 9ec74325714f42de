"""A small demo workspace with dose, built once per session and copied for each test; log-in helpers."""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fastapi.testclient import TestClient

from rtexport.demo.phantom import PhantomSpec
from rtexport.demo.plan import DEMO_PLAN_ID, DEMO_USERS
from rtexport.model.people import Actor
from rtexport.services.demo import build_demo_workspace
from rtexport.services.dose import compute_dose
from rtexport.web.app import create_app
from tests.conftest import COARSE

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SMALL = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0)
PLAN = DEMO_PLAN_ID
PLANNER = ("pat", DEMO_USERS["pat"][1])
PHYSICIST = ("phil", DEMO_USERS["phil"][1])


@pytest.fixture(scope="session")
def _master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("web-master") / "home"
    ws = build_demo_workspace(home, spec=SMALL)
    compute_dose(ws, PLAN, Actor("pat", "pat-os", "test"), engine=COARSE)  # the pages show a dose, any dose
    ws.close()
    return home


def chromium_path() -> str:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is not installed: apt-get install chromium (needed for the browser tests)")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium (Debian's, driven by Playwright) for the browser tests of a module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=ARGS)
        yield browser
        browser.close()


@contextmanager
def pages_of(browser: Any) -> Iterator[Any]:
    """``browser`` for one test: each page it opens has a context (cookies, storage) of its own, closed at the end."""
    before = list(browser.contexts)
    try:
        yield browser
    finally:
        for context in browser.contexts:
            if context not in before:
                context.close()


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
    app = create_app(home, secret="test-secret")
    with TestClient(app, follow_redirects=False) as c:
        yield c
    app.state.jobs.join_all()  # no export thread outlives its test


def wait_job(client: TestClient, job: str) -> dict[str, Any]:
    """The job's final state as the page reads it, once its thread has ended."""
    client.app.state.jobs.wait(job, timeout=60)  # type: ignore[attr-defined]
    rsp = client.get(f"/jobs/{job}")
    assert rsp.status_code == 200, rsp.text
    status: dict[str, Any] = rsp.json()
    assert status["state"] != "running", status
    return status


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
