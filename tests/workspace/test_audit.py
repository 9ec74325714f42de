"""The audit log is tamper-evident: each record's hash covers its content and the previous record's hash, and
`verify` proves the chain or names the first broken record. The tampering is done as an intruder would: plain
sqlite3 on the database file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.model.people import Actor
from rtexport.workspace import Workspace
from tests.conftest import Clock

WHO = Actor("phil", "phil-os", "test")


@pytest.fixture
def logged(tmp_path: Path, clock: Clock) -> Path:
    """A workspace whose audit log holds six records; closed, so the test can tamper with its file."""
    home = tmp_path / "home"
    ws = Workspace.init(home, demo_site(), clock=clock)
    for k in range(6):
        ws.audit(WHO, "plan-load", "ok", "P1", k + 1, source=f"plan-{k}.toml")
    ws.close()
    return home


@contextmanager
def sql(home: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(home / "rtexport.db", isolation_level=None)) as db:
        yield db


def check(home: Path) -> tuple[bool, int | None, list[str]]:
    ws = Workspace.open(home)
    try:
        result = ws.audit_log.verify()
    finally:
        ws.close()
    return result.ok, result.first_broken, result.problems


def test_an_untouched_log_verifies_and_names_its_head(logged: Path) -> None:
    ws = Workspace.open(logged)
    result = ws.audit_log.verify()
    last = ws.audit_log.entries()[-1]
    ws.close()
    assert result.ok and result.records == 6 and result.first_broken is None and result.problems == []
    assert (result.last_id, result.head) == (6, last["hash"])


def test_the_triggers_forbid_plain_edits(logged: Path) -> None:
    with sql(logged) as db, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET outcome = 'refused' WHERE id = 3")


def test_an_edit_after_dropping_the_trigger_names_the_record(logged: Path) -> None:
    with sql(logged) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 3")
    ok, first, problems = check(logged)
    assert not ok and first == 3
    assert "record 3 was changed after it was written" in problems[0]
    assert any("trigger audit_no_update" in p for p in problems)


def test_an_edit_of_the_detail_is_found_too(logged: Path) -> None:
    with sql(logged) as db:
        db.execute("DROP TRIGGER audit_no_update")
        detail = json.dumps({"source": "forged.toml"})
        db.execute("UPDATE audit SET detail = ? WHERE id = 5", (detail,))
        db.execute(
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
    ok, first, problems = check(logged)
    assert not ok and first == 5 and problems == ["record 5 was changed after it was written"]


def test_a_deleted_record_names_the_one_after_the_gap(logged: Path) -> None:
    with sql(logged) as db:
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute("DELETE FROM audit WHERE id = 4")
    ok, first, problems = check(logged)
    assert not ok and first == 5
    assert problems[0] == "record 5 follows record 3: record 4 was deleted"


def test_deleted_last_records_are_found_before_and_after_the_log_goes_on(logged: Path, clock: Clock) -> None:
    with sql(logged) as db:
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute("DELETE FROM audit WHERE id >= 5")
        db.execute(
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
    ok, first, problems = check(logged)
    assert not ok and first == 5 and problems == ["record(s) after record 4 were deleted: the log had 6"]
    ws = Workspace.open(logged, clock=clock)
    ws.audit(WHO, "login", "ok")  # the next record is chained to record 4 ...
    result = ws.audit_log.verify()
    ws.close()
    assert result.first_broken == 7 and result.problems == ["record 7 follows record 4: records 5-6 were deleted"]


def test_a_record_inserted_without_rtexport_is_found(logged: Path) -> None:
    with sql(logged) as db:
        db.execute(
            "INSERT INTO audit (at, actor, os_user, via, action, outcome, detail) "
            "VALUES ('2026-03-01T09:00:30+00:00', 'phil', 'phil-os', 'cli', 'approve', 'ok', '{}')"
        )
    ok, first, problems = check(logged)
    assert not ok and first == 7 and "record 7 has no hash" in problems[0]


def test_records_written_after_tampering_do_not_hide_it(logged: Path, clock: Clock) -> None:
    with sql(logged) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET outcome = 'refused' WHERE id = 2")
    ws = Workspace.open(logged, clock=clock)  # the triggers come back on open
    ws.audit(WHO, "login", "ok")
    result = ws.audit_log.verify()
    ws.close()
    assert not result.ok and result.first_broken == 2 and result.records == 8
    assert result.problems[0] == "record 2 was changed after it was written"
    assert result.problems[1].startswith("record 7: the log's protection against changes (trigger audit_no_update)")


def test_an_existing_log_is_chained_from_where_it_is(tmp_path: Path, clock: Clock) -> None:
    """A workspace made before the chain existed: its records are hashed as found when it is first opened, and
    the chain protects them from then on."""
    home = tmp_path / "old"
    Workspace.init(home, demo_site(), clock=clock).close()
    with sql(home) as db:  # the audit table as the previous version made it
        db.execute("DROP TABLE audit")
        db.execute(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, "
            "action TEXT NOT NULL, plan_id TEXT, revision INTEGER, outcome TEXT NOT NULL, detail TEXT NOT NULL, "
            "os_user TEXT NOT NULL DEFAULT '', via TEXT NOT NULL DEFAULT '')"
        )
        for k in range(3):
            db.execute(
                "INSERT INTO audit (at, actor, action, outcome, detail) VALUES (?, 'pat', 'import', 'ok', '{}')",
                (f"2025-01-0{k + 1}T10:00:00+00:00",),
            )
        for trigger, event in (("audit_no_update", "UPDATE"), ("audit_no_delete", "DELETE")):
            db.execute(
                f"CREATE TRIGGER {trigger} BEFORE {event} ON audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )
    ws = Workspace.open(home, clock=clock)
    entries = ws.audit_log.entries()
    assert [e["action"] for e in entries] == ["import"] * 3 + ["audit-chain"]
    assert entries[-1]["detail"] == {"records_before": 3}
    assert ws.audit_log.verify().ok
    ws.close()
    with sql(home) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2")
    assert check(home)[:2] == (False, 2)
