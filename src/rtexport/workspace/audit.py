"""The append-only audit log: who (rtexport user and operating-system user), what, which plan, outcome, detail.

Tamper-evident: each record carries a SHA-256 over its own content and the previous record's hash (a hash chain),
written in the same transaction as the record, so :meth:`AuditLog.verify` finds a record changed, deleted or
inserted behind rtexport's back and names the first one. Triggers refuse UPDATE and DELETE; a workspace whose
triggers were dropped gets them back when opened, and the log records that they had been removed. A log made
before the chain existed is hashed as it is found the first time this version opens it (an ``audit-chain``
record says how many records came before): from then on, it is protected like a new one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rtexport.model.people import Actor
from rtexport.workspace.db import Database

_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
_CONTENT = ("id", "at", "actor", "os_user", "via", "action", "plan_id", "revision", "outcome", "detail")


def record_hash(previous: str, row: Mapping[str, Any] | sqlite3.Row) -> str:
    """The chain hash of one record: SHA-256 of the previous record's hash and this record's content (its id and
    every column as stored)."""
    content = json.dumps([row[k] for k in _CONTENT], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{previous}\n{content}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """What :meth:`AuditLog.verify` found: ``first_broken`` is the first record that is not as written (None when
    the chain holds); ``problems`` says what is wrong with each, and anything else found."""

    records: int
    last_id: int
    head: str  # the last record's hash: note it elsewhere to prove later that nothing before it changed
    first_broken: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(self, db: Database, now: Callable[[], str] | None = None) -> None:
        self._db = db
        if now is not None:
            self._chain_existing(now)

    def _chain_existing(self, now: Callable[[], str]) -> None:
        """Give a log made before the chain existed its hashes (once), and record triggers found removed."""
        have = {r["name"] for r in self._db.all("PRAGMA table_info(audit)")}
        if "hash" in have and not self._db.removed_triggers:
            return  # the usual case: no write transaction on open
        with self._db.transaction():
            have = {r["name"] for r in self._db.all("PRAGMA table_info(audit)")}
            if "hash" not in have:
                self._db.execute("ALTER TABLE audit ADD COLUMN prev_hash TEXT")
                self._db.execute("ALTER TABLE audit ADD COLUMN hash TEXT")
                rows = self._db.all("SELECT * FROM audit ORDER BY id")
                previous = ""
                self._db.execute("DROP TRIGGER IF EXISTS audit_no_update")
                for row in rows:
                    h = record_hash(previous, row)
                    self._db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (previous, h, row["id"]))
                    previous = h
                self._db.execute(_TRIGGERS)
                if rows:
                    self.record(now(), Actor.here("upgrade"), "audit-chain", "ok", records_before=len(rows))
            if self._db.removed_triggers:
                self.record(now(), Actor.here("open"), "audit-triggers", "restored", removed=self._db.removed_triggers)
                self._db.removed_triggers = []

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
        """Append one record, chained to the one before it (in one transaction with it); returns its id."""
        if self._db.pending_seals:  # the rows this transaction wrote: their seals go into this record
            detail = {**detail, "sealed_rows": dict(self._db.pending_seals)}
            self._db.pending_seals.clear()
        with self._db.transaction():
            last = self._db.one("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
            seq = self._db.one("SELECT seq FROM sqlite_sequence WHERE name = 'audit'")
            row: dict[str, Any] = {
                "id": max(0 if last is None else int(last["id"]), 0 if seq is None else int(seq["seq"])) + 1,
                "at": at,
                "actor": actor.name,
                "os_user": actor.os_user,
                "via": actor.via,
                "action": action,
                "plan_id": plan_id,
                "revision": revision,
                "outcome": outcome,
                "detail": json.dumps(detail, sort_keys=True, default=str),
            }
            previous = "" if last is None else str(last["hash"] or "")
            row["prev_hash"], row["hash"] = previous, record_hash(previous, row)
            columns = list(row)
            self._db.execute(
                f"INSERT INTO audit ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [row[c] for c in columns],
            )
            for key in detail.get("sealed_rows", {}):  # where a decision finds the row's latest seal at once
                self._db.execute("INSERT OR REPLACE INTO seal_index VALUES (?, ?)", (key, row["id"]))
        return int(row["id"])

    def entries(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM audit" + (" WHERE plan_id = ?" if plan_id else "") + " ORDER BY id"
        rows = self._db.all(q, (plan_id,) if plan_id else ())
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def verify(self) -> ChainCheck:
        """Prove the chain, or name the first record that is not as it was written (changed, inserted, or after a
        deleted one) and every other problem found."""
        broken: list[tuple[int, str]] = []
        notes: list[str] = []
        previous_hash, previous_id, count = "", 0, 0
        for row in self._db.all("SELECT * FROM audit ORDER BY id"):
            count += 1
            rid = int(row["id"])
            gap = f"record {rid - 1} was" if rid == previous_id + 2 else f"records {previous_id + 1}-{rid - 1} were"
            if row["hash"] is None:
                broken.append((rid, f"record {rid} has no hash: it was not written by rtexport"))
            elif rid != previous_id + 1:  # rtexport numbers records without gaps
                broken.append((rid, f"record {rid} follows record {previous_id}: {gap} deleted"))
            elif row["prev_hash"] != previous_hash:
                after = f"record {previous_id}" if previous_id else "the start of the log"
                broken.append(
                    (rid, f"record {rid} does not follow {after}: a record between them was deleted or changed")
                )
            elif record_hash(row["prev_hash"], row) != row["hash"]:
                broken.append((rid, f"record {rid} was changed after it was written"))
            if row["action"] == "audit-triggers" and row["outcome"] == "restored":
                removed = ", ".join(json.loads(row["detail"]).get("removed", []))
                notes.append(
                    f"record {rid}: the log's protection against changes (trigger {removed}) had been removed "
                    f"before {row['at']}, when rtexport put it back"
                )
            previous_hash, previous_id = str(row["hash"] or ""), rid
        seq = self._db.one("SELECT seq FROM sqlite_sequence WHERE name = 'audit'")
        if seq is not None and int(seq["seq"]) > previous_id:
            rid = previous_id + 1
            broken.append((rid, f"record(s) after record {previous_id} were deleted: the log had {seq['seq']}"))
        broken.sort()
        return ChainCheck(
            records=count,
            last_id=previous_id,
            head=previous_hash,
            first_broken=broken[0][0] if broken else None,
            problems=[text for _, text in broken] + notes,
        )
