"""Fixtures for network tests: the small phantom as ExportObjects, a private Orthanc, DCMTK storescp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rtexport.export.objects import ExportObject, ObjectKind, read_objects
from tests.support.orthanc import MissingProgram, Orthanc, free_port
from tests.support.storescp import StoreSCP

CALLING_AE = "RTEXPORT"


@pytest.fixture
def objects(phantom_dir: Path) -> list[ExportObject]:
    """The small phantom: CT slices then the structure set, in send order."""
    cts = read_objects(sorted(phantom_dir.glob("CT*.dcm")), ObjectKind.CT)
    return cts + read_objects([phantom_dir / "RS.phantom.dcm"], ObjectKind.RTSTRUCT)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A private Orthanc that knows our AE title, to send storage commitment reports to
    ``orthanc.modalities["rtx"]`` (AE title, host, port)."""
    commit_port = free_port()
    try:
        server = Orthanc(tmp_path_factory.mktemp("orthanc"), modalities={"rtx": (CALLING_AE, "127.0.0.1", commit_port)})
    except MissingProgram as e:
        pytest.fail(str(e))
    with server:
        yield server


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreSCP]:
    try:
        scp = StoreSCP(tmp_path / "storescp-out")
    except MissingProgram as e:
        pytest.fail(str(e))
    with scp:
        yield scp
