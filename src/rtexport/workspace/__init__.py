"""Storage: ``site.toml``, an SQLite database behind small repositories, and a content-addressed blob store."""

from rtexport.workspace.audit import Actor
from rtexport.workspace.plans import PlanState
from rtexport.workspace.users import Role, User
from rtexport.workspace.workspace import Workspace

__all__ = ["Actor", "PlanState", "Role", "User", "Workspace"]
