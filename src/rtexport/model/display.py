"""Names and times as people read them, for the page, the report and the command line alike."""

from __future__ import annotations

from datetime import datetime


def person(pn: str) -> str:
    """A DICOM Person Name (PS3.5 6.2: ``Family^Given^Middle^Prefix^Suffix``, alphabetic group) as people write
    it: "Prefix Given Middle Family, Suffix"; a name without ``^`` (a login) as it is."""
    alphabetic = pn.split("=")[0]
    if "^" not in alphabetic:
        return alphabetic.strip()
    family, given, middle, prefix, suffix = (alphabetic.split("^") + [""] * 5)[:5]
    name = " ".join(p.strip() for p in (prefix, given, middle, family) if p.strip())
    return f"{name}, {suffix.strip()}" if suffix.strip() else name


def local_time(t: datetime) -> str:
    """``t`` in this computer's time zone, to the minute, with the zone's name (e.g. ``2026-03-01 10:00 CET``)."""
    return t.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def dicom_date(da: str) -> str:
    """A DICOM date (``YYYYMMDD``) as ``YYYY-MM-DD``; anything else as it is."""
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da
