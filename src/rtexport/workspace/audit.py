"""The append-only audit log: who (rtexport user and operating-system user), what, which plan, outcome, detail."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from typing import Any

from rtexport.workspace.db import Database


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


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        at: str,
        actor: Actor,
        action: str,
        outcome: str,
        plan_id: str | None = None,
        revision: int | None = None,
        **detail: Any,
    ) -> int:
        """Append one record; returns its id."""
        cur = self._db.execute(
            "INSERT INTO audit (at, actor, os_user, via, action, plan_id, revision, outcome, detail) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (
                at,
                actor.name,
                actor.os_user,
                actor.via,
                action,
                plan_id,
                revision,
                outcome,
                json.dumps(detail, sort_keys=True, default=str),
            ),
        )
        return int(cur.lastrowid or 0)

    def entries(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM audit" + (" WHERE plan_id = ?" if plan_id else "") + " ORDER BY id"
        rows = self._db.all(q, (plan_id,) if plan_id else ())
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
