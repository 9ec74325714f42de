"""Values as plan and site files may give them: numbers finite and of their type (a TOML string is never taken
for a number), within documented plausible ranges, and text that will reach DICOM valid for its Value
Representation. Ranges name what is impossible (refused); what is only unusual is the plan's business
(:func:`rtexport.model.plan.unusual_values`: accepted with an acknowledgement in the file)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field

from rtexport.model.text import check_text

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite number (an integer is taken as a float; a string, a boolean, NaN or infinity is refused)."""
Positive = Annotated[Finite, Field(gt=0)]
Count = Annotated[int, Field(strict=True)]
"""An integer as written (no 25.0, no "25", no true)."""


def _vr(vr: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        problem = check_text(value, vr)
        if problem:
            raise ValueError(f"{value!r} {problem} (it is written to DICOM as {vr})")
        return value

    return check


Text = Annotated[str, Field(strict=True)]
SH = Annotated[Text, AfterValidator(_vr("SH"))]
"""Text written as a DICOM Short String (at most 16 characters)."""
LO = Annotated[Text, AfterValidator(_vr("LO"))]
"""Text written as a DICOM Long String (at most 64 characters)."""


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Zurich``); ValueError naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}: give an IANA name such as 'Europe/Zurich'") from e


def _zone(name: str) -> str:
    time_zone(name)
    return name


TimeZoneName = Annotated[Text, AfterValidator(_zone)]
"""An IANA time zone name, e.g. ``Europe/Zurich`` (DST included)."""
