"""DICOM dates and times are local: every one an object gets is in the site's time zone, at the offset its
TimezoneOffsetFromUTC states (DST included), as a record-and-verify system shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydicom.dataset import Dataset

from rtexport.dicom.common import BuildContext
from rtexport.dicom.rtplan import Approval
from rtexport.dicom.uids import UIDFactory
from rtexport.errors import BuildError
from rtexport.geometry.setup import AimedPlan
from rtexport.model.course import Course
from rtexport.model.plan import Plan
from rtexport.model.site import Site

from .conftest import export_all, make_context

BUILT = datetime(2026, 12, 7, 16, 14, 9, tzinfo=UTC)  # the example: 8 December, 01:14 in Tokyo
REVIEWED = BUILT - timedelta(hours=2)
COPIED = {"StudyDate", "StudyTime", "PatientBirthDate"}  # from the CT, as its scanner wrote them


def dates_and_times(ds: Dataset) -> dict[str, str]:
    """keyword → value of every DA and TM attribute of ``ds`` (nested sequences included), but the study's."""
    out: dict[str, str] = {}
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out.update(dates_and_times(item))
        elif elem.VR in ("DA", "TM") and elem.keyword not in COPIED:
            out[elem.keyword] = str(elem.value)
    return out


@pytest.mark.parametrize(
    ("zone", "date", "time", "review_time", "offset"),
    [
        ("Asia/Tokyo", "20261208", "011409", "231409", "+0900"),
        ("Europe/Zurich", "20261207", "171409", "151409", "+0100"),
        ("America/New_York", "20261207", "111409", "091409", "-0500"),
        ("Asia/Kathmandu", "20261207", "215909", "195909", "+0545"),
        ("UTC", "20261207", "161409", "141409", "+0000"),
    ],
)
def test_every_date_and_time_is_in_the_sites_zone_with_its_offset(
    course: Course,
    plan: Plan,
    site: Site,
    aimed: AimedPlan,
    zone: str,
    date: str,
    time: str,
    review_time: str,
    offset: str,
) -> None:
    ctx = make_context(["P1", "rev-1", "APPROVED"], when=BUILT, zone=ZoneInfo(zone))
    exported = export_all(ctx, course, plan, site, aimed, Approval("APPROVED", "Curie^Marie", REVIEWED))
    for ds in exported.all():
        written = dates_and_times(ds)
        dates = {k for k in written if k.endswith("Date") and k != "ReviewDate"}
        assert {"InstanceCreationDate", "SeriesDate"} <= dates, ds.Modality
        assert {k: written[k] for k in dates} == dict.fromkeys(dates, date), ds.Modality
        times = {k for k in written if k.endswith("Time") and k != "ReviewTime"}
        assert {k: written[k] for k in times} == dict.fromkeys(times, time), ds.Modality
        assert ds.TimezoneOffsetFromUTC == offset
    rp = exported.rp
    assert (rp.RTPlanDate, rp.RTPlanTime, rp.ReviewTime) == (date, time, review_time)
    assert (exported.rs.StructureSetDate, exported.rd_plan.ContentDate) == (date, date)


@pytest.mark.parametrize(("month", "offset", "time"), [(1, "+0100", "130000"), (7, "+0200", "140000")])
def test_summer_time_is_the_offset_at_that_instant(month: int, offset: str, time: str) -> None:
    ctx = make_context(["P1"], when=datetime(2026, month, 15, 12, tzinfo=UTC), zone=ZoneInfo("Europe/Zurich"))
    assert (ctx.timezone_offset, ctx.time) == (offset, time)


def test_one_offset_for_all_of_an_objects_times(course: Course, plan: Plan, site: Site, aimed: AimedPlan) -> None:
    """Approved on Saturday in winter time, built on Monday in summer time: the review time is written at the
    object's one offset (+0200), so that a reader adding it back gets the instant of the approval."""
    built = datetime(2026, 3, 30, 12, 0, 0, tzinfo=UTC)
    reviewed = datetime(2026, 3, 28, 12, 0, 0, tzinfo=UTC)  # 13:00 on the clocks of that day (+0100)
    ctx = make_context(["P1", "rev-1", "APPROVED"], when=built, zone=ZoneInfo("Europe/Zurich"))
    rp = export_all(ctx, course, plan, site, aimed, Approval("APPROVED", "Curie^Marie", reviewed)).rp
    assert (rp.TimezoneOffsetFromUTC, rp.RTPlanTime, rp.ReviewDate, rp.ReviewTime) == (
        "+0200",
        "140000",
        "20260328",
        "140000",
    )


def test_the_machines_zone_is_the_default() -> None:
    ctx = make_context(["P1"], when=BUILT, zone=None)
    assert ctx.offset == BUILT.astimezone().utcoffset()
    assert ctx.time == BUILT.astimezone().strftime("%H%M%S")


def test_a_time_without_its_zone_is_refused() -> None:
    with pytest.raises(BuildError, match="the build time has no time zone"):
        BuildContext(UIDFactory(None, ["P1"]), datetime(2026, 12, 7, 16, 14, 9), "m", "v")
    ctx = make_context(["P1"], when=BUILT)
    with pytest.raises(BuildError, match="has no time zone"):
        ctx.date_of(datetime(2026, 12, 7))
