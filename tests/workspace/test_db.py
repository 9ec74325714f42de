"""The workspace database: its file and the store are the owner's only; a busy database is waited for, boundedly,
and reported."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from rtexport.errors import BusyError
from rtexport.export.gate import Item
from rtexport.services.export import FolderDestination, export_plan
from rtexport.workspace import Workspace
from tests.conftest import ACTOR


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_the_store_are_readable_by_their_owner_only(course_ws: Workspace) -> None:
    home = course_ws.home
    course_ws.audit(ACTOR, "test", "ok")  # the write-ahead log exists now too
    assert mode(home / "rtexport.db") == 0o600
    assert mode(home / "rtexport.db-wal") == 0o600
    assert mode(home / "store") == 0o700
    s = course_ws.course("C1").slices[0]
    blob = course_ws.blobs.path(s.sha256)
    assert mode(blob.parent) == 0o700 and mode(blob) == 0o600


def test_an_export_meeting_a_busy_database_writes_nothing_and_says_so(planned: Workspace, tmp_path: Path) -> None:
    """Another command holds the database's write lock: the export's intent cannot be audited, so nothing is
    written (before, the files were written and the audit then crashed)."""
    planned.db.execute("PRAGMA busy_timeout = 200")  # wait 0.2 s here instead of 10 s
    with closing(sqlite3.connect(planned.home / "rtexport.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(BusyError, match=r"database .* is busy: another rtexport command held it .*try again"):
            export_plan(planned, "CW-E1", (Item.RTPLAN,), FolderDestination(tmp_path / "out"), ACTOR)
        other.execute("ROLLBACK")
    assert not (tmp_path / "out").exists()
    export_plan(planned, "CW-E1", (Item.RTPLAN,), FolderDestination(tmp_path / "out"), ACTOR)
    assert len(list((tmp_path / "out").glob("RP.*.dcm"))) == 1
