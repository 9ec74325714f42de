"""The layers hold (import-linter contracts in pyproject.toml), and a side door fails them: the same contracts
run on a copy of the source with one forbidden import added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the package under ``root/src`` with ``root/pyproject.toml``'s contracts."""
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "src" / "rtexport", root / "src" / "rtexport", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_layers_hold() -> None:
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("cli/base.py", "import rtexport.workspace", "Front ends reach storage"),
        ("web/common.py", "from rtexport.export import gate", "Front ends reach storage"),
        (
            "export/build.py",
            "import rtexport.workspace.store",
            "The export, the network code and the DICOM builders never reach storage",
        ),
        ("model/people.py", "import pydicom", "The domain model imports no pydicom"),
        ("dicom/common.py", "import rtexport.services", "Front ends over services over the rest"),
    ],
)
def test_a_side_door_breaks_a_contract(copy: Path, module: str, line: str, contract: str) -> None:
    path = copy / "src" / "rtexport" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{line}  # a side door\n", encoding="utf-8")
    try:
        r = lint_imports(copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert r.returncode == 1, r.stdout
    assert f"{contract}" in r.stdout and "BROKEN" in r.stdout
