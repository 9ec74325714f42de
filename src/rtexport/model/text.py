"""Text that will reach DICOM, checked against its Value Representation (PS3.5 6.2) when it is loaded, so a plan
or a user record that loads is one that can be written: no backslash (the value separator), no control characters,
not only spaces, and at most the VR's length in the bytes of the character set we write (UTF-8, ISO_IR 192)."""

from __future__ import annotations

import unicodedata

_CS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _")
# Maximum length in bytes of one value, for the VRs rtexport writes from user text.
MAX_BYTES = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "PN": 64}


def check_text(value: str, vr: str, *, required: bool = True) -> str | None:
    """Why ``value`` cannot be a ``vr`` value, or None when it can."""
    if not value.strip():
        return "must not be empty or only spaces" if required else None
    if "\\" in value:
        return "must not contain a backslash (it separates DICOM values)"
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if bad is not None:
        return f"must not contain control or unassigned characters (found U+{ord(bad):04X})"
    if vr == "AE" and not value.isascii():
        return "must be plain ASCII"
    if vr == "CS" and not all(c in _CS for c in value):
        return "must be upper-case letters, digits, space or underscore"
    limit = MAX_BYTES[vr]
    size = len(value.encode("utf-8"))
    if vr == "PN":
        groups = value.split("=")
        if len(groups) > 3 or any(len(g.split("^")) > 5 for g in groups):
            return "a person name is Family^Given^Middle^Prefix^Suffix (at most 5 parts)"
        size = max(len(g.encode("utf-8")) for g in groups)
    if size > limit:
        return f"is {size} bytes in UTF-8; DICOM {vr} allows at most {limit}"
    return None


def check_person_name(value: str) -> str | None:
    """Why ``value`` is not a usable DICOM Person Name (``Family^Given``), or None."""
    problem = check_text(value, "PN")
    if problem:
        return problem
    if "^" not in value:
        return "write it as Family^Given (e.g. Curie^Marie)"
    return None
