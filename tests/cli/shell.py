"""The environment of a user's shell for `python -m rtexport`: a plain PATH, a terminal width, and the rtexport
under test (the same source tree the test imports, whatever is installed)."""

from __future__ import annotations

from pathlib import Path

import rtexport

SOURCE = str(Path(rtexport.__file__).parents[1])


def shell_env(columns: int = 200, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "COLUMNS": str(columns), "PYTHONPATH": SOURCE, **extra}
