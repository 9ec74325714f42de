"""``rtexport dose`` computes the setup and dose in a worker forked before its imports: the same dose, and where
the worker fails, the dose computed in the command's own process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import rtexport.export.build as export_build
import rtexport.services.dose as dose_service
import rtexport.services.dose_worker as dose_worker
from rtexport.services.dose import compute_dose
from rtexport.services.dose_worker import DoseWorker
from rtexport.workspace import Workspace
from tests.conftest import ACTOR

GRID_MM = 5.0  # about sameness, not resolution

pytestmark = pytest.mark.skipif(not dose_worker.CAN_FORK, reason="no worker where fork is not available")


def _stored(ws: Workspace) -> tuple[str, list[tuple[str, float, str]], list[str]]:
    """The stored dose (its arrays' digests, MU) and the digests of the export objects kept for it."""
    state = ws.plan_state("CW-E1")
    assert state.dose is not None
    beams = [(b.beam_name, b.mu_per_fraction, b.grid.sha256) for b in state.dose.beams]
    kept = ws.db.all("SELECT sha256 FROM built ORDER BY sha256")
    return state.dose.plan.sha256, beams, [str(r["sha256"]) for r in kept]


def test_the_workers_dose_is_the_dose_computed_here(planned: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    here = compute_dose(planned, "CW-E1", ACTOR, GRID_MM)
    computed_here = _stored(planned)

    def not_here(*args: object) -> None:
        raise AssertionError("computed in the command's process, not in the worker")

    monkeypatch.setattr(dose_service, "_setup_and_dose", not_here)
    monkeypatch.setattr(export_build, "aim_plan", not_here)  # the objects use the worker's setup: beams set up once
    worker = DoseWorker.start()
    assert worker is not None
    try:
        there = compute_dose(planned, "CW-E1", ACTOR, GRID_MM, worker=worker)
    finally:
        worker.close()
    assert _stored(planned) == computed_here  # the same arrays, so the same kept RS, RP and RD files
    assert (there.max_gy, there.warnings, there.grid_shape) == (here.max_gy, here.warnings, here.grid_shape)
    assert not any("cannot be prepared" in w for w in there.warnings)
    with pytest.raises(ChildProcessError):
        os.waitpid(worker.pid, os.WNOHANG)  # ended and reaped


def test_a_failing_worker_leaves_the_dose_to_the_command(planned: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    here = compute_dose(planned, "CW-E1", ACTOR, GRID_MM)
    computed_here = _stored(planned)

    def fails(*args: object) -> None:
        raise MemoryError("the worker ran out of memory")

    monkeypatch.setattr(dose_worker, "_compute", fails)  # the worker is forked with it
    here_calls: list[object] = []
    setup_and_dose = dose_service._setup_and_dose

    def counted(*args: Any) -> Any:
        here_calls.append(args)
        return setup_and_dose(*args)

    monkeypatch.setattr(dose_service, "_setup_and_dose", counted)
    worker = DoseWorker.start()
    assert worker is not None
    try:
        again = compute_dose(planned, "CW-E1", ACTOR, GRID_MM, worker=worker)
    finally:
        worker.close()
    assert len(here_calls) == 1  # the worker failed: computed here
    assert _stored(planned) == computed_here and again.max_gy == here.max_gy


def test_a_worker_never_asked_is_ended() -> None:
    worker = DoseWorker.start()
    assert worker is not None
    worker.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(worker.pid, os.WNOHANG)


def test_the_command_side_of_the_dose_does_not_import_scipy() -> None:
    """What `rtexport dose` imports in its own process while the worker imports the engine's stack."""
    code = "import sys, rtexport.cli, rtexport.services.dose; print(sorted(m for m in sys.modules if 'scipy' in m))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
