"""Plan reports made: each PDF in the blob store, one row per report (plan, revision, when, by whom)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from rtexport.workspace.db import Database


@dataclass(frozen=True)
class StoredReport:
    id: int
    plan_id: str
    revision: int
    approved: bool  # the revision was approved when the report was made
    sha256: str  # of the PDF, in the blob store
    size: int
    made_at: datetime
    made_by: str


class ReportRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, plan_id: str, revision: int, approved: bool, sha256: str, size: int, made_at: str, made_by: str
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO reports (plan_id, revision, approved, sha256, size, made_at, made_by) VALUES (?,?,?,?,?,?,?)",
            (plan_id, revision, int(approved), sha256, size, made_at, made_by),
        )
        return int(cur.lastrowid or 0)

    def _row(self, row: sqlite3.Row) -> StoredReport:
        return StoredReport(
            row["id"],
            row["plan_id"],
            row["revision"],
            bool(row["approved"]),
            row["sha256"],
            row["size"],
            datetime.fromisoformat(row["made_at"]),
            row["made_by"],
        )

    def of_plan(self, plan_id: str) -> list[StoredReport]:
        """The plan's reports, newest first."""
        rows = self._db.all("SELECT * FROM reports WHERE plan_id = ? ORDER BY id DESC", (plan_id,))
        return [self._row(r) for r in rows]

    def get(self, report_id: int) -> StoredReport | None:
        row = self._db.one("SELECT * FROM reports WHERE id = ?", (report_id,))
        return None if row is None else self._row(row)
