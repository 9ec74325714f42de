"""Storage: ``site.toml``, an SQLite database behind small repositories, and a content-addressed blob store."""

from rtexport.workspace.workspace import Workspace

__all__ = ["Workspace"]
