"""No write outside the export folder: a hostile UID smuggled into the workspace past the import is refused by the
export before any name is built, and nothing is written anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtexport.errors import RTExportError
from rtexport.export.gate import Item
from rtexport.services.export import FolderDestination, export_plan
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import ACTOR


def everything_under(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def test_a_hostile_uid_smuggled_into_the_workspace_is_refused_at_export(planned: Workspace, tmp_path: Path) -> None:
    row = planned.db.one("SELECT data FROM courses WHERE id = 'C1'")
    assert row is not None
    data = json.loads(row["data"])
    good = data["slices"][3]["sop_instance_uid"]
    data["slices"][3]["sop_instance_uid"] = f"{good}/../../../outside/pwned"
    # As a workspace of a version that checked no UIDs at import holds it: sealed as found when this version opened
    # it (the seal then says the row is as stored; the name check is what refuses it).
    with planned.transaction():
        planned.db.execute("UPDATE courses SET data = ? WHERE id = 'C1'", (json.dumps(data, sort_keys=True),))
        planned.seals.seal("courses", "C1")
        planned.audit(ACTOR, "row-seals", "sealed as found", count=1)
    exports = tmp_path / "exports"
    (exports / "out" / f"CT.{good}").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    before = everything_under(exports), everything_under(tmp_path / "outside")
    with pytest.raises(RTExportError, match=r"not a valid DICOM UID"):
        export_plan(planned, "CW-E1", tuple(Item), FolderDestination(exports / "out"), ACTOR)
    assert (everything_under(exports), everything_under(tmp_path / "outside")) == before


def test_export_to_a_folder_whose_parent_is_missing_creates_nothing(planned: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x"
    r = run_rtexport(planned.home, "export", "CW-E1", "--to", str(target))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"its parent folder {target.parent} does not exist" in r.stderr + r.stdout
    assert not (tmp_path / "nonexistent").exists()
    r = run_rtexport(planned.home, "export", "CW-E1", "--to", str(tmp_path / "x"))  # the last folder is made
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "x").glob("CT.*.dcm"))) == len(planned.course("C1").slices)
