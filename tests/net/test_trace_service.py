"""The trace hook front ends use (``--trace FILE``): C-ECHO and an export leave a readable trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtexport.errors import InputError
from rtexport.export.objects import ExportObject
from rtexport.net.send import Destination, echo, send_objects
from rtexport.services.trace import network_trace

from .conftest import CALLING_AE
from .scp import FakeSCP


def test_the_trace_names_each_pdu_and_message(tmp_path: Path, objects: list[ExportObject]) -> None:
    trace = tmp_path / "trace.txt"
    with FakeSCP() as scp, network_trace(trace):
        dest = Destination(scp.aet, "127.0.0.1", scp.port)
        echo(dest, CALLING_AE)
        assert send_objects(objects[:2], dest, CALLING_AE, associations=1).ok

    lines = trace.read_text().splitlines()
    assert any("-> A-ASSOCIATE-RQ called FAKESCP calling RTEXPORT" in line for line in lines)
    assert any("<- A-ASSOCIATE-AC max PDU" in line for line in lines)
    assert any("-> ctx 1 C-ECHO-RQ id 1 Verification SOP Class" in line for line in lines)
    assert sum("C-STORE-RQ" in line and "+ data set" in line for line in lines) == 2
    assert sum("<- ctx" in line and "C-STORE-RSP" in line and "status 0x0000" in line for line in lines) == 2
    assert any("A-RELEASE-RQ" in line for line in lines) and any("A-RELEASE-RP" in line for line in lines)


def test_a_trace_file_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(InputError, match=r"cannot write the trace to .*missing/trace\.txt"),
        network_trace(tmp_path / "missing" / "trace.txt"),
    ):
        pass
