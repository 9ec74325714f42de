"""The export gate: pure checks that return every finding at once. Nothing is written when any blocks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum

from rtexport.model.course import Course
from rtexport.model.plan import Plan, plan_problems
from rtexport.model.site import Site


class Item(StrEnum):
    """What the user may pick to export (the Export block's DICOM Export Options)."""

    CT = "ct"
    RTSTRUCT = "rtstruct"
    RTPLAN = "rtplan"
    DOSE_PLAN = "dose-plan"
    DOSE_BEAM = "dose-beam"


ALL_ITEMS = tuple(Item)
DOSE_ITEMS = (Item.DOSE_PLAN, Item.DOSE_BEAM)


def parse_items(text: str) -> tuple[Item, ...]:
    """``"ct,rtplan"`` → items in canonical order; unknown names raise ValueError listing the valid ones."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    valid = {i.value: i for i in Item}
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"unknown item(s) {', '.join(bad)}; choose from {', '.join(valid)}")
    if not names:
        raise ValueError(f"no items given; choose from {', '.join(valid)}")
    return tuple(i for i in Item if i.value in names)


def site_findings(site: Site | None, site_problems: Sequence[str]) -> list[str]:
    """Why export is unavailable for the whole site (the Export block is disabled while any is present)."""
    findings = [f"site configuration: {p} (fix site.toml; see 'rtexport site check')" for p in site_problems]
    if site is not None:
        if not site.machines:
            findings.append("the site configuration has no treatment machine: add one under [[machines]] in site.toml")
        if not site.ct_curves:
            findings.append("the site configuration has no CT curve: add one under [[ct_curves]] in site.toml")
    return findings


def check_export(
    *,
    site: Site | None,
    site_problems: Sequence[str],
    course: Course,
    plan: Plan,
    revision: int,
    approved: bool,
    authorized_by: str | None,
    has_current_dose: bool,
    items: Collection[Item],
) -> list[str]:
    """Every reason the export of ``items`` is refused; an empty list means go."""
    findings = site_findings(site, site_problems)
    if not items:
        findings.append("nothing selected: choose at least one item to export")
    if site is not None:
        findings += [f"plan {plan.id}: {p}" for p in plan_problems(plan, site, course)]
    dose_items = [i.value for i in items if i in DOSE_ITEMS]
    if dose_items and not has_current_dose:
        findings.append(
            f"{', '.join(dose_items)} need current dose for revision {revision}: run 'rtexport dose {plan.id}'"
        )
    needs_mu = Item.RTPLAN in items and not has_current_dose and any(b.mu is None for b in plan.beams)
    if needs_mu:
        findings.append(
            f"rtplan needs MU: the plan computes MU from the prescription, so run 'rtexport dose {plan.id}' first"
        )
    if not approved and authorized_by is None:
        findings.append(
            f"plan {plan.id} revision {revision} is unapproved and its export is not authorized: "
            f"a physicist runs 'rtexport authorize {plan.id} --user NAME' (or approves the plan)"
        )
    return findings
