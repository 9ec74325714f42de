"""One plan view: the report (as pdftotext reads it), ``plan show --json`` and the exported RT Plan and RT
Structure Set (as pydicom reads them) say the same of every beam: isocenter, SSD, surface entry point, setup
technique, MU per fraction and every bolus it references, by the exported BOLUS ROI's name. For the demo plan
(ANT_OBL's field crosses ANT's bolus) and for one whose bolus is on the oblique beam instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from rtexport.demo.plan import DEMO_PLAN
from rtexport.export.gate import ALL_ITEMS
from rtexport.services.approval import authorize
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import load_plan
from rtexport.services.report import make_report
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import ACTOR, COARSE, PHYS
from tests.report.conftest import pdf_text

pytestmark = pytest.mark.integration  # poppler-utils

OWN_BOLUS = 'bolus = { thickness_mm = 10, margin_mm = 10, material = "Superflab" }\n'


def bolus_on_the_oblique_beam() -> str:
    """The demo plan with its bolus moved from ANT to ANT_OBL (so ANT's field crosses ANT_OBL's bolus)."""
    text = DEMO_PLAN.replace('id = "CW-E1"', 'id = "CW-E9"').replace(OWN_BOLUS, "")
    return text + OWN_BOLUS


def rt_objects(folder: Path) -> tuple[Dataset, Dataset]:
    (rp,) = [pydicom.dcmread(p) for p in folder.glob("RP.*.dcm")]
    (rs,) = [pydicom.dcmread(p) for p in folder.glob("RS.*.dcm")]
    return rp, rs


def rt_plan_beams(rp: Dataset, rs: Dataset) -> dict[str, dict[str, Any]]:
    """What the RT Plan says of each beam, bolus references named by the structure set's ROI names."""
    names = {int(r.ROINumber): str(r.ROIName) for r in rs.StructureSetROISequence}
    meterset = {
        int(b.ReferencedBeamNumber): float(b.BeamMeterset) for b in rp.FractionGroupSequence[0].ReferencedBeamSequence
    }
    techniques = {int(s.PatientSetupNumber): str(s.SetupTechnique) for s in rp.PatientSetupSequence}
    out = {}
    for b in rp.BeamSequence:
        cp = b.ControlPointSequence[0]
        out[str(b.BeamName)] = {
            "isocenter_mm": [float(v) for v in cp.IsocenterPosition],
            "ssd_mm": float(cp.SourceToSurfaceDistance),
            "surface_entry_mm": [float(v) for v in cp.SurfaceEntryPoint],
            "technique": techniques[int(b.ReferencedPatientSetupNumber)],
            "mu": meterset[int(b.BeamNumber)],
            "boli": [names[int(r.ReferencedROINumber)] for r in b.get("ReferencedBolusSequence", [])],
        }
    return out


@pytest.mark.parametrize("variant", ["demo", "bolus on the oblique beam"])
def test_report_plan_show_and_rt_plan_agree(planned: Workspace, tmp_path: Path, variant: str) -> None:
    plan_id = "CW-E1"
    if variant != "demo":
        state, _ = load_plan(planned, bolus_on_the_oblique_beam(), "plan.toml", ACTOR)
        plan_id = state.plan.id
        compute_dose(planned, plan_id, ACTOR, engine=COARSE)  # the views are held to each other, not to a dose
        authorize(planned, plan_id, PHYS, ACTOR)
    folder = tmp_path / "export"
    export_plan(planned, plan_id, ALL_ITEMS, FolderDestination(folder), ACTOR)
    files = rt_plan_beams(*rt_objects(folder))
    shown = run_rtexport(planned.home, "plan", "show", plan_id, "--json")
    assert shown.returncode == 0, shown.stderr
    view = {b["name"]: b for b in json.loads(shown.stdout)["beams"]}
    text = pdf_text(make_report(planned, plan_id, ACTOR).pdf, tmp_path)

    crossing = {name for name, beam in files.items() if len(beam["boli"]) and f"Bolus_{name}" not in beam["boli"]}
    assert crossing, "one beam's field crosses another beam's bolus"
    for name, rp in files.items():
        b = view[name]
        setup = b["setup"]
        assert setup["technique"] == rp["technique"] == "FIXED_SSD"
        assert setup["isocenter_mm"] == pytest.approx(rp["isocenter_mm"], abs=1e-3)
        assert setup["ssd_mm"] == pytest.approx(rp["ssd_mm"], abs=1e-3)
        assert setup["surface_entry_mm"] == pytest.approx(rp["surface_entry_mm"], abs=1e-3)
        assert b["boli"] == rp["boli"] and all("_" in n and " " not in n for n in rp["boli"])
        assert b["mu_per_fraction"] == pytest.approx(rp["mu"], abs=0.01)
        # the report: the same isocenter, SSD, bolus names and MU, to the digits it prints
        x, y, z = (round(v, 1) for v in rp["isocenter_mm"])
        assert f"Isocenter ({x}, {y}, {z}) mm · aimed at the centroid of PTV" in text, name
        assert f"SSD {rp['ssd_mm']:.1f} mm" in text
        bolus = ", ".join(rp["boli"]) or "none"
        assert f"Bolus {bolus}" in text, (name, bolus)
        assert f"MU per fraction {rp['mu']:.1f}" in text
    assert "Bolus none" not in text
