"""The workspace database: one SQLite file, its schema, and the one transaction every rule is checked in.

A rule that spans two tables (approval needs the dose of the same revision; an approved revision is read-only) is
checked and written inside one ``BEGIN IMMEDIATE`` transaction: a second process waits (bounded) for the writer's
lock, so it sees the state the first one left, never half of it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rtexport.errors import BusyError

BUSY_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS courses (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, imported_at TEXT NOT NULL, imported_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, course_id TEXT NOT NULL REFERENCES courses(id), created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
    plan_id TEXT NOT NULL REFERENCES plans(id), number INTEGER NOT NULL, digest TEXT NOT NULL,
    toml TEXT NOT NULL, token TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    PRIMARY KEY (plan_id, number));
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
    plan_id TEXT NOT NULL, revision INTEGER NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (plan_id, revision));
CREATE TABLE IF NOT EXISTS authorizations (
    plan_id TEXT NOT NULL, revision INTEGER NOT NULL, user TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (plan_id, revision));
CREATE TABLE IF NOT EXISTS doses (
    plan_id TEXT NOT NULL, revision INTEGER NOT NULL, data TEXT NOT NULL, computed_at TEXT NOT NULL,
    PRIMARY KEY (plan_id, revision));
CREATE TABLE IF NOT EXISTS built (
    key TEXT PRIMARY KEY, sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS built_series (
    key TEXT PRIMARY KEY, study_uid TEXT NOT NULL, number INTEGER NOT NULL, UNIQUE (study_uid, number));
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, plan_id TEXT NOT NULL REFERENCES plans(id), revision INTEGER NOT NULL,
    approved INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, made_at TEXT NOT NULL,
    made_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incoming (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, patient_id TEXT NOT NULL, patient_name TEXT NOT NULL,
    study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, frame_uid TEXT NOT NULL, modality TEXT NOT NULL,
    refs TEXT NOT NULL, calling_ae TEXT NOT NULL, peer TEXT NOT NULL, received_at TEXT NOT NULL,
    state TEXT NOT NULL, course_id TEXT);
CREATE INDEX IF NOT EXISTS incoming_uid ON incoming (sop_instance_uid);
CREATE TABLE IF NOT EXISTS throttle (
    key TEXT PRIMARY KEY, failures TEXT NOT NULL, locked_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seal_index (
    row TEXT PRIMARY KEY, audit_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS setups (
    key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    plan_id TEXT, revision INTEGER, outcome TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# Columns added after the first release: (table, column, definition). Added in place on open.
_ADDED_COLUMNS = (
    ("users", "full_name", "TEXT NOT NULL DEFAULT ''"),
    ("audit", "os_user", "TEXT NOT NULL DEFAULT ''"),
    ("audit", "via", "TEXT NOT NULL DEFAULT ''"),
)


class Database:
    """The workspace's SQLite connection. ``transaction()`` nests: only the outermost one begins and commits."""

    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        new = not path.exists()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
        if new:
            os.chmod(path, 0o600)  # patient data and password hashes: the owner's only
        self._conn.row_factory = sqlite3.Row
        self._depth = 0
        # Seals of rows written in the current transaction, waiting for its audit record (see workspace.seals).
        self.pending_seals: dict[str, dict[str, str] | None] = {}
        self.execute("PRAGMA foreign_keys = ON")
        self.execute("PRAGMA journal_mode = WAL")
        # A workspace whose audit table lost its protection: the triggers are put back below, and the audit log
        # records that they had been removed (evidence that someone edited the file).
        found = {r["name"] for r in self.all("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
        self.removed_triggers = sorted({"audit_no_update", "audit_no_delete"} - found) if "audit" in found else []
        self._conn.executescript(SCHEMA)  # idempotent: IF NOT EXISTS
        for table, column, definition in _ADDED_COLUMNS:
            have = {r["name"] for r in self.all(f"PRAGMA table_info({table})")}
            if column not in have:
                try:
                    self.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                except sqlite3.OperationalError as e:  # another process added it meanwhile
                    if "duplicate column" not in str(e):
                        raise

    def close(self) -> None:
        self._conn.close()

    def _busy(self, e: sqlite3.OperationalError) -> BusyError:
        return BusyError(
            f"the workspace database {self.path} is busy: another rtexport command held it for more than "
            f"{self.busy_timeout_s:g} s ({e}); nothing was changed, try again when it has finished"
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise self._busy(e) from e
            raise

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(self.execute(sql, params).fetchall())

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once, so what is read inside
        stays true until the commit). Nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            if self.pending_seals:  # a sealed row written without an audit record: rtexport's own mistake
                raise RuntimeError(f"rows written without an audit record to seal them: {sorted(self.pending_seals)}")
        except BaseException:
            self._depth = 0
            self.pending_seals.clear()
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.execute("COMMIT")
