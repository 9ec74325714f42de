"""`rtexport demo`, the README's first command: it must run end to end and leave valid files, and its plan is one a
physicist would sign: its target covered by the 90 % isodose, no hot spot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from rtexport.demo.plan import DEMO_PLAN_ID
from rtexport.services.views import course_volume, plan_dvh
from rtexport.services.workspaces import open_workspace
from tests.cli.shell import run_rtexport, shell_env
from tests.support.dciodvfy import assert_valid


def covers_its_target_as_a_clinic_would_accept(home: Path) -> None:
    """The demo's plan and the dose it computed: V90 >= 98 % and D95 >= 93 % of the PTV, no point above 107 %."""
    with open_workspace(home) as ws:
        state = ws.plan_state(DEMO_PLAN_ID)
        assert state.dose is not None
        course = ws.course(state.plan.course)
        curves = {c.name: c for c in plan_dvh(course_volume(ws, course), state.dose.plan.load(), course, state.plan)}
    ptv, rx = curves["PTV"], state.plan.prescription_gy
    assert ptv.volume_at_least(0.90 * rx) >= 98.0  # the 90 % isodose covers the PTV
    assert ptv.d95_gy >= 0.93 * rx
    assert ptv.max_gy <= 1.07 * rx and max(c.max_gy for c in curves.values()) <= 1.07 * rx  # no hot spot


@pytest.mark.integration
def test_demo_builds_computes_authorizes_and_exports(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "rtexport", "demo", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        env=shell_env(),
    )
    assert r.returncode == 0, r.stderr
    assert "MU/fraction" in r.stdout and "65 file(s) written" in r.stdout
    out = home / "dicom-export"
    kinds = sorted(p.name.split(".")[0] for p in out.glob("*.dcm"))
    assert kinds.count("CT") == 60 and kinds.count("RS") == 1 and kinds.count("RP") == 1 and kinds.count("RD") == 3
    for p in out.glob("R[SPD].*.dcm"):
        assert_valid(p)
    (rp,) = [pydicom.dcmread(p) for p in out.glob("RP.*.dcm")]
    assert rp.ApprovalStatus == "UNAPPROVED" and len(rp.BeamSequence) == 2
    covers_its_target_as_a_clinic_would_accept(home)
    # running it again replaces the demo workspace, and refuses any other folder
    again = run_rtexport(home, "demo", "--home", str(home), timeout=300)
    assert again.returncode == 0, again.stderr
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    refused = run_rtexport(other, "demo", "--home", str(other))
    assert refused.returncode == 1 and "not a demo workspace" in refused.stderr
    assert (other / "notes.txt").read_text() == "keep me"
