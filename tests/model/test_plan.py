"""Plan values: finite, typed, within plausible ranges; text valid for the DICOM it becomes; what is unusual
but legitimate is accepted only when the file acknowledges it. Each bad value is refused with its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.demo.plan import DEMO_PLAN
from rtexport.errors import PlanError
from rtexport.model.course import Course
from rtexport.model.plan import mu_problems, parse_plan, plan_digest, plan_problems, unusual_values
from rtexport.model.site import Site
from rtexport.workspace.importer import read_course

SITE = Site.model_validate(demo_site())
FIRST_SSD = "ssd_mm = 1000\nweight = 0.6"
WEIGHTS = ("weight = 0.6", "weight = 0.4")


@pytest.fixture(scope="module")
def course(_phantom_master: Path) -> Course:
    return read_course(_phantom_master, "C1").course


def edited(*changes: tuple[str, str]) -> str:
    text = DEMO_PLAN
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def mu(value: str) -> list[tuple[str, str]]:
    return [(WEIGHTS[0], f"mu = {value}"), (WEIGHTS[1], "mu = 150")]


# (what, changes to the demo plan, the key refused, the words that say why) — each case the issue lists among them
BAD_PLAN_VALUES = [
    ("mu inf", mu("inf"), "beam[0].mu", "finite"),
    ("mu 1e300", mu("1e300"), "beam[0].mu", "less than or equal to 9999"),
    ("mu 1e-300", mu("1e-300"), "beam[0].mu", "greater than or equal to 1"),
    ("mu nan", mu("nan"), "beam[0].mu", "finite"),
    ("mu a string", mu('"250"'), "beam[0].mu", "valid number"),
    ("prescription inf", [("prescription_gy = 50.0", "prescription_gy = inf")], "prescription_gy", "finite"),
    (
        "prescription 1e300",
        [("prescription_gy = 50.0", "prescription_gy = 1e300")],
        "prescription_gy",
        "less than or equal to 100",
    ),
    (
        "prescription 1e-300",
        [("prescription_gy = 50.0", "prescription_gy = 1e-300")],
        "prescription_gy",
        "greater than or equal to 0.1",
    ),
    (
        "prescription a string",
        [("prescription_gy = 50.0", 'prescription_gy = "50"')],
        "prescription_gy",
        "valid number",
    ),
    (
        "30 Gy in one fraction",
        [("fractions = 25", "fractions = 1"), ("prescription_gy = 50.0", "prescription_gy = 30.0")],
        "(top level)",
        "more than 25",
    ),
    ("fractions a string", [("fractions = 25", 'fractions = "25"')], "fractions", "valid integer"),
    ("fractions 25.0", [("fractions = 25", "fractions = 25.0")], "fractions", "valid integer"),
    ("fractions true", [("fractions = 25", "fractions = true")], "fractions", "valid integer"),
    ("fractions 0", [("fractions = 25", "fractions = 0")], "fractions", "greater than or equal to 1"),
    ("ssd inf", [(FIRST_SSD, "ssd_mm = inf\nweight = 0.6")], "beam[0].ssd_mm", "finite"),
    ("ssd 1e300", [(FIRST_SSD, "ssd_mm = 1e300\nweight = 0.6")], "beam[0].ssd_mm", "less than or equal to 2000"),
    (
        "ssd 1e-300",
        [(FIRST_SSD, "ssd_mm = 1e-300\nweight = 0.6")],
        "beam[0].ssd_mm",
        "puts the skin inside applicator 15x15",
    ),
    ("ssd 10000", [(FIRST_SSD, "ssd_mm = 10000\nweight = 0.6")], "beam[0].ssd_mm", "less than or equal to 2000"),
    ("weight inf", [(WEIGHTS[0], "weight = inf")], "beam[0].weight", "finite"),
    ("weight 1e300", [(WEIGHTS[0], "weight = 1e300")], "beam[0].weight", "less than or equal to 1000"),
    ("weight 1e-300", [(WEIGHTS[0], "weight = 1e-300")], "beam[0].weight", "greater than or equal to 0.001"),
    ("weight nan", [(WEIGHTS[0], "weight = nan")], "beam[0].weight", "finite"),
    (
        "isocenter nan",
        [('target = "PTV"', "isocenter_mm = [0.0, nan, 0.0]")],
        "beam[0].isocenter_mm[1]",
        "finite",
    ),
    (
        "isocenter inf",
        [('target = "PTV"', "isocenter_mm = [inf, 0.0, 0.0]")],
        "beam[0].isocenter_mm[0]",
        "finite",
    ),
    (
        "isocenter as strings",
        [('target = "PTV"', 'aim_mm = ["0", "0", "0"]')],
        "beam[0].aim_mm[0]",
        "valid number",
    ),
    ("gantry nan", [("gantry_deg = 0\n", "gantry_deg = nan\n")], "beam[0].gantry_deg", "finite"),
    ("energy a string", [("energy_mev = 16", 'energy_mev = "16"')], "beam[0].energy_mev", "valid number"),
    ("cutout point inf", [("[-65, -50], [65, -50]", "[-65, -50], [inf, -50]")], "beam[0].cutout_mm[1][0]", "finite"),
    (
        "bolus 1e300 mm",
        [("thickness_mm = 10", "thickness_mm = 1e300")],
        "beam[0].bolus.thickness_mm",
        "less than or equal to 50",
    ),
    ("grid nan", [("prescription_gy = 50.0", "prescription_gy = 50.0\ndose_grid_mm = nan")], "dose_grid_mm", "finite"),
    ("label with a backslash", [('label = "Chestwall e-"', 'label = "Chest\\\\wall"')], "label", "backslash"),
    ("beam name with a backslash", [('name = "ANT"', 'name = "AN\\\\T"')], "beam[0].name", "backslash"),
    ("label with a newline", [('label = "Chestwall e-"', 'label = "Chest\\nwall"')], "label", "control"),
    ("beam name with NUL", [('name = "ANT"', 'name = "AN\\u0000T"')], "beam[0].name", "control"),
    ("label only spaces", [('label = "Chestwall e-"', 'label = "    "')], "label", "only spaces"),
    (
        "label of 17 Greek letters",
        [('label = "Chestwall e-"', 'label = "' + "Ω" * 17 + '"')],
        "label",
        "is 17 characters; DICOM SH allows at most 16",
    ),
    (
        "beam name of 17 ideographs",
        [('name = "ANT"', 'name = "' + "線" * 17 + '"')],
        "beam[0].name",
        "at most 16",
    ),
    ("a number as the label", [('label = "Chestwall e-"', "label = 12")], "label", "valid string"),
    (
        "measured cutout factor without a note",
        [(WEIGHTS[0], "weight = 0.6\ncutout_factor = { value = 0.9 }")],
        "beam[0].cutout_factor.note",
        "Field required",
    ),
    (
        "measured cutout factor with a blank note",
        [(WEIGHTS[0], 'weight = 0.6\ncutout_factor = { value = 0.9, note = "  " }')],
        "beam[0]",
        "say how the factor was measured",
    ),
    (
        "measured cutout factor above the open applicator's",
        [(WEIGHTS[0], 'weight = 0.6\ncutout_factor = { value = 1.2, note = "diode" }')],
        "beam[0].cutout_factor.value",
        "less than or equal to 1",
    ),
    (
        "measured cutout factor for an open applicator",
        [
            ("cutout_mm = [[-65, -50], [65, -50], [65, 50], [-65, 50]]", ""),
            (WEIGHTS[1], 'weight = 0.4\ncutout_factor = { value = 0.9, note = "diode" }'),
        ],
        "beam[1]",
        "cutout_factor is for a custom cutout",
    ),
    (
        "unknown acknowledgement",
        [("ssd_mm = 1000\nweight = 0.6", 'ssd_mm = 1000\nweight = 0.6\nacknowledge = ["ssd"]')],
        "beam[0].acknowledge[0]",
        "'ssd_mm' or 'mu'",
    ),
]


@pytest.mark.parametrize(
    ("changes", "key", "why"), [c[1:] for c in BAD_PLAN_VALUES], ids=[c[0] for c in BAD_PLAN_VALUES]
)
def test_bad_plan_values_are_refused_with_their_key(
    course: Course, changes: list[tuple[str, str]], key: str, why: str
) -> None:
    text = edited(*changes)
    try:
        plan = parse_plan(text, "plan.toml")
    except PlanError as e:
        problems = e.problems
    else:
        problems = plan_problems(plan, SITE, course)
    assert any(p.startswith(f"{key}:") and why in p for p in problems), problems


@pytest.mark.parametrize("ssd", ["500", "700", "950"])
def test_an_ssd_inside_the_applicator_is_refused_even_when_acknowledged(course: Course, ssd: str) -> None:
    plan = parse_plan(edited((FIRST_SSD, f'ssd_mm = {ssd}\nweight = 0.6\nacknowledge = ["ssd_mm"]')))
    problems = plan_problems(plan, SITE, course)
    assert problems == [
        f"beam[0].ssd_mm: {ssd} mm puts the skin inside applicator 15x15, whose end is 950 mm from the source; "
        "the SSD must be larger"
    ]


def test_an_extended_ssd_needs_an_acknowledgement_in_the_file(course: Course) -> None:
    plan = parse_plan(edited((FIRST_SSD, "ssd_mm = 1150\nweight = 0.6")))
    assert plan_problems(plan, SITE, course) == [
        "beam[0].ssd_mm: 1150 mm is an extended SSD, beyond DemoLinac's usual 1000-1100 mm; if it is intended, "
        'acknowledge it on beam[0]: acknowledge = ["ssd_mm"]'
    ]
    acknowledged = parse_plan(edited((FIRST_SSD, 'ssd_mm = 1150\nweight = 0.6\nacknowledge = ["ssd_mm"]')))
    assert plan_problems(acknowledged, SITE, course) == []
    (unusual,) = unusual_values(acknowledged, SITE)
    assert unusual.acknowledged and unusual.key == "beam[0].ssd_mm"
    too_far = parse_plan(edited((FIRST_SSD, 'ssd_mm = 1600\nweight = 0.6\nacknowledge = ["ssd_mm"]')))
    assert plan_problems(too_far, SITE, course) == [
        "beam[0].ssd_mm: 1600 mm is not a plausible SSD on DemoLinac (at most 1500 mm, 1.5 x its source-axis distance)"
    ]


def test_the_clinics_usual_ssd_range_is_the_machines(course: Course) -> None:
    data = demo_site()
    data["machines"][0]["usual_max_ssd_mm"] = 1200.0
    site = Site.model_validate(data)
    assert plan_problems(parse_plan(edited((FIRST_SSD, "ssd_mm = 1150\nweight = 0.6"))), site, course) == []


def test_unusual_mu_and_dose_per_fraction_need_an_acknowledgement(course: Course) -> None:
    plan = parse_plan(edited(*mu("1500"), ("fractions = 25", "fractions = 2")))
    assert [p.split(":")[0] for p in plan_problems(plan, SITE, course)] == ["prescription_gy", "beam[0].mu"]
    ok = parse_plan(
        edited(
            *mu("1500"),
            ("fractions = 25", 'fractions = 2\nacknowledge = ["prescription_gy"]'),
            ('name = "ANT"', 'name = "ANT"\nacknowledge = ["mu"]'),
        )
    )
    assert plan_problems(ok, SITE, course) == []


def test_computed_mu_are_checked_like_given_ones() -> None:
    plan = parse_plan(DEMO_PLAN)
    assert mu_problems(plan, SITE, {"ANT": 120.0, "ANT_OBL": 95.0}) == []
    huge = mu_problems(plan, SITE, {"ANT": 122_812_969_010.0, "ANT_OBL": 95.0})
    assert huge == [
        "beam[0].mu: 1.228e+11 MU per fraction computed for beam ANT is not deliverable (1-9999 MU); check the "
        "site's calibration and factors and the plan's prescription"
    ]
    (unusual,) = mu_problems(plan, SITE, {"ANT": 120.0, "ANT_OBL": 1500.0})
    assert unusual.startswith("beam[1].mu: 1500.0 MU per fraction (computed) is outside the site's usual 20-800 MU")


def test_an_acknowledgement_is_a_change_of_the_plan_and_an_empty_one_is_not() -> None:
    plain = plan_digest(parse_plan(DEMO_PLAN))
    empty = plan_digest(parse_plan(edited(('name = "ANT"', 'name = "ANT"\nacknowledge = []'))))
    acknowledged = plan_digest(parse_plan(edited(('name = "ANT"', 'name = "ANT"\nacknowledge = ["mu"]'))))
    assert plain == empty != acknowledged


# A plan file as stored before beams could carry a measured cutout factor, and its digest then.
STORED_PLAN = """\
format = 1
id = "CW-E1"
label = "Chestwall e-"
course = "C1"
machine = "DemoLinac"
ct_curve = "Default"
external = "OUTLINE2"
fractions = 25
prescription_gy = 50.0

