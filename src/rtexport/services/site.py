"""The site configuration as a use case needs it: read and validated once, its problems, and whether export is
available. Each use case reads ``site.toml`` once (:func:`site_status`) and passes what it found down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtexport.errors import ConfigError
from rtexport.export.gate import site_findings
from rtexport.model.site import Site, read_site_toml, site_problems
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class SiteStatus:
    """``site`` is None when site.toml cannot be used at all; ``unavailable`` says why export is off (the
    Export block is disabled while it is not empty)."""

    site: Site | None
    problems: tuple[str, ...]
    unavailable: tuple[str, ...]
    path: Path = Path("site.toml")

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unavailable

    def require(self) -> Site:
        """The site, or :class:`ConfigError` listing every problem."""
        if self.site is None:
            raise ConfigError(f"{self.path}: invalid site configuration (run 'rtexport site check')", self.problems)
        return self.site

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
    """Read and validate ``site.toml`` (once)."""
    try:
        data = read_site_toml(ws.site_path)
    except ConfigError as e:
        return SiteStatus(None, (str(e),), (str(e),), ws.site_path)
    found, problems = site_problems(data)
    site = None if problems else found
    return SiteStatus(site, tuple(problems), tuple(site_findings(site, problems)), ws.site_path)


def load_site(ws: Workspace) -> Site:
    """The validated site, or :class:`ConfigError` listing every problem."""
    return site_status(ws).require()


def availability(ws: Workspace) -> list[str]:
    """Why export is unavailable for this site (empty when it is available)."""
    return list(site_status(ws).unavailable)
