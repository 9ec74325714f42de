"""Opening and creating a workspace: the one handle every other service takes (front ends hold it, they do not
read through it)."""

from __future__ import annotations

import os
from pathlib import Path

from rtexport.workspace import Workspace

__all__ = ["Workspace", "create_workspace", "home_of", "open_workspace"]


def home_of(home: Path | None) -> Path:
    """The workspace folder: ``home``, else ``RTEXPORT_HOME``, else ``./rtexport-home``."""
    return home if home is not None else Path(os.environ.get("RTEXPORT_HOME", "rtexport-home"))


def open_workspace(home: Path | None = None) -> Workspace:
    """The workspace at ``home`` (:func:`home_of`); :class:`~rtexport.errors.ConfigError` when there is none."""
    return Workspace.open(home_of(home))


def create_workspace(home: Path | None = None) -> Workspace:
    """A new, empty workspace (an existing one is refused)."""
    return Workspace.init(home_of(home))
