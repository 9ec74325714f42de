"""Run dicom3tools' ``dciodvfy`` IOD validator on a Part 10 file and fail the test on any error."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Warnings that say nothing about our objects, each with the reason it is noise:
KNOWN_NOISE = (
    # dciodvfy checks every file as if it were to be put in a DICOMDIR; Type 2 attributes such as
    # AccessionNumber are legitimately empty, and no DICOMDIR is made.
    "that would be needed to build DICOMDIR",
)


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
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    report = Report(proc.returncode, output=output)
    for line in output.splitlines():
        if line.startswith("Error"):
            report.errors.append(line)
        elif line.startswith("Warning"):
            if any(noise in line for noise in KNOWN_NOISE):
                report.ignored.append(line)
            else:
                report.warnings.append(line)
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
