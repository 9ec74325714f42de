"""Beam setups as the plan view shows them, kept by what they were computed from (plan, course, site): setting
the beams up takes seconds, and a view is read far more often than a plan changes. A cache: a missing or
unreadable entry is computed again."""

from __future__ import annotations

import json
from typing import Any

from rtexport.workspace.db import Database


class SetupCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.one("SELECT data FROM setups WHERE key = ?", (key,))
        if row is None:
            return None
        try:
            found = json.loads(row["data"])
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def put(self, key: str, data: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO setups VALUES (?,?)", (key, json.dumps(data)))
