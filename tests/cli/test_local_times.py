"""Local times as a record-and-verify system shows them: a plan approved and exported by rtexport processes running
in a time zone (TZ, or the site's dicom.timezone) carries that zone's dates and times and offset; once approved, its
files stay the same bytes whatever zone exports them later."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pydicom
import pytest

from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import PHYS, edit_site_toml


def offset(text: str) -> str:
    """+HHMM from Python's +HH:MM."""
    return text.replace(":", "")


@pytest.mark.parametrize(
    ("tz", "site_zone", "zone"),
    [
        ("Asia/Tokyo", None, "Asia/Tokyo"),  # the machine's zone by default
        ("Europe/Zurich", None, "Europe/Zurich"),
        ("Asia/Tokyo", "America/New_York", "America/New_York"),  # the site's, whatever the machine's
    ],
)
def test_an_approved_plan_says_the_local_time_it_was_approved(
    planned: Workspace, tmp_path: Path, tz: str, site_zone: str | None, zone: str
) -> None:
    home = planned.home
    if site_zone is not None:
        edit_site_toml(home, lambda s: s["dicom"].update(timezone=site_zone))
    approve = ("approve", "CW-E1", "--user", PHYS[0], "--password-stdin", "--acknowledge-mu-check")
    r = run_rtexport(home, *approve, stdin=PHYS[1] + "\n", TZ=tz)
    assert r.returncode == 0, r.stdout + r.stderr
    items = ("--items", "rtstruct,rtplan,dose-plan")
    r = run_rtexport(home, "export", "CW-E1", "--to", str(tmp_path / "out"), *items, TZ=tz)
    assert r.returncode == 0, r.stdout + r.stderr
    approval = planned.plans.approval("CW-E1", planned.plan_state("CW-E1").revision.number)
    assert approval is not None
    local = approval.at.astimezone(ZoneInfo(zone))
    date, time = local.strftime("%Y%m%d"), local.strftime("%H%M%S")
    objects = {p.name[:2]: pydicom.dcmread(p) for p in (tmp_path / "out").glob("R*.dcm")}
    rs, rp, rd = objects["RS"], objects["RP"], objects["RD"]
    assert (rp.RTPlanDate, rp.RTPlanTime, rp.ReviewDate, rp.ReviewTime) == (date, time, date, time)
    assert (rs.StructureSetDate, rs.StructureSetTime, rd.ContentDate, rd.ContentTime) == (date, time, date, time)
    for ds in (rs, rp, rd):
        assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == (date, time)
        assert ds.TimezoneOffsetFromUTC == offset(local.strftime("%z"))
    r = run_rtexport(home, "export", "CW-E1", "--to", str(tmp_path / "again"), *items, TZ="America/Los_Angeles")
    assert r.returncode == 0, r.stdout + r.stderr
    again = {p.name: p.read_bytes() for p in (tmp_path / "again").glob("R*.dcm")}
    assert again == {p.name: p.read_bytes() for p in (tmp_path / "out").glob("R*.dcm")}
