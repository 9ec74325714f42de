"""The README is what a newcomer reads first: the two set-up commands at the top, not for clinical use said plainly,
short, and every link in it leads to a documentation page that exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs import anchors, relative_links

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_set_up_commands() -> None:
    first = blocks("sh")[0].strip().splitlines()
    assert first == ["pip install -e . && rtexport demo", ".ci/run"]
    assert README.index("```sh") < README.index("\n## ")


def test_readme_says_not_for_clinical_use_before_the_first_command() -> None:
    assert "**Not for clinical use.**" in README[: README.index("```sh")]


def test_readme_is_read_in_five_minutes() -> None:
    assert len(README.encode("utf-8")) <= 12_000


def test_every_relative_link_in_the_readme_leads_to_a_docs_page() -> None:
    links = relative_links(README)
    assert len(links) >= 10
    for target, anchor in links:
        page = ROOT / target
        assert target.startswith("docs/") and target.endswith(".md"), target
        assert page.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(page.read_text(encoding="utf-8")), f"{target} has no heading #{anchor}"
