"""Plans and their revisions (the plan file text as loaded), approvals and export authorizations."""

from __future__ import annotations

from datetime import datetime

from rtexport.errors import PlanError
from rtexport.model.state import Revision, Signature
from rtexport.workspace.db import Database
from rtexport.workspace.seals import Seals


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


class PlanRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._seals = Seals(db)

    def ids(self) -> list[str]:
        return [r["id"] for r in self._db.all("SELECT id FROM plans ORDER BY id")]

    def course_of(self, plan_id: str) -> str | None:
        row = self._db.one("SELECT course_id FROM plans WHERE id = ?", (plan_id,))
        return None if row is None else str(row["course_id"])

    def add(self, plan_id: str, course_id: str, created_at: str) -> None:
        self._db.execute("INSERT INTO plans VALUES (?,?,?)", (plan_id, course_id, created_at))
        self._seals.seal("plans", plan_id)

    def last_revision(self, plan_id: str) -> Revision:
        row = self._db.one("SELECT * FROM revisions WHERE plan_id = ? ORDER BY number DESC LIMIT 1", (plan_id,))
        if row is None:
            raise PlanError(f"no plan {plan_id!r} in this workspace (see 'rtexport plan list')")
        return Revision(
            row["plan_id"],
            row["number"],
            row["digest"],
            row["toml"],
            row["token"],
            _dt(row["created_at"]),
            row["created_by"],
        )

    def revision_count(self, plan_id: str) -> int:
        row = self._db.one("SELECT COUNT(*) AS n FROM revisions WHERE plan_id = ?", (plan_id,))
        return 0 if row is None else int(row["n"])

    def add_revision(self, plan_id: str, number: int, digest: str, toml: str, token: str, at: str, by: str) -> None:
        self._db.execute("INSERT INTO revisions VALUES (?,?,?,?,?,?,?)", (plan_id, number, digest, toml, token, at, by))
        self._seals.seal("revisions", plan_id, number)

    def _signature(self, table: str, who: str, plan_id: str, revision: int) -> Signature | None:
        row = self._db.one(
            f"SELECT s.{who} AS user, s.at AS at, COALESCE(u.full_name, '') AS full_name FROM {table} s "
            f"LEFT JOIN users u ON u.name = s.{who} WHERE s.plan_id = ? AND s.revision = ?",
            (plan_id, revision),
        )
        if row is None:
            return None
        return Signature(row["user"], _dt(row["at"]), row["full_name"] or row["user"])

    def approval(self, plan_id: str, revision: int) -> Signature | None:
        return self._signature("approvals", "reviewer", plan_id, revision)

    def authorization(self, plan_id: str, revision: int) -> Signature | None:
        return self._signature("authorizations", "user", plan_id, revision)

    def add_approval(self, plan_id: str, revision: int, reviewer: str, at: str) -> None:
        self._db.execute("INSERT INTO approvals VALUES (?,?,?,?)", (plan_id, revision, reviewer, at))
        self._seals.seal("approvals", plan_id, revision)

    def set_authorization(self, plan_id: str, revision: int, user: str, at: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO authorizations VALUES (?,?,?,?)", (plan_id, revision, user, at))
        self._seals.seal("authorizations", plan_id, revision)
