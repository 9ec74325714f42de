"""Reading reports as a user does: poppler's pdftotext and pdftoppm, pdfinfo for the metadata; local time fixed."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def berlin_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Reports show local time: make it a known zone."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install poppler-utils (needed to read reports)")
    return path


def pdf_pages(pdf: bytes, tmp_path: Path) -> list[str]:
    """The text of each page, as pdftotext extracts it (so: selectable text)."""
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        [poppler("pdftotext"), "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """All text, with line breaks inside table cells and paragraphs joined by spaces."""
    return " ".join(" ".join(pdf_pages(pdf, tmp_path)).split())


def pdf_images(pdf: bytes, tmp_path: Path, dpi: int = 50) -> list[Image.Image]:
    """Each page rendered by pdftoppm."""
    path = tmp_path / "render.pdf"
    path.write_bytes(pdf)
    out = tmp_path / "page"
    subprocess.run([poppler("pdftoppm"), "-png", "-r", str(dpi), str(path), str(out)], check=True)
    return [Image.open(p).convert("RGB") for p in sorted(tmp_path.glob("page-*.png"))]


def pdf_info(pdf: bytes, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "info.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        [poppler("pdfinfo"), "-isodates", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
