"""Objects built for export, kept under their UID key: built once, then the same bytes on every export, so one
UID never stands for two contents, even across software versions."""

from __future__ import annotations

from collections.abc import Sequence

from rtexport.workspace.db import Database
from rtexport.workspace.store import BlobStore


class BuiltObjects:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    def blob_references(self) -> list[tuple[str, str]]:
        """(sha256, what references it) for every object built for export."""
        refs: list[tuple[str, str]] = []
        for row in self._db.all("SELECT key, sha256 FROM built ORDER BY key"):
            # key: plan id, revision, token, approval status[, dose time], kind[, beam] (export.build)
            parts = str(row["key"]).split("\x1f")
            if len(parts) >= 6 and parts[-2] == "RD":
                kind = f"RT Dose of beam {parts[-1]}" if parts[-1] else "RT Dose (plan)"
            else:
                kind = {"RS": "RT Structure Set", "RP": "RT Plan"}.get(parts[-1], parts[-1])
            refs.append(
                (str(row["sha256"]), f"plan {parts[0]} revision {parts[1]} ({parts[3]}): {kind} built for export")
            )
        return refs

    def found(self, keys: Sequence[str]) -> dict[str, str]:
        """The digests kept under ``keys`` (one query) whose stored files are still there."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db.all(f"SELECT key, sha256 FROM built WHERE key IN ({marks})", list(keys))
        return {str(r["key"]): str(r["sha256"]) for r in rows if self._blobs.has(str(r["sha256"]))}

    def keep(self, key: str, data: bytes, at: str) -> str:
        """Store an object built under ``key`` (replacing a row whose file went missing); its digest."""
        digest, _ = self._blobs.put(data)
        self._db.execute("INSERT OR REPLACE INTO built VALUES (?,?,?)", (key, digest, at))
        return digest
