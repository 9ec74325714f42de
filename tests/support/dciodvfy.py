"""Run dicom3tools' ``dciodvfy`` IOD validator on a Part 10 file and fail the test on any error."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from rtexport.model.text import MAX_CHARACTERS, length

# Warnings that say nothing about our objects, each with the reason it is noise:
KNOWN_NOISE = (
    # dciodvfy checks every file as if it were to be put in a DICOMDIR; Type 2 attributes such as
    # AccessionNumber are legitimately empty, and no DICOMDIR is made.
    "that would be needed to build DICOMDIR",
)


# dciodvfy counts the bytes of every value; PS3.5 6.2 counts SH, LO, ST, LT and PN values in characters (one
# character of a multi-byte character set such as UTF-8 takes several bytes). Such a length finding is checked again
# as PS3.5 counts it: ignored only when every value of that attribute is within its length in characters.
_LENGTH = re.compile(
    r"\((0x[0-9a-f]{4}),(0x[0-9a-f]{4})\) (SH|LO|ST|LT|PN) .* - Length invalid for this VR = \d+, expected <= (\d+)"
)


def _values(ds: Dataset, tag: BaseTag) -> Iterator[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _values(item, tag)
        elif elem.tag == tag and elem.value is not None:
            yield from (str(v) for v in (elem.value if isinstance(elem.value, MultiValue) else [elem.value]))


def within_characters(path: Path, line: str) -> bool:
    """Whether a dciodvfy length error on ``path`` is within the length PS3.5 counts in characters."""
    found = _LENGTH.search(line)
    if found is None:
        return False
    group, element, vr, limit = found.groups()
    values = list(_values(pydicom.dcmread(path), Tag(int(group, 16), int(element, 16))))
    return bool(values) and int(limit) == MAX_CHARACTERS[vr] and all(length(v, vr) <= int(limit) for v in values)


@dataclass
class Report:
    """What dciodvfy said about one file."""

    returncode: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    output: str = ""


def run(path: Path) -> Report:
    """dciodvfy's verdict on ``path``; fails the test when dciodvfy is not installed."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy is not installed (Debian package dicom3tools); it is required, not optional")
    # values are printed in the file's character set, not necessarily UTF-8
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, errors="replace", timeout=120, check=False)
    output = proc.stdout + proc.stderr
    report = Report(proc.returncode, output=output)
    for line in output.splitlines():
        if line.startswith("Error") and within_characters(path, line):
            report.ignored.append(line)
        elif line.startswith("Error"):
            report.errors.append(line)
        elif line.startswith("Warning"):
            if any(noise in line for noise in KNOWN_NOISE):
                report.ignored.append(line)
            else:
                report.warnings.append(line)
    lengths = any("Length invalid for this VR" in line for line in report.ignored)
    if lengths and not any("Value invalid for this VR" in e for e in report.errors):
        # dciodvfy's summary of the value findings, all of them lengths within PS3.5's count
        summary = [e for e in report.errors if "contains invalid data values for Value Representations" in e]
        report.errors = [e for e in report.errors if e not in summary]
        report.ignored += summary
    return report


def assert_valid(path_or_bytes: Path | str | bytes) -> Report:
    """Fail with dciodvfy's error lines unless the file has 0 errors; print its warnings."""
    if isinstance(path_or_bytes, bytes):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "object.dcm"
            path.write_bytes(path_or_bytes)
            return assert_valid(path)
    path = Path(path_or_bytes)
    report = run(path)
    if report.warnings:
        print(f"dciodvfy warnings for {path.name}:\n  " + "\n  ".join(report.warnings))
    # A crash (134 on 32-bit dose, for instance) is a failure even without error lines.
    if report.returncode not in (0, 1) or report.errors:
        pytest.fail(
            f"dciodvfy found {len(report.errors)} error(s) in {path.name} (exit {report.returncode}):\n  "
            + "\n  ".join(report.errors or report.output.splitlines()[-20:])
        )
    return report
