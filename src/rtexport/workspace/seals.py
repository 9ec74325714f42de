"""Row seals: the rows a decision rests on are hashed like the stored files are.

When rtexport writes a course, a plan, a plan revision, a dose record, a user (and role), an approval, an
authorization or an object built for export, it hashes
each column of the row as written and puts those hashes (a *seal*) into the audit record of the same transaction,
where the audit chain protects them. A row changed, inserted or deleted behind rtexport's back then no longer
matches its latest seal, and :meth:`Seals.check` names the table, the row and the columns that changed.

Rows found in a workspace made before seals existed are sealed as found, once, when this version first opens it
(a ``row-seals`` audit record says how many).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from rtexport.model.people import Actor
from rtexport.workspace.audit import record_hash
from rtexport.workspace.db import Database

# PRAGMA user_version once the rows found are sealed and the seal index is built (3: courses, plans and built
# objects sealed too)
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Sealed:
    """A sealed table: its key columns, the columns the seal covers, and the columns whose value the seal keeps in
    clear (short, not secret) so a change can be told as "was X, is Y"."""

    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    clear: tuple[str, ...] = ()
    what: str = "row"

    def describe(self, key: tuple[Any, ...]) -> str:
        if self.table == "built":
            from rtexport.workspace.built import built_object  # built.py seals its rows: imported when told

            plan_id, revision, what = built_object(str(key[0]))
            return f"the {what} built for export for plan {plan_id} revision {revision} (table built)"
        if len(self.key) == 1:
            return f"{self.what} {key[0]} (table {self.table})"
        return f"{self.what} of plan {key[0]} revision {key[1]} (table {self.table})"


TABLES = {
    t.table: t
    for t in (
        Sealed("courses", ("id",), ("id", "data", "imported_at", "imported_by"), what="course"),
        Sealed("plans", ("id",), ("id", "course_id", "created_at"), clear=("course_id",), what="plan"),
        Sealed(
            "revisions",
            ("plan_id", "number"),
            ("plan_id", "number", "digest", "toml", "token", "created_at", "created_by"),
            what="the plan file",
        ),
        Sealed("doses", ("plan_id", "revision"), ("plan_id", "revision", "data", "computed_at"), what="the dose"),
        Sealed(
            "users",
            ("name",),
            ("name", "role", "password_hash", "full_name", "created_at"),
            clear=("role", "full_name"),
            what="user",
        ),
        Sealed(
            "approvals", ("plan_id", "revision"), ("plan_id", "revision", "reviewer", "at"), ("reviewer",), "approval"
        ),
        Sealed(
            "authorizations",
            ("plan_id", "revision"),
            ("plan_id", "revision", "user", "at"),
            ("user",),
            "export authorization",
        ),
        Sealed("built", ("key",), ("key", "sha256", "created_at"), clear=("sha256",)),
    )
}


def row_key(table: str, key: tuple[Any, ...]) -> str:
    """``revisions:P1:2``: each part percent-encoded, so a built object's key (times, separators) stays one part;
    plan ids, course ids and user names are unchanged by it (their grammar allows no such character)."""
    return ":".join([table, *(quote(str(k), safe="") for k in key)])


def _split(row: str) -> tuple[Sealed, tuple[Any, ...]]:
    table, *parts = row.split(":")
    spec = TABLES[table]
    key = tuple(int(p) if c in ("number", "revision") else unquote(p) for c, p in zip(spec.key, parts, strict=True))
    return spec, key


def _column_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def seal_of(spec: Sealed, row: Any) -> dict[str, str]:
    """The seal of one row as stored: each column's hash, and the clear columns' values as ``=column``."""
    seal = {c: _column_hash(row[c]) for c in spec.columns}
    seal.update({f"={c}": str(row[c]) for c in spec.clear})
    return seal


@dataclass(frozen=True)
class Finding:
    row: str
    text: str


class Seals:
    """Seal rows as they are written (into the next audit record of the transaction) and check them when read."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _read(self, spec: Sealed, key: tuple[Any, ...]) -> Any:
        where = " AND ".join(f"{k} = ?" for k in spec.key)
        return self._db.one(f"SELECT {', '.join(spec.columns)} FROM {spec.table} WHERE {where}", key)

    def seal(self, table: str, *key: Any) -> None:
        """Seal the row just written (or deleted) in the current transaction; the transaction's next audit record
        carries the seal."""
        spec = TABLES[table]
        if not self._db.in_transaction:
            raise RuntimeError(f"{table} rows are written inside a transaction (they are sealed with its audit)")
        row = self._read(spec, key)
        self._db.pending_seals[row_key(table, key)] = None if row is None else seal_of(spec, row)

    def latest(self, rows: Iterable[str] | None = None) -> dict[str, tuple[int, dict[str, str] | None]]:
        """The latest seal of each row (all rows when ``rows`` is None): row key → (audit record id, seal)."""
        wanted = None if rows is None else set(rows)
        found: dict[str, tuple[int, dict[str, str] | None]] = {}
        for rec in self._db.all(
            "SELECT id, detail FROM audit WHERE instr(detail, '\"sealed_rows\": {') > 0 ORDER BY id"
        ):
            sealed = json.loads(rec["detail"]).get("sealed_rows", {})
            for key, seal in sealed.items():
                if wanted is None or key in wanted:
                    found[key] = (int(rec["id"]), seal)
        return found

    def indexed(self, rows: list[str]) -> tuple[dict[str, tuple[int, dict[str, str] | None]], dict[str, str]]:
        """The latest seal of each row as the seal index finds it (without reading the whole log), and the rows
        whose indexed seal cannot be trusted (its audit record is not as written, or does not seal the row)."""
        marks = ",".join("?" * len(rows))
        index = self._db.all(f"SELECT row, audit_id FROM seal_index WHERE row IN ({marks})", rows)
        ids = sorted({int(r["audit_id"]) for r in index})
        records = {
            int(r["id"]): r for r in self._db.all(f"SELECT * FROM audit WHERE id IN ({','.join('?' * len(ids))})", ids)
        }
        found: dict[str, tuple[int, dict[str, str] | None]] = {}
        untrusted: dict[str, str] = {}
        for entry in index:
            row, aid = str(entry["row"]), int(entry["audit_id"])
            rec = records.get(aid)
            if rec is None or rec["hash"] is None or record_hash(str(rec["prev_hash"] or ""), rec) != rec["hash"]:
                untrusted[row] = f"the audit record {aid} that seals {row} is missing or was changed (audit --verify)"
                continue
            sealed = json.loads(rec["detail"]).get("sealed_rows", {})
            if row not in sealed:
                untrusted[row] = f"the seal index of {row} was changed: audit record {aid} does not seal it"
            else:
                found[row] = (aid, sealed[row])
        return found, untrusted

    def check(
        self, rows: Iterable[str], seals: dict[str, tuple[int, dict[str, str] | None]] | None = None
    ) -> list[str]:
        """What differs between these rows and their latest seals (empty: every row is as rtexport wrote it)."""
        rows = list(dict.fromkeys(rows))
        untrusted: dict[str, str] = {}
        if seals is None:
            seals, untrusted = self.indexed(rows)
        found = [untrusted[row] for row in rows if row in untrusted]
        return found + [
            f.text for row in rows if row not in untrusted and (f := self._compare(row, seals.get(row))) is not None
        ]

    def _compare(self, row: str, sealed: tuple[int, dict[str, str] | None] | None) -> Finding | None:
        spec, key = _split(row)
        current = self._read(spec, key)
        what = spec.describe(key)
        record, seal = (0, None) if sealed is None else sealed
        if seal is None:
            if current is None:
                return None
            return Finding(row, f"{what} was not written by rtexport: it has no seal in the audit log")
        if current is None:
            return Finding(row, f"{what} was deleted behind rtexport's back (sealed in audit record {record})")
        now = seal_of(spec, current)
        changed = [c for c in spec.columns if now[c] != seal.get(c)]
        if not changed:
            return None
        told = [
            f"{c} is {current[c]!r}, rtexport wrote {seal[f'={c}']!r}" if f"={c}" in seal else f"{c} changed"
            for c in changed
        ]
        return Finding(
            row, f"{what} was changed behind rtexport's back ({'; '.join(told)}; sealed in audit record {record})"
        )

    def all_rows(self) -> list[str]:
        """Every row of every sealed table."""
        keys: list[str] = []
        for spec in TABLES.values():
            for r in self._db.all(f"SELECT {', '.join(spec.key)} FROM {spec.table} ORDER BY {', '.join(spec.key)}"):
                keys.append(row_key(spec.table, tuple(r)))
        return keys

    def check_all(self) -> list[str]:
        """Every sealed table against every seal in the whole log: rows changed or inserted, sealed rows deleted,
        and a seal index that no longer points to each row's latest seal."""
        seals = self.latest()
        rows = dict.fromkeys([*self.all_rows(), *(k for k, (_, s) in seals.items() if s is not None)])
        index = {str(r["row"]): int(r["audit_id"]) for r in self._db.all("SELECT row, audit_id FROM seal_index")}
        moved = [
            f"the seal index of {row} was changed: it points to audit record {index.get(row)}, the latest seal is "
            f"record {aid}"
            for row, (aid, _) in seals.items()
            if index.get(row) != aid
        ]
        return moved + self.check(rows, seals)

    def seal_found(self, record: Callable[..., int]) -> None:
        """Seal, once, the rows of a workspace made before seals existed (as found; audited)."""
        version = self._db.one("PRAGMA user_version")
        if version is not None and int(version[0]) >= SCHEMA_VERSION:
            return
        with self._db.transaction():
            seals = self.latest()
            for row, (aid, _) in seals.items():
                self._db.execute("INSERT OR REPLACE INTO seal_index VALUES (?, ?)", (row, aid))
            unsealed = [r for r in self.all_rows() if r not in seals]
            for r in unsealed:
                spec, key = _split(r)
                self.seal(spec.table, *key)
            if unsealed:
                record(Actor.here("upgrade"), "row-seals", "sealed as found", count=len(unsealed))
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
