"""The site configuration as the front ends show it: its problems, and whether export is available."""

from __future__ import annotations

from dataclasses import dataclass

from rtexport.errors import ConfigError
from rtexport.export.gate import site_findings
from rtexport.model.site import Site
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class SiteStatus:
    """``site`` is None when site.toml cannot be used at all; ``unavailable`` says why export is off (the
    Export block is disabled while it is not empty)."""

    site: Site | None
    problems: tuple[str, ...]
    unavailable: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unavailable

    def summary(self) -> str:
        if self.site is None:
            return f"{len(self.problems)} problem(s) in the site configuration"
        s = self.site
        counts = (
            f"{len(s.machines)} machine(s), {len(s.ct_curves)} CT curve(s), {len(s.materials)} material(s), "
            f"{len(s.dicom.servers)} DICOM server(s)"
        )
        if self.unavailable:
            return f"site configuration readable ({counts}) but export is unavailable"
        return f"site configuration OK: {counts}"


def site_status(ws: Workspace) -> SiteStatus:
    try:
        problems = ws.site_problems()
    except ConfigError as e:
        return SiteStatus(None, (str(e),), (str(e),))
    site = None if problems else ws.site()
    return SiteStatus(site, tuple(problems), tuple(site_findings(site, problems)))


def availability(ws: Workspace) -> list[str]:
    """Why export is unavailable for this site (empty when it is available)."""
    return list(site_status(ws).unavailable)
