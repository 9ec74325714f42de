"""Text that will reach DICOM, checked against its Value Representation when it is loaded, so a plan or a user
record that loads is one that can be written: no backslash (the value separator), no control characters, not only
spaces, and at most the VR's length as PS3.5 counts it (Table 6.2-1): in characters for the VRs whose character
repertoire a Specific Character Set can extend (SH, LO, ST, LT, PN: one character may take several bytes, PS3.5 6.2,
Note), in bytes for the others (AE, CS, DS, IS, UI, DA, TM, DT, AS).

Names rtexport builds from such text (a series description from a plan label and a beam name) are kept within the
stricter count, characters and UTF-8 bytes, by :func:`fit`: they then fit in whatever character set is written,
and readers that count bytes accept them too.
"""

from __future__ import annotations

import unicodedata

_CS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _")
# Maximum length of one value (PN: of one component group) in characters, for the VRs PS3.5 counts in characters.
MAX_CHARACTERS = {"SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "PN": 64}
# Maximum length of one value in bytes, for the VRs PS3.5 counts in bytes (their repertoire is ASCII).
MAX_BYTES = {"AE": 16, "CS": 16, "DS": 16, "IS": 12, "UI": 64, "DA": 8, "TM": 14, "DT": 26, "AS": 4}


def max_length(vr: str) -> int:
    """The longest value of ``vr`` (PS3.5 Table 6.2-1), in the unit :func:`length` counts."""
    limit = MAX_CHARACTERS.get(vr) or MAX_BYTES.get(vr)
    if limit is None:
        raise ValueError(f"no length rule for VR {vr!r}")
    return limit


def length(value: str, vr: str) -> int:
    """The length of ``value`` as PS3.5 counts it for ``vr``: characters (PN: of the longest component group)
    or bytes."""
    if vr == "PN":
        return max(len(group) for group in value.split("="))
    if vr in MAX_CHARACTERS:
        return len(value)
    return len(value.encode("utf-8"))


def _unit(vr: str) -> str:
    return "characters" if vr in MAX_CHARACTERS else "bytes"


def check_text(value: str, vr: str, *, required: bool = True) -> str | None:
    """Why ``value`` cannot be a ``vr`` value, or None when it can."""
    if not value.strip():
        return "must not be empty or only spaces" if required else None
    if "\\" in value:
        return "must not contain a backslash (it separates DICOM values)"
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if bad is not None:
        return f"must not contain control or unassigned characters (found U+{ord(bad):04X})"
    if vr in MAX_BYTES and not value.isascii():
        return "must be plain ASCII"
    if vr == "CS" and not all(c in _CS for c in value):
        return "must be upper-case letters, digits, space or underscore"
    if vr == "PN":
        groups = value.split("=")
        if len(groups) > 3 or any(len(g.split("^")) > 5 for g in groups):
            return "a person name is Family^Given^Middle^Prefix^Suffix (at most 5 parts)"
    size, limit = length(value, vr), max_length(vr)
    if size > limit:
        per = " per component group" if vr == "PN" else ""
        return f"is {size} {_unit(vr)}; DICOM {vr} allows at most {limit}{per}"
    return None


def check_person_name(value: str) -> str | None:
    """Why ``value`` is not a usable DICOM Person Name (``Family^Given``), or None."""
    problem = check_text(value, "PN")
    if problem:
        return problem
    if "^" not in value:
        return "write it as Family^Given (e.g. Curie^Marie)"
    return None


def _fits(text: str, limit: int) -> bool:
    return len(text) <= limit and len(text.encode("utf-8")) <= limit


def _prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` characters and ``limit`` UTF-8 bytes."""
    out, size = [], 0
    for c in text[:limit]:
        size += len(c.encode("utf-8"))
        if size > limit:
            break
        out.append(c)
    return "".join(out).rstrip()


def fit(vr: str, variable: str, fixed: str = "") -> str:
    """``variable + fixed`` as one ``vr`` value within its length in characters and in UTF-8 bytes, shortening
    ``variable`` first (from its end) and ``fixed`` only when it is too long by itself: give the part that
    identifies the value (a beam name) as ``fixed``. Deterministic: the same parts always give the same value."""
    limit = max_length(vr)
    if _fits(variable + fixed, limit):
        return (variable + fixed).strip()
    if not _fits(fixed, limit):
        return _prefix(fixed.strip(), limit)
    budget = limit - max(len(fixed), len(fixed.encode("utf-8")))
    return (_prefix(variable, budget) + fixed).strip()
