"""The README's set-up commands and examples are what users copy: keep them true."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from rtexport.model.plan import parse_plan
from rtexport.model.site import site_problems

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_set_up_commands() -> None:
    first = blocks("sh")[0].strip().splitlines()
    assert first == ["pip install -e . && rtexport demo", ".ci/run"]
    assert README.index("```sh") < README.index("\n## ")


def test_site_example_is_a_valid_site() -> None:
    site_text = next(b for b in blocks("toml") if "[[machines]]" in b)
    _, problems = site_problems(tomllib.loads(site_text))
    assert problems == []


def test_plan_example_is_a_valid_plan_file() -> None:
    plan_text = next(b for b in blocks("toml") if "format = 1" in b)
    plan = parse_plan(plan_text)
    assert plan.beams[0].bolus is not None and plan.overrides[0].material == "Water"
