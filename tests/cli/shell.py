"""The environment of a user's shell for `python -m rtexport`: a plain PATH, a terminal width, and the rtexport
under test (the same source tree the test imports, whatever is installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rtexport

SOURCE = str(Path(rtexport.__file__).parents[1])


def shell_env(columns: int = 200, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "COLUMNS": str(columns), "PYTHONPATH": SOURCE, **extra}


def run_rtexport(
    home: Path, *args: str, stdin: str = "", columns: int = 200, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``rtexport ARGS`` in a real process, the workspace given by RTEXPORT_HOME, in a terminal ``columns`` wide."""
    return subprocess.run(
        [sys.executable, "-m", "rtexport", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=shell_env(columns, RTEXPORT_HOME=str(home), **env),
    )