[[override]]
structure = "Prosthesis"
material = "Water"

[[beam]]
name = "ANT"
energy_mev = 9
applicator = "10x10"
gantry_deg = 0
collimator_deg = 0
couch_deg = 0
target = "PTV"
ssd_mm = 1000
weight = 0.6
cutout_mm = [[-45, -35], [45, -35], [45, 25], [30, 35], [-45, 35]]
bolus = { thickness_mm = 10, margin_mm = 10, material = "Superflab" }

[[beam]]
name = "ANT_OBL"
energy_mev = 12
applicator = "15x15"
gantry_deg = 20
collimator_deg = 0
couch_deg = 0
target = "PTV"
ssd_mm = 1000
weight = 0.4
cutout_mm = [[-50, -40], [50, -40], [50, 40], [-50, 40]]
"""


def test_a_plan_stored_before_measured_cutout_factors_keeps_its_digest() -> None:
    assert plan_digest(parse_plan(STORED_PLAN)) == "8077429efe0c8b07dbb8676dd5e6685900f29aaa489b0b7d9645c0186fceb9cf"
    measured = STORED_PLAN.replace(WEIGHTS[0], 'weight = 0.6\ncutout_factor = { value = 0.93, note = "diode" }')
    assert plan_digest(parse_plan(measured)) != plan_digest(parse_plan(STORED_PLAN))
