"""Failed passwords, per user name and per client, with the lockouts they started: kept in the database, so a
lockout holds across restarts and for the command line and the web page alike (the rule is the services')."""

from __future__ import annotations

import json

from rtexport.workspace.db import Database


class ThrottleRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str) -> tuple[list[float], float]:
        """The times of the failures counted for ``key`` and when its lockout ends (0: none)."""
        row = self._db.one("SELECT failures, locked_until FROM throttle WHERE key = ?", (key,))
        if row is None:
            return [], 0.0
        try:
            times = [float(t) for t in json.loads(row["failures"])]
        except (ValueError, TypeError):
            times = []
        return times, float(row["locked_until"])

    def put(self, key: str, failures: list[float], locked_until: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO throttle VALUES (?,?,?)", (key, json.dumps(failures), locked_until))

    def clear(self, key: str) -> None:
        self._db.execute("DELETE FROM throttle WHERE key = ?", (key,))

    def forget_before(self, cutoff: float) -> None:
        """Drop the records with no failure and no lockout after ``cutoff`` (names an attacker made up)."""
        self._db.execute("DELETE FROM throttle WHERE locked_until <= ? AND failures = '[]'", (cutoff,))
