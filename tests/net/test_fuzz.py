"""The PDU decoder against any bytes (property-based): a valid PDU or PDUError, never another exception, never
a hang; and what it decodes encodes back to bytes it decodes the same."""

from __future__ import annotations

import contextlib
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from rtexport.net import pdu
from rtexport.net.dataset import DataSetError, read_header
from rtexport.net.dimse import Command, DimseError
from rtexport.net.pdu import PDUError
from rtexport.net.transport import Timer, Transport

_TYPES = st.integers(min_value=0, max_value=255)
_SETTINGS = settings(max_examples=300, deadline=1000, derandomize=True, database=None)


def _decode(pdu_type: int, body: bytes | bytearray | memoryview) -> pdu.PDU | None:
    try:
        return pdu.decode(pdu_type, body)
    except PDUError:
        return None


@_SETTINGS
@given(_TYPES, st.binary(max_size=2048))
def test_any_bytes_give_a_pdu_or_the_protocol_error(pdu_type: int, body: bytes) -> None:
    record = _decode(pdu_type, body)
    if record is not None:
        assert pdu.type_of(record) == pdu_type


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


# Associate PDUs built from plausible items with random values: the decoder meets deep structure, not only noise.
_VALUES = st.binary(max_size=80)
_SUB = st.tuples(st.sampled_from([0x30, 0x40, 0x51, 0x52, 0x54, 0x55, 0x99]), _VALUES).map(lambda t: _item(*t))
_CONTEXT = st.tuples(st.sampled_from([0x20, 0x21]), st.binary(min_size=0, max_size=4), st.lists(_SUB, max_size=4))
_ITEMS = st.one_of(
    _CONTEXT.map(lambda t: _item(t[0], t[1] + b"".join(t[2]))),
    st.lists(_SUB, max_size=5).map(lambda subs: _item(0x50, b"".join(subs))),
    st.tuples(st.just(0x10), _VALUES).map(lambda t: _item(*t)),
    st.binary(max_size=8),
)


@_SETTINGS
@given(st.sampled_from([1, 2]), st.binary(min_size=68, max_size=68), st.lists(_ITEMS, max_size=6))
def test_associate_pdus_of_plausible_items(pdu_type: int, fixed: bytes, items: list[bytes]) -> None:
    record = _decode(pdu_type, fixed + b"".join(items))
    if isinstance(record, pdu.AssociateRQ | pdu.AssociateAC):
        # What was read can be written again only when its fields are within their ranges; then it must round-trip.
        try:
            again = pdu.encode(record)
        except (ValueError, UnicodeEncodeError):
            return
        assert _decode(again[0], again[6:]) is not None


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, 255), st.booleans(), st.booleans(), st.binary(max_size=64)), max_size=5))
def test_pdata_round_trips(pdvs: list[tuple[int, bool, bool, bytes]]) -> None:
    record = pdu.PDataTF(tuple(pdu.PDV(c, cmd, last, data) for c, cmd, last, data in pdvs))
    raw = pdu.encode(record)
    decoded = _decode(raw[0], raw[6:])
    assert decoded == (record if pdvs else None)


@settings(max_examples=200, deadline=2000, derandomize=True, database=None)
@given(st.binary(max_size=300))
def test_the_transport_reads_any_stream_to_a_pdu_or_an_error_within_its_timer(stream: bytes) -> None:
    """Whatever a peer sends, then closing: a PDU, the protocol error, or the closed connection; never a wait
    beyond the timer (a length that promises more than comes ends at the close, or at the timer)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(stream)
        theirs.shutdown(socket.SHUT_WR)
        transport = Transport(ours, max_pdata_length=16384, send_timeout=1)
        try:
            pdu_type, body = transport.read_pdu(Timer(1.0))
            _decode(pdu_type, body)
        except (PDUError, EOFError, TimeoutError):
            pass


@_SETTINGS
@given(st.binary(max_size=512))
def test_any_command_set_bytes_give_a_command_or_the_dimse_error(data: bytes) -> None:
    with contextlib.suppress(DimseError):
        Command.decode(data)


@_SETTINGS
@given(st.binary(max_size=4096), st.booleans())
def test_any_data_set_bytes_give_a_header_or_the_data_set_error(data: bytes, implicit: bool) -> None:
    """What the receiver reads of an arriving data set before it answers: never another exception."""
    with contextlib.suppress(DataSetError):
        read_header(data, implicit)
