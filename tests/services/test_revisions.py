"""What changed between two revisions, in the plan file's keys: what the audit keeps with each new revision."""

from __future__ import annotations

from rtexport.demo.plan import DEMO_PLAN
from rtexport.model.plan import parse_plan
from rtexport.services.revisions import plan_changes


def test_changes_name_each_key_added_changed_and_removed() -> None:
    old = parse_plan(DEMO_PLAN)
    beams = [
        old.beams[0].model_copy(update={"bolus": None, "energy_mev": 12.0}),
    ]
    new = old.model_copy(update={"beams": beams, "label": "Changed", "overrides": []})
    assert plan_changes(old, new) == [
        "label: Chestwall e- → Changed",
        "beam[0].energy_mev: 16 → 12",
        "override[0].structure: Prosthesis → (none)",
        "override[0].material: Water → (none)",
        "beam[0].bolus.thickness_mm: 10 → (none)",
        "beam[0].bolus.margin_mm: 10 → (none)",
        "beam[0].bolus.material: Superflab → (none)",
        "beam[1].name: ANT_OBL → (none)",
        "beam[1].energy_mev: 16 → (none)",
        "beam[1].applicator: 15x15 → (none)",
        "beam[1].gantry_deg: 20 → (none)",
        "beam[1].collimator_deg: 0 → (none)",
        "beam[1].couch_deg: 0 → (none)",
        "beam[1].target: PTV → (none)",
        "beam[1].ssd_mm: 1000 → (none)",
        "beam[1].weight: 0.4 → (none)",
        "beam[1].cutout_mm: [[-65.0, -50.0], [65.0, -50.0], [65.0, 50.0], [-65.0, 50.0]] → (none)",
    ]
    assert plan_changes(old, old) == []
