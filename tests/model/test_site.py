"""Site configuration: every problem reported with its path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

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


def energy(d: dict[str, Any], k: int = 0) -> dict[str, Any]:
    e: dict[str, Any] = d["machines"][0]["energies"][k]
    return e


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """``path`` like ``machines.0.energies.1.calibration_cgy_per_mu``: set that value in ``d``."""
    *parents, last = path.split(".")
    node: Any = d
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value


INF, NAN = float("inf"), float("nan")
PDD = "machines.0.energies.0.pdd"
CURVE = "ct_curves.0"

# (what, path, value, the problem's key, the words that say why)
BAD_SITE_VALUES = [
    (
        "calibration 1e-9",
        "machines.0.energies.1.calibration_cgy_per_mu",
        1e-9,
        "machines[0].energies[1].calibration_cgy_per_mu",
        "greater than or equal to 0.1",
    ),
    (
        "calibration inf",
        "machines.0.energies.1.calibration_cgy_per_mu",
        INF,
        "machines[0].energies[1].calibration_cgy_per_mu",
        "finite",
    ),
    (
        "calibration a string",
        "machines.0.energies.1.calibration_cgy_per_mu",
        "1.0",
        "machines[0].energies[1].calibration_cgy_per_mu",
        "valid number",
    ),
    (
        "calibration NaN",
        "machines.0.energies.1.calibration_cgy_per_mu",
        NAN,
        "machines[0].energies[1].calibration_cgy_per_mu",
        "finite",
    ),
    (
        "dose rate 0",
        "machines.0.energies.0.dose_rate_mu_per_min",
        0.0,
        "machines[0].energies[0].dose_rate_mu_per_min",
        "greater than or equal to 1",
    ),
    (
        "dose rate 1e9",
        "machines.0.energies.0.dose_rate_mu_per_min",
        1e9,
        "machines[0].energies[0].dose_rate_mu_per_min",
        "less than or equal to 10000",
    ),
    (
        "energy 0",
        "machines.0.energies.0.energy_mev",
        0.0,
        "machines[0].energies[0].energy_mev",
        "greater than or equal to 1",
    ),
    (
        "energy a boolean",
        "machines.0.energies.0.energy_mev",
        True,
        "machines[0].energies[0].energy_mev",
        "valid number",
    ),
    (
        "virtual SSD 1e300",
        "machines.0.energies.0.virtual_ssd_mm",
        1e300,
        "machines[0].energies[0].virtual_ssd_mm",
        "less than or equal to 2000",
    ),
    (
        "sigma theta 5 rad",
        "machines.0.energies.0.sigma_theta_rad",
        5.0,
        "machines[0].energies[0].sigma_theta_rad",
        "less than or equal to 0.5",
    ),
    (
        "applicator factor 0",
        "machines.0.energies.0.applicator_factors.10x10",
        0.0,
        "machines[0].energies[0].applicator_factors.10x10",
        "greater than or equal to 0.1",
    ),
    (
        "cutout factor inf",
        "machines.0.energies.0.cutout_factors.0.factor",
        INF,
        "machines[0].energies[0].cutout_factors[0].factor",
        "finite",
    ),
    (
        "PDD from 10 mm",
        f"{PDD}.depth_mm.0",
        10.0,
        "machines[0].energies[0].pdd.depth_mm",
        "must start at the surface, 0 mm",
    ),
    ("PDD depth NaN", f"{PDD}.depth_mm.3", NAN, "machines[0].energies[0].pdd.depth_mm[3]", "finite"),
    ("PDD dose inf", f"{PDD}.dose_pct.3", INF, "machines[0].energies[0].pdd.dose_pct[3]", "finite"),
    (
        "PDD dose negative",
        f"{PDD}.dose_pct.3",
        -1.0,
        "machines[0].energies[0].pdd.dose_pct[3]",
        "greater than or equal to 0",
    ),
    (
        "PDD not normalized",
        f"{PDD}.dose_pct",
        [50.0] * 56,
        "machines[0].energies[0].pdd",
        "normalized to 100 % at dmax",
    ),
    (
        "machine SAD 1e-300",
        "machines.0.source_axis_distance_mm",
        1e-300,
        "machines[0].source_axis_distance_mm",
        "greater than or equal to 500",
    ),
    (
        "applicator opening inf",
        "machines.0.applicators.0.opening_mm",
        [INF, INF],
        "machines[0].applicators[0].opening_mm[0]",
        "finite",
    ),
    (
        "applicator past the isocenter",
        "machines.0.applicators.0.source_to_applicator_mm",
        1200.0,
        "machines[0].applicators[0].source_to_applicator_mm",
        "ends beyond the isocenter",
    ),
    (
        "cutout tray past the applicator",
        "machines.0.applicators.0.source_to_cutout_tray_mm",
        960.0,
        "machines[0].applicators[0].source_to_cutout_tray_mm",
        "beyond the applicator's end",
    ),
    (
        "reversed ED curve",
        f"{CURVE}.rel_electron_density",
        [2.6, 1.55, 1.07, 1.0, 0.93, 0.2, 0.001],
        "ct_curves[0].rel_electron_density",
        "must not decrease",
    ),
    (
        "density dips",
        f"{CURVE}.mass_density",
        [0.0012, 0.2, 0.93, 1.0, 0.9, 1.62, 2.9],
        "ct_curves[0].mass_density",
        "point 4: 0.9 < 1",
    ),
    ("all-zero densities", f"{CURVE}.rel_electron_density", [0.0] * 7, "ct_curves[0].rel_electron_density", "all zero"),
    ("HU NaN", f"{CURVE}.hu.2", NAN, "ct_curves[0].hu[2]", "finite"),
    ("density inf", f"{CURVE}.mass_density.6", INF, "ct_curves[0].mass_density[6]", "finite"),
    ("HU as strings", f"{CURVE}.hu", ["-1000", "0", "1000", "2", "3", "4", "5"], "ct_curves[0].hu[0]", "valid number"),
    ("material density 0", "materials.0.mass_density", 0.0, "materials[0].mass_density", "greater than 0"),
    ("material scattering NaN", "materials.0.rel_scattering_power", NAN, "materials[0].rel_scattering_power", "finite"),
    ("port a string", "dicom.servers.0.port", "4242", "dicom.servers[0].port", "valid integer"),
    ("machine name with a backslash", "machines.0.name", "Demo\\Linac", "machines[0].name", "backslash"),
    (
        "applicator id of 17 emoji",
        "machines.0.applicators.0.id",
        "😀" * 17,
        "machines[0].applicators[0].id",
        "is 17 characters; DICOM SH allows at most 16",
    ),
    ("material name with a newline", "materials.0.name", "Wax\nRed", "materials[0].name", "control"),
    ("material name of spaces", "materials.0.name", "   ", "materials[0].name", "only spaces"),
    (
        "manufacturer of 65 characters",
        "manufacturer",
        "é" * 65,
        "manufacturer",
        "is 65 characters; DICOM LO allows at most 64",
    ),
    ("time zone unknown", "dicom.timezone", "Europe/Atlantis", "dicom.timezone", "unknown time zone 'Europe/Atlantis'"),
    ("time zone a path", "dicom.timezone", "../../etc/passwd", "dicom.timezone", "give an IANA name"),
    ("custom servers a string", "dicom.allow_custom_servers", "yes", "dicom.allow_custom_servers", "valid boolean"),
]


@pytest.mark.parametrize(
    ("path", "value", "key", "why"), [c[1:] for c in BAD_SITE_VALUES], ids=[c[0] for c in BAD_SITE_VALUES]
)
def test_bad_site_values_are_refused_with_their_key(path: str, value: Any, key: str, why: str) -> None:
    d = site()
    d["dicom"]["servers"] = [{"name": "archive", "ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 4242}]
    if path.startswith("materials.0"):
        d["materials"].insert(
            0, {"name": "Wax", "mass_density": 0.93, "rel_stopping_power": 0.95, "rel_scattering_power": 0.9}
        )
    set_path(d, path, value)
    _, problems = site_problems(d)
    assert any(p.startswith(f"{key}:") and why in p for p in problems), problems


def test_a_pdd_that_stops_before_the_practical_range_is_refused() -> None:
    d = site()
    pdd = energy(d, 2)["pdd"]  # 12 MeV: R50 50 mm, Rp 61 mm
    keep = [k for k, depth in enumerate(pdd["depth_mm"]) if depth <= 55.0]
    pdd["depth_mm"] = [pdd["depth_mm"][k] for k in keep]
    pdd["dose_pct"] = [pdd["dose_pct"][k] for k in keep]
    _, problems = site_problems(d)
    assert len(problems) == 1 and problems[0].startswith("machines[0].energies[2]: pdd: ends at ")
    assert "must reach past the practical range Rp" in problems[0] and "at most 5 % at 12 MeV" in problems[0]


def test_the_bremsstrahlung_tail_allowed_grows_with_energy() -> None:
    d = site()
    tail = energy(d, 4)["pdd"]["dose_pct"]  # 20 MeV: the tail is 4 %
    tail[-3:] = [5.8, 5.8, 5.8]  # 6 % is allowed at 20 MeV, not 5 %
    assert site_problems(d)[1] == []
    tail[-1] = 6.5
    assert site_problems(d)[1][0].startswith("machines[0].energies[4]: pdd: ends at 6.5 %")
