"""The documentation site says what is true: its examples are a valid site and a valid plan file, every key of
site.toml and of a plan file is documented (and nothing that is not a key), and the site builds with
``mkdocs build --strict`` into pages that load nothing from outside."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from rtexport.model.plan import Plan, parse_plan
from rtexport.model.site import Site, site_problems
from tests.docs import DOCS, anchors, code_blocks, documented_keys, page, relative_links, section

ROOT = DOCS.parent


def test_site_example_is_a_valid_site() -> None:
    site_text = next(b for b in code_blocks(page("site.md"), "toml") if "[[machines]]" in b)
    _, problems = site_problems(tomllib.loads(site_text))
    assert problems == []


def test_plan_example_is_a_valid_plan_file() -> None:
    plan_text = next(b for b in code_blocks(page("plan-files.md"), "toml") if "format = 1" in b)
    plan = parse_plan(plan_text)
    assert plan.beams[0].bolus is not None and plan.overrides[0].material == "Water"


def test_every_toml_snippet_is_toml() -> None:
    snippets = [b for p in sorted(DOCS.glob("*.md")) for b in code_blocks(p.read_text(encoding="utf-8"), "toml")]
    assert len(snippets) >= 5
    for snippet in snippets:
        tomllib.loads(snippet)


def test_the_measured_cutout_factor_snippet_fits_a_plan() -> None:
    plan_text = next(b for b in code_blocks(page("plan-files.md"), "toml") if "format = 1" in b)
    snippet = next(b for b in code_blocks(page("plan-files.md"), "toml") if "cutout_factor" in b)
    beam = re.sub(r"(?m)^cutout_mm = .*$", snippet.strip(), plan_text)
    assert parse_plan(beam).beams[0].cutout_factor is not None


def _submodel(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (through ``X | None``, ``list[X]`` and ``Annotated``), and whether in a list."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _submodel(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _submodel(inner[0]) if len(inner) == 1 else (None, False)
    if origin is list:
        model, _ = _submodel(args[0])
        return model, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key a TOML file for ``model`` may hold, as ``machines[].applicators[].jaws_mm.x``."""
    found = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        found.add(key)
        inner, in_list = _submodel(field.annotation)
        if inner is not None:
            found |= keys(inner, key + ("[]." if in_list else "."))
    return found


def test_every_site_key_is_documented_and_nothing_else() -> None:
    documented = documented_keys(section(page("site.md"), "Keys"))
    assert keys(Site) - documented == set(), "keys of site.toml missing from docs/site.md"
    assert documented - keys(Site) == set(), "docs/site.md documents keys site.toml does not have"


def test_every_plan_key_is_documented_and_nothing_else() -> None:
    documented = documented_keys(section(page("plan-files.md"), "Keys"))
    assert keys(Plan) - documented == set(), "keys of a plan file missing from docs/plan-files.md"
    assert documented - keys(Plan) == set(), "docs/plan-files.md documents keys a plan file does not have"


def test_every_link_between_pages_leads_to_a_heading() -> None:
    pages = sorted(DOCS.glob("*.md"))
    checked = 0
    for p in pages:
        for target, anchor in relative_links(p.read_text(encoding="utf-8")):
            if not target.endswith(".md"):
                assert (DOCS / target).is_file(), f"{p.name} links to {target}"
                continue
            linked = DOCS / target
            assert linked.is_file(), f"{p.name} links to {target}, which does not exist"
            if anchor:
                assert anchor in anchors(linked.read_text(encoding="utf-8")), f"{p.name}: {target}#{anchor}"
                checked += 1
    assert checked >= 10


def test_the_site_builds_strictly_and_loads_nothing_from_outside(tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    built = {p.relative_to(site).parts[0] for p in site.glob("*/index.html")}
    assert {p.stem for p in DOCS.glob("*.md")} - {"index"} <= built
    tags = "link|script|img|iframe|source|audio|video|embed|object"
    outside = re.compile(rf"<(?:{tags})\b[^>]*?(?:src|href)=\"(?:https?:)?//")
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not outside.search(text), f"{html.relative_to(site)} loads {outside.search(text)}"
        assert ":mod:`" not in text and ":func:`" not in text and ":class:`" not in text, html
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8")
        assert not re.search(r"url\(\s*[\"']?(?:https?:)?//|@import", text), css.relative_to(site)
