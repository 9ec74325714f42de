"""The dose records the beam data it was computed with: when site.toml changes the plan's beam data, CT curve or
materials, the dose is stale; approval and the export of what depends on dose are refused until the dose is
computed again or a physicist accepts the change (audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rtexport.errors import AuthError, GateError, PlanError
from rtexport.export.gate import Item
from rtexport.services.approval import accept_dose, approve
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import plan_state, plan_states
from rtexport.services.planview import plan_view
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE, PHYS, PLANNER, edit_site_toml

PLAN = "CW-E1"


def _calibrate_16_mev(site: dict[str, Any]) -> None:
    (energy,) = [e for e in site["machines"][0]["energies"] if e["energy_mev"] == 16]
    energy["calibration_cgy_per_mu"] = 1.3


def test_dose_is_current_until_the_beam_data_of_its_energy_changes(planned: Workspace) -> None:
    assert plan_state(planned, PLAN).dose_state == "current"

    def other_energies(site: dict[str, Any]) -> None:
        for e in site["machines"][0]["energies"]:
            if e["energy_mev"] != 16:
                e["calibration_cgy_per_mu"] = 1.3

    edit_site_toml(planned.home, other_energies)
    assert plan_state(planned, PLAN).dose_state == "current"  # the energies the plan does not use
    edit_site_toml(planned.home, _calibrate_16_mev)
    state = plan_state(planned, PLAN)
    assert state.dose_state == "stale"
    assert state.dose_stale == ("beam data of DemoLinac 16 MeV changed in site.toml since the dose was computed",)
    assert [s.dose_state for s in plan_states(planned)] == ["stale"]
    assert "dose stale: beam data of DemoLinac 16 MeV changed" in plan_view(planned, PLAN).warnings[0]


def test_stale_dose_refuses_approval_and_export_until_recomputed(planned: Workspace, tmp_path: Path) -> None:
    edit_site_toml(planned.home, _calibrate_16_mev)
    with pytest.raises(PlanError, match="cannot be approved: its dose is stale"):
        approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True)
    out = tmp_path / "out"
    with pytest.raises(GateError, match=r"rtplan, dose-plan: the dose of plan CW-E1 is stale \(beam data of Demo"):
        export_plan(planned, PLAN, (Item.RTPLAN, Item.DOSE_PLAN), FolderDestination(out), ACTOR)
    assert not out.exists()
    # The CT and the structure set do not depend on dose: they may go.
    export_plan(planned, PLAN, (Item.CT, Item.RTSTRUCT), FolderDestination(out), ACTOR)
    before = planned.plan_state(PLAN).dose
    assert before is not None
    after = compute_dose(planned, PLAN, ACTOR, engine=COARSE)  # the engine of the dose before
    assert plan_state(planned, PLAN).dose_state == "current"
    # 30 % more output per MU: 1/1.3 of the MU
    assert after.dose.beams[0].mu_per_fraction == pytest.approx(before.beams[0].mu_per_fraction / 1.3, rel=1e-3)
    assert approve(planned, PLAN, PHYS, ACTOR, acknowledge_mu_check=True).state.approved


def test_a_physicist_accepts_the_change_audited(planned: Workspace, tmp_path: Path) -> None:
    edit_site_toml(planned.home, _calibrate_16_mev)
    with pytest.raises(AuthError, match="only a physicist"):
        accept_dose(planned, PLAN, PLANNER, ACTOR)
    state, accepted = accept_dose(planned, PLAN, PHYS, ACTOR)
    assert state.dose_state == "current" and accepted[0].startswith("beam data of DemoLinac 16 MeV changed")
    entry = planned.audit_log.entries()[-1]
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("dose-accept", "ok", "phil")
    assert entry["detail"]["accepted"] == list(accepted)
    assert planned.seals.check_all() == []  # the dose record changed by rtexport, and sealed anew
    export_plan(planned, PLAN, (Item.RTPLAN,), FolderDestination(tmp_path / "out"), ACTOR)
    with pytest.raises(PlanError, match="the dose is current, there is nothing to accept"):
        accept_dose(planned, PLAN, PHYS, ACTOR)


def test_a_ct_curve_or_material_the_plan_uses_counts_too(planned: Workspace) -> None:
    curve = planned.plan_state(PLAN).plan.ct_curve

    def denser(site: dict[str, Any]) -> None:
        for c in site["ct_curves"]:
            c["mass_density"] = [d * 1.01 for d in c["mass_density"]]

    edit_site_toml(planned.home, denser)
    assert plan_state(planned, PLAN).dose_stale == (
        f"CT curve {curve} changed in site.toml since the dose was computed",
    )
