"""Site configuration: every problem reported with its path."""

from __future__ import annotations

import copy
from typing import Any

from rtexport.demo.beamdata import demo_site
from rtexport.model.site import site_problems


def site() -> dict[str, Any]:
    d = demo_site()
    d.pop("uid_root")
    return copy.deepcopy(d)


def test_demo_site_is_valid() -> None:
    s, problems = site_problems(site())
    assert problems == []
    assert s is not None and s.machine("DemoLinac") is not None


def test_non_monotonic_depths_named_with_path() -> None:
    d = site()
    depths = d["machines"][0]["energies"][2]["pdd"]["depth_mm"]
    depths[5], depths[6] = depths[6], depths[5]
    _, problems = site_problems(d)
    assert problems == ["machines[0].energies[2].pdd.depth_mm: depths must increase"]


def test_several_problems_listed_at_once() -> None:
    d = site()
    d["machines"][0]["energies"][0]["reference_applicator"] = "7x7"
    del d["machines"][0]["energies"][1]["applicator_factors"]["15x15"]
    d["ct_curves"][0]["hu"][2] = -900.0
    d["dicom"]["local_ae_title"] = "WAY_TOO_LONG_AE_TITLE"
    _, problems = site_problems(d)
    assert any(p.startswith("ct_curves[0].hu: HU values must increase") for p in problems)
    assert any(p.startswith("dicom.local_ae_title:") for p in problems)
    d["ct_curves"][0]["hu"][2] = -100.0
    d["dicom"]["local_ae_title"] = "RTEXPORT"
    _, problems = site_problems(d)
    assert problems == [
        "machines[0].energies[0].reference_applicator: unknown applicator '7x7'",
        "machines[0].energies[1].applicator_factors: missing applicator(s) 15x15",
    ]


def test_unknown_cutout_material_and_missing_spread() -> None:
    d = site()
    d["machines"][0]["applicators"][1]["default_cutout_material"] = "Lead"
    _, problems = site_problems(d)
    assert problems == ["machines[0].applicators[1].default_cutout_material: unknown material 'Lead'"]
    d = site()
    del d["machines"][0]["energies"][3]["sigma_theta_rad"]
    _, problems = site_problems(d)
    assert problems == ["machines[0].energies[3]: give sigma_theta_rad or penumbra_80_20_mm"]


def test_empty_site_is_structurally_valid() -> None:
    s, problems = site_problems({})
    assert problems == [] and s is not None and s.machines == []


def test_machine_geometry_is_required_and_checked() -> None:
    d = site()
    machine = d["machines"][0]
    del machine["source_to_jaws_mm"]
    del machine["applicators"][1]["jaws_mm"]
    machine["energies"][0]["applicator_jaws_mm"] = {"10x10": {"x": [-60.0, 60.0], "y": [-100.0, 100.0]}}
    _, problems = site_problems(d)
    assert problems[0].startswith("machines[0].source_to_jaws_mm: missing: the machine's source-to-jaw distances")
    # 6, 16 and 20 MeV give their own 10x10 setting: only 9 and 12 MeV miss one
    assert problems[1].startswith("machines[0].applicators[1].jaws_mm: missing: the machine's fixed jaw setting with")
    assert "applicator 10x10 (for 9, 12 MeV)" in problems[1]
    assert problems[2:] == []
    # narrower than the 100 mm applicator opening: a made-up setting
    machine["energies"][0]["applicator_jaws_mm"]["10x10"]["y"] = [-40.0, 40.0]
    _, problems = site_problems(d)
    assert problems[-1] == (
        "machines[0].applicators[1]: the jaws at 6 MeV (x (-60.0, 60.0), y (-40.0, 40.0)) are narrower than the "
        "applicator opening 100 x 100 mm"
    )


def test_jaws_at_an_energy_override_the_applicators() -> None:
    s, problems = site_problems(site())
    assert problems == [] and s is not None
    machine = s.machines[0]
    small, large = machine.jaws("6x6", 20.0), machine.jaws("6x6", 9.0)
    assert small is not None and large is not None
    assert small.x == (-55.0, 55.0) and large.x == (-80.0, 80.0)
    assert machine.jaws("7x7", 9.0) is None
