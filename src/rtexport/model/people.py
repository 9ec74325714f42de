"""Who acts: users and their roles, and the actor every service records (rtexport user, operating-system account,
front end)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A user's role; a physicist is a qualified user (may approve, authorize export and manage users)."""

    PLANNER = "planner"
    PHYSICIST = "physicist"


@dataclass(frozen=True)
class User:
    name: str  # the login
    role: Role
    full_name: str = ""  # DICOM Person Name, Family^Given; '' for users made before full names were kept

    @property
    def qualified(self) -> bool:
        return self.role is Role.PHYSICIST

    @property
    def person_name(self) -> str:
        """The name to write where DICOM wants a person (ReviewerName, OperatorsName)."""
        return self.full_name or self.name


def os_user() -> str:
    """The operating-system account running this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Actor:
    """Who does something: the rtexport user when one proved who they are (else None), the operating-system
    account, and the front end (``cli``, ``web``, ``demo``, ``api``)."""

    user: str | None
    os_user: str
    via: str

    @classmethod
    def here(cls, via: str, user: str | None = None) -> Actor:
        return cls(user, os_user(), via)

    def as_user(self, user: str) -> Actor:
        """The same process acting as (or on behalf of) the rtexport user ``user``."""
        return Actor(user, self.os_user, self.via)

    @property
    def name(self) -> str:
        """The name recorded as the actor: the rtexport user, or the OS account in brackets."""
        return self.user if self.user is not None else f"({self.os_user})"
