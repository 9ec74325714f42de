"""Dose computation as a service: stored for the revision it was computed for, never over an approved one."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

import rtexport.dose.plan as dose_plan
from rtexport.demo.plan import DEMO_PLAN
from rtexport.dose import compute_plan_dose
from rtexport.errors import GateError, PlanError
from rtexport.export.gate import Item
from rtexport.geometry.setup import AimedPlan
from rtexport.model.dose import DoseGrid, PlanDose
from rtexport.services.approval import approve
from rtexport.services.building import prepare
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import load_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE, PHYS

COARSE_MM = 5.0  # with COARSE: these tests are about what is stored and refused, not about the dose's values


def test_approval_while_dose_is_computed_keeps_the_approved_dose(
    planned: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduces the race: `rtexport dose` reads the plan (unapproved), computes for seconds, and meanwhile a
    physicist approves the dose that was there. The new dose must not replace the approved one."""
    before = planned.plan_state("CW-E1").dose
    assert before is not None
    approved_array = np.array(before.plan.load().gy)
    compute = compute_plan_dose

    def slow_compute(*args: object, **kwargs: object) -> PlanDose:
        result = compute(*args, **kwargs)  # type: ignore[arg-type]
        other = Workspace.open(planned.home)  # another process approves in the meantime
        approve(other, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
        other.close()
        plan = result.plan
        return PlanDose(result.beams, DoseGrid(plan.geometry, plan.gy * 2, plan.frame_of_reference_uid))

    monkeypatch.setattr(dose_plan, "compute_plan_dose", slow_compute)
    with pytest.raises(PlanError, match=r"was approved while its dose was computed; the approved dose stands"):
        compute_dose(planned, "CW-E1", ACTOR, grid_mm=COARSE_MM, engine=COARSE)
    after = planned.plan_state("CW-E1")
    assert after.approved and after.dose is not None
    assert after.dose.computed_at == before.computed_at
    assert np.array_equal(after.dose.plan.load().gy, approved_array)


def test_a_new_revision_while_dose_is_computed_is_not_given_the_old_dose(
    planned: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    compute = compute_plan_dose

    def compute_then_edit(*args: object, **kwargs: object) -> PlanDose:
        result = compute(*args, **kwargs)  # type: ignore[arg-type]
        other = Workspace.open(planned.home)
        load_plan(other, DEMO_PLAN.replace("fractions = 25", "fractions = 20"), "plan.toml", ACTOR)
        other.close()
        return result

    monkeypatch.setattr(dose_plan, "compute_plan_dose", compute_then_edit)
    with pytest.raises(PlanError, match=r"changed to revision 2 while its dose was computed"):
        compute_dose(planned, "CW-E1", ACTOR, grid_mm=COARSE_MM, engine=COARSE)
    assert planned.plan_state("CW-E1").dose is None  # revision 2 has no dose


def test_objects_are_built_with_the_dose_setup_only_for_its_own_revision(planned: Workspace) -> None:
    """The dose hands its beam setup on to the objects built after it, tagged with its revision: a revision
    loaded in between is set up anew (an empty setup would fail the structure set's bolus, so it shows)."""
    fixed_mu = DEMO_PLAN.replace("weight = 0.6", "mu = 120.0").replace("weight = 0.4", "mu = 80.0")  # buildable
    old = planned.plan_state("CW-E1").revision.token
    load_plan(planned, fixed_mu, "plan.toml", ACTOR)
    empty = AimedPlan(beams=(), bolus={})
    ignored = prepare(planned, "CW-E1", ACTOR, setup=(old, empty))  # another revision's setup: not used
    assert ignored.warning is not None and "compute the dose first" in ignored.warning  # its plan, not its RS
    load_plan(planned, fixed_mu.replace("fractions = 25", "fractions = 20"), "plan.toml", ACTOR)
    current = planned.plan_state("CW-E1").revision.token
    used = prepare(planned, "CW-E1", ACTOR, setup=(current, empty))  # its own: used
    assert used.count == 0 and used.warning is not None and "no bolus contours were computed" in used.warning


def test_approved_plan_dose_is_not_recomputed(planned: Workspace) -> None:
    approve(planned, "CW-E1", PHYS, ACTOR, acknowledge_mu_check=True)
    with pytest.raises(PlanError, match=r"is approved: its dose is fixed"):
        compute_dose(planned, "CW-E1", ACTOR)


def test_implausible_computed_mu_are_told_and_block_approval_and_export(planned: Workspace, tmp_path: Path) -> None:
    """A calibration a tenth of the real one (still within its range) gives ten times the MU: above the usual
    range, which the plan does not acknowledge."""
    data = tomllib.loads(planned.site_path.read_text())
    for e in data["machines"][0]["energies"]:
        e["calibration_cgy_per_mu"] = 0.1
    planned.site_path.write_text(tomli_w.dumps(data))
    result = compute_dose(planned, "CW-E1", ACTOR, grid_mm=COARSE_MM, engine=COARSE)
    assert any(w.startswith("beam[0].mu: ") and "cannot be approved or exported" in w for w in result.warnings)
    with pytest.raises(PlanError, match=r"cannot be approved\n  - beam\[0\].mu: \d+\.\d MU per fraction \(computed\)"):
        approve(planned, "CW-E1", PHYS, ACTOR)
    assert not planned.plan_state("CW-E1").approved
    with pytest.raises(GateError) as refused:
        export_plan(planned, "CW-E1", (Item.RTPLAN,), FolderDestination(tmp_path / "out"), ACTOR)
    assert any("beam[0].mu" in f and "outside the site's usual 20-800 MU" in f for f in refused.value.findings)
    assert not (tmp_path / "out").exists()


def test_the_command_line_and_the_dose_service_import_no_scipy_until_a_dose_is_computed() -> None:
    """The engine's stack (scipy, about a third of a second) is imported by the commands that compute: the others
    (`plan list`, `plan show`, the page's start) do not wait for it."""
    code = "import sys, rtexport.cli, rtexport.services.dose; print(sorted(m for m in sys.modules if 'scipy' in m))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
