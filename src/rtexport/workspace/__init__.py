"""The workspace: site.toml, an SQLite database and a content-addressed store of imported files."""

from rtexport.workspace.workspace import PlanState, Workspace

__all__ = ["PlanState", "Workspace"]
