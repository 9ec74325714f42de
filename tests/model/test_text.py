"""Text lengths as PS3.5 counts them (characters for SH, LO, ST, LT and PN; bytes for AE, CS, UI…), checked in one
place, and names rtexport builds kept within them."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rtexport.demo.plan import DEMO_PLAN
from rtexport.model.plan import parse_plan
from rtexport.model.text import MAX_CHARACTERS, check_person_name, check_text, fit, length

# The longest each script allows in a 16-character SH: Latin-1, Greek, CJK, and characters outside the BMP.
SCRIPTS = {
    "latin-1": "Äöüßéèàçñøåæ",
    "greek": "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠ",
    "cjk": "乳房左胸壁電子線照射計画",
    "astral": "𠀀𠀁𠀂😀",
}


def longest(script: str, n: int) -> str:
    letters = SCRIPTS[script]
    return (letters * (n // len(letters) + 1))[:n]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("vr", "n"), [("SH", 16), ("LO", 64), ("ST", 1024)])
def test_lengths_count_characters_in_every_script(script: str, vr: str, n: int) -> None:
    assert check_text(longest(script, n), vr) is None
    assert check_text(longest(script, n + 1), vr) == f"is {n + 1} characters; DICOM {vr} allows at most {n}"


def test_a_nine_letter_greek_label_is_a_label() -> None:
    plan = parse_plan(DEMO_PLAN.replace('label = "Chestwall e-"', 'label = "Θώρακας Α"'))
    assert plan.label == "Θώρακας Α"


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_longest_label_and_beam_name_of_every_script_load(script: str) -> None:
    label, beam = longest(script, 16), longest(script, 16)[::-1]
    plan = parse_plan(DEMO_PLAN.replace('"Chestwall e-"', f'"{label}"').replace('name = "ANT"', f'name = "{beam}"'))
    assert (plan.label, plan.beams[0].name) == (label, beam)


def test_person_names_count_characters_per_component_group() -> None:
    assert check_person_name("山田" * 30 + "^太郎一") is None
    assert check_person_name("山田" * 30 + "^太郎一=" + "ヤマダ" * 20 + "^タロウ") is None
    assert (
        check_person_name("山田" * 31 + "^太郎") == "is 65 characters; DICOM PN allows at most 64 per component group"
    )


@pytest.mark.parametrize(("vr", "value"), [("AE", "RTEXPORT_Ä"), ("CS", "Ä")])
def test_vrs_counted_in_bytes_are_ascii(vr: str, value: str) -> None:
    assert check_text(value, vr) == "must be plain ASCII"


def test_bytes_where_ps35_says_bytes() -> None:
    assert check_text("A" * 16, "AE") is None
    assert check_text("A" * 17, "AE") == "is 17 bytes; DICOM AE allows at most 16"


def test_a_name_that_fits_is_kept_whole() -> None:
    assert fit("LO", "Chestwall", " beam AP") == "Chestwall beam AP"


def test_a_name_too_long_gives_way_where_it_identifies_least() -> None:
    label, beam = longest("greek", 16), longest("cjk", 16)
    name = fit("LO", label, f" beam {beam}")
    assert name.endswith(f" beam {beam}") and name.startswith(label[:5])
    assert len(name) <= 64 and len(name.encode("utf-8")) <= 64
    astral = fit("LO", label, f" beam {longest('astral', 16)}")  # 70 bytes without the label
    assert astral.startswith("beam 𠀀") and len(astral.encode("utf-8")) <= 64


text = st.text(st.characters(codec="utf-8"), max_size=80)


@given(variable=text, fixed=text, vr=st.sampled_from(sorted(MAX_CHARACTERS.keys() - {"PN"})))
@example(variable="\r\U00010000", fixed="\r\u0800\U00010000\U00010000", vr="SH")  # only spaces left of the label
def test_fit_always_fits_in_characters_and_bytes_and_is_deterministic(variable: str, fixed: str, vr: str) -> None:
    name = fit(vr, variable, fixed)
    limit = MAX_CHARACTERS[vr]
    assert length(name, vr) <= limit and len(name.encode("utf-8")) <= limit
    assert name == fit(vr, variable, fixed)
    if len((variable + fixed).encode("utf-8")) <= limit:
        assert name == (variable + fixed).strip()
    elif len(fixed.encode("utf-8")) <= limit - len(variable[:1].encode("utf-8")) and fixed.strip():
        assert name.endswith(fixed.strip())  # the identifying part stays whole (spaces around a value do not count)
