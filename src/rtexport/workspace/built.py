"""Objects built for export, kept under their UID key: built once, then the same bytes on every export, so one
UID never stands for two contents, even across software versions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rtexport.workspace.db import Database
from rtexport.workspace.seals import Seals
from rtexport.workspace.store import BlobStore


@dataclass(frozen=True)
class BuiltRTPlan:
    """An RT Plan built for export: the revision of its plan, its key and its stored digest."""

    revision: int
    key: str
    sha256: str


def built_object(key: str) -> tuple[str, str, str]:
    """The plan id, revision and kind ("RT Dose of beam A") of the object built under ``key``: plan id, revision,
    token, approval status[, dose time], kind[, beam] (export.build)."""
    parts = key.split("\x1f")
    if len(parts) >= 6 and parts[-2] == "RD":
        kind = f"RT Dose of beam {parts[-1]}" if parts[-1] else "RT Dose (plan)"
    else:
        kind = {"RS": "RT Structure Set", "RP": "RT Plan"}.get(parts[-1], parts[-1])
    return parts[0], parts[1] if len(parts) > 1 else "?", kind


class BuiltObjects:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs
        self._seals = Seals(db)

    def blob_references(self) -> list[tuple[str, str]]:
        """(sha256, what references it) for every object built for export."""
        refs: list[tuple[str, str]] = []
        for row in self._db.all("SELECT key, sha256 FROM built ORDER BY key"):
            plan_id, revision, kind = built_object(str(row["key"]))
            status = str(row["key"]).split("\x1f")[3]
            refs.append((str(row["sha256"]), f"plan {plan_id} revision {revision} ({status}): {kind} built for export"))
        return refs

    def found(self, keys: Sequence[str]) -> dict[str, str]:
        """The digests kept under ``keys`` (one query) whose stored files are still there."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db.all(f"SELECT key, sha256 FROM built WHERE key IN ({marks})", list(keys))
        return {str(r["key"]): str(r["sha256"]) for r in rows if self._blobs.has(str(r["sha256"]))}

    def kept(self, keys: Sequence[str]) -> dict[str, str]:
        """The digests kept under ``keys``, whether or not their stored files are still there."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db.all(f"SELECT key, sha256 FROM built WHERE key IN ({marks})", list(keys))
        return {str(r["key"]): str(r["sha256"]) for r in rows}

    def keep(self, key: str, data: bytes, at: str) -> str:
        """Store an object built under ``key`` (replacing a row whose file went missing); its digest. Inside a
        transaction whose audit record seals the row."""
        digest, _ = self._blobs.put(data)
        self._db.execute("INSERT OR REPLACE INTO built VALUES (?,?,?)", (key, digest, at))
        self._seals.seal("built", key)
        return digest

    def rt_plans(self, plan_id: str) -> list[BuiltRTPlan]:
        """The RT Plans built for ``plan_id``, the most recently built first."""
        prefix = plan_id + "\x1f"
        rows = self._db.all(
            "SELECT key, sha256 FROM built WHERE substr(key, 1, length(?)) = ? ORDER BY created_at DESC, rowid DESC",
            (prefix, prefix),
        )
        out = []
        for row in rows:
            parts = str(row["key"]).split("\x1f")
            if parts[-1] == "RP" and parts[1].isdigit():
                out.append(BuiltRTPlan(int(parts[1]), str(row["key"]), str(row["sha256"])))
        return out

    def series_number(self, key: str, study_uid: str, first: int, avoid: Collection[int]) -> int:
        """The series number of the object built for ``key``: the one allocated to it before, or else the next
        above every number allocated in the study (at least ``first``) that is not in ``avoid``, allocated now for
        good (unique within the study)."""
        with self._db.transaction():
            row = self._db.one("SELECT number FROM built_series WHERE key = ?", (key,))
            if row is not None:
                return int(row["number"])
            top = self._db.one("SELECT MAX(number) AS n FROM built_series WHERE study_uid = ?", (study_uid,))
            number = max(first, int(top["n"]) + 1 if top is not None and top["n"] is not None else first)
            while number in avoid:
                number += 1
            self._db.execute("INSERT INTO built_series VALUES (?,?,?)", (key, study_uid, number))
            return number

    def without_series_number(self, plan_ids: Collection[str]) -> list[str]:
        """Digests of the objects built for these plans that have no allocated series number (built by an earlier
        version, or the imported structure set kept as it is): their series numbers are in their files."""
        rows = self._db.all(
            "SELECT b.key AS key, b.sha256 AS sha256 FROM built b LEFT JOIN built_series s ON s.key = b.key "
            "WHERE s.key IS NULL ORDER BY b.key"
        )
        return [str(r["sha256"]) for r in rows if str(r["key"]).split("\x1f")[0] in plan_ids]
