"""The stack below the sender: PDUs as pynetdicom reads them, the PS3.8 state machine, and protocol faults
played by a scripted peer on a socket pair (no timing races: each fault is certain, not late)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ

from rtexport.net import pdu
from rtexport.net.association import Association, AssociationLost
from rtexport.net.dimse import Command, CommandField, Dimse
from rtexport.net.fileread import read_file, read_into
from rtexport.net.fsm import Action, Event, InvalidPrimitive, State, transition
from rtexport.net.pdu import (
    PDV,
    AssociateAC,
    AssociateRQ,
    ContextAnswer,
    ContextResult,
    PDataTF,
    PDUError,
    ProposedContext,
    RoleSelection,
    UserInformation,
)
from rtexport.net.receiver import response_pdu
from rtexport.net.transport import Timeouts

from . import peer
from .peer import Peer

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
CONTEXTS = (ProposedContext(1, CT, (EXPLICIT,)),)
OUR_MAX = 65536


def _rq() -> AssociateRQ:
    return AssociateRQ("PEER", "RTEXPORT", CONTEXTS, UserInformation(OUR_MAX, "1.2.3", "RTX"))


def _associate(script: Any, timeouts: Timeouts | None = None, clock: Any = None) -> tuple[Association, Any]:
    """An association with a scripted peer on a socket pair; returns it and the peer's future."""
    ours, theirs = socket.socketpair()
    future = peer.run(script, theirs)
    kwargs = {"clock": clock} if clock is not None else {}
    assoc = Association.request(_rq(), lambda: ours, timeouts=timeouts or Timeouts.uniform(10), **kwargs)
    return assoc, future


# -- the codec, read back by pynetdicom ----------------------------------------------------------------------


def test_associate_rq_reads_the_same_in_pynetdicom() -> None:
    roles = (RoleSelection("1.2.840.10008.1.20.1", scu=False, scp=True),)
    rq = AssociateRQ("ORTHANC", "RTEXPORT", CONTEXTS, UserInformation(OUR_MAX, "2.25.7", "RTEXPORT_1", roles))
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(pdu.encode(rq))

    assert (theirs.called_ae_title.strip(), theirs.calling_ae_title.strip()) == ("ORTHANC", "RTEXPORT")
    (ctx,) = theirs.presentation_context
    assert (ctx.context_id, ctx.abstract_syntax, ctx.transfer_syntax) == (1, CT, [EXPLICIT])
    user = theirs.user_information
    assert user is not None
    assert (user.maximum_length, user.implementation_class_uid) == (OUR_MAX, "2.25.7")
    (role,) = user.role_selection.values()
    assert (role.uid, role.scu_role, role.scp_role) == ("1.2.840.10008.1.20.1", 0, 1)


def test_associate_ac_reads_the_same_in_pynetdicom_and_back() -> None:
    answers = (
        ContextAnswer(1, ContextResult.ACCEPTANCE, EXPLICIT),
        ContextAnswer(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
    )
    ac = AssociateAC("ORTHANC", "RTEXPORT", answers, UserInformation(16384, "1.2.276.0.7230010.3.0.3.6.7", "DCMTK"))
    raw = pdu.encode(ac)
    theirs = A_ASSOCIATE_AC()
    theirs.decode(raw)

    assert [(c.context_id, c.result, c.transfer_syntax) for c in theirs.presentation_context] == [
        (1, 0, EXPLICIT), (3, 3, None),
    ]  # fmt: skip
    assert theirs.user_information is not None
    assert theirs.user_information.maximum_length == 16384
    assert pdu.decode(pdu.PDUType.ASSOCIATE_AC, raw[6:]) == ac


@pytest.mark.parametrize(
    ("pdu_type", "body", "message"),
    [
        (0x09, b"\0\0\0\0", "unknown PDU type 0x09"),
        (0x04, struct.pack(">IBB", 9, 1, 3) + b"abc", "PDV item length 9 does not fit"),
        (0x07, b"\0\0\0", "A-ABORT PDU of 3 bytes; it has 4"),
        (0x02, pdu.encode(AssociateAC("A", "B", (), UserInformation()))[6:-3], "runs past the end"),
    ],
)
def test_malformed_pdus_are_refused_with_what_is_wrong(pdu_type: int, body: bytes, message: str) -> None:
    with pytest.raises(PDUError, match=message):
        pdu.decode(pdu_type, body)


def test_ae_title_longer_than_16_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="1 to 16 characters"):
        pdu.encode(AssociateRQ("A" * 17, "RTEXPORT", CONTEXTS, UserInformation()))


# -- the state machine (PS3.8 Table 9-10) --------------------------------------------------------------------


def test_release_collision_on_the_requestor_side_follows_sta9_and_sta11() -> None:
    s = State
    path = [
        (s.ESTABLISHED, Event.RELEASE_REQUEST, Action.AR_1, s.AWAITING_RELEASE_RP),
        (s.AWAITING_RELEASE_RP, Event.RELEASE_RQ, Action.AR_8, s.COLLISION_REQUESTOR_AWAITING_LOCAL),
        (s.COLLISION_REQUESTOR_AWAITING_LOCAL, Event.RELEASE_RESPONSE, Action.AR_9, s.COLLISION_REQUESTOR_AWAITING_RP),
        (s.COLLISION_REQUESTOR_AWAITING_RP, Event.RELEASE_RP, Action.AR_3, s.IDLE),
    ]
    for state, event, action, after in path:
        assert transition(state, event, requestor=True) == (action, after)
    assert transition(State.AWAITING_RELEASE_RP, Event.RELEASE_RQ, requestor=False) == (
        Action.AR_8, State.COLLISION_ACCEPTOR_AWAITING_RP,
    )  # fmt: skip


def test_unexpected_pdus_abort_and_local_primitives_out_of_place_are_bugs() -> None:
    assert transition(State.ESTABLISHED, Event.ASSOCIATE_AC, requestor=True) == (Action.AA_8, State.AWAITING_CLOSE)
    assert transition(State.AWAITING_ASSOCIATE_RQ, Event.PDATA_TF, requestor=False) == (
        Action.AA_1, State.AWAITING_CLOSE,
    )  # fmt: skip
    assert transition(State.AWAITING_CLOSE, Event.PDATA_TF, requestor=True) == (Action.AA_6, State.AWAITING_CLOSE)
    with pytest.raises(InvalidPrimitive, match="PDATA_REQUEST is not possible in state Sta7"):
        transition(State.AWAITING_RELEASE_RP, Event.PDATA_REQUEST, requestor=True)


# -- faults from a scripted peer ------------------------------------------------------------------------------


def _store_rq(message_id: int) -> Command:
    return Command(CommandField.C_STORE_RQ, message_id=message_id, affected_sop_class=CT,
                   affected_sop_instance="2.25.1", priority=0, data_set_type=0)  # fmt: skip


def _store(assoc: Association, data: bytes = b"\x08\x00\x16\x00UI\x02\x001\x00") -> Command:
    dimse = Dimse(assoc)
    command = _store_rq(dimse.next_message_id())
    dimse.send_stream(1, command, io.BytesIO(data), len(data))
    return dimse.await_response(command).command


def test_a_response_to_another_message_id_aborts_instead_of_looping() -> None:
    def script(p: Peer) -> Any:
        p.accept_association()
        command, _ = p.read_message()
        assert command.message_id == 1
        stale = Command(CommandField.C_STORE_RSP, responded_to=41, affected_sop_class=CT,
                        affected_sop_instance="2.25.1", status=0)  # fmt: skip
        p.respond(1, stale)
        return p.read_abort()  # then closes, as PS3.8 AA-3 has it

    assoc, future = _associate(script)
    with pytest.raises(AssociationLost, match=r"a C-STORE-RSP to message ID 41 where we awaited the C-STORE-RSP to "
                       r"message ID 1; association aborted"):  # fmt: skip
        _store(assoc)

    assert future.result().source == 0  # service user
    assert assoc.closed


def test_a_pdu_longer_than_our_maximum_is_a_protocol_error_never_read() -> None:
    def script(p: Peer) -> Any:
        p.accept_association()
        p.read_message()
        p.send(struct.pack(">BBI", 0x04, 0, OUR_MAX + 1) + b"\0" * 1024)  # a header promising more than allowed
        return p.read_abort()

    assoc, future = _associate(script)
    with pytest.raises(AssociationLost, match=rf"P-DATA-TF PDU of {OUR_MAX + 1} bytes, longer than the maximum of "
                       rf"{OUR_MAX} we announced; association aborted"):  # fmt: skip
        _store(assoc)

    abort = future.result()
    assert (abort.source, abort.reason_diagnostic) == (2, 6)  # service provider: invalid PDU parameter value
    assert assoc.closed


def test_no_answer_to_the_association_request_aborts_after_the_timer() -> None:
    def script(p: Peer) -> Any:
        p.read()  # the A-ASSOCIATE-RQ, never answered
        return p.read_abort()

    ours, theirs = socket.socketpair()
    future = peer.run(script, theirs)
    with pytest.raises(AssociationLost, match=r"no answer from the server within 0\.2 s while awaiting the answer to "
                       "the association request"):  # fmt: skip
        Association.request(_rq(), lambda: ours, timeouts=Timeouts.uniform(0.2))

    assert future.result().source == 0


class JumpingClock:
    """Time that moves on by ``step`` seconds at every reading: timers expire without waiting."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_artim_closes_when_the_peer_never_closes_after_our_abort() -> None:
    def script(p: Peer) -> Any:
        p.accept_association()
        p.read_abort()
        return p.wait_closed()  # we never close: only the ARTIM timer can end it on the other side

    clock = JumpingClock(step=60.0)  # each reading is a minute later than the one before
    assoc, future = _associate(script, Timeouts(connect=10, acse=1e6, dimse=10, artim=30, send=10), clock)
    assoc.abort()

    assert future.result() is True
    assert assoc.state == State.IDLE


def test_release_collision_is_answered_and_ends_closed() -> None:
    def script(p: Peer) -> Any:
        p.accept_association()
        assert p.read() == 0x05  # our A-RELEASE-RQ
        p.send(pdu.encode(pdu.ReleaseRQ()))  # the peer releases at the same time
        answered = p.read()
        p.send(pdu.encode(pdu.ReleaseRP()))
        return answered, p.wait_closed()

    assoc, future = _associate(script)
    assoc.release()

    assert future.result() == (0x06, True)  # we sent A-RELEASE-RP, then closed
    assert assoc.state == State.IDLE


def test_an_abort_by_the_peers_dicom_layer_says_why() -> None:
    def script(p: Peer) -> Any:
        p.accept_association()
        p.read_message()
        p.send(pdu.encode(pdu.Abort(source=2, reason=6)))
        return p.wait_closed()

    assoc, future = _associate(script)
    with pytest.raises(
        AssociationLost, match=r"^aborted by the DICOM layer of the server: invalid PDU parameter value$"
    ):
        _store(assoc)

    assert future.result() is True
    assert assoc.closed


# -- the data set of a stored file, as it leaves ---------------------------------------------------------------


@pytest.mark.parametrize("message", ["streamed in batches", "sent from the file read whole"])
def test_a_file_read_into_many_fragments_arrives_byte_for_byte(tmp_path: Path, message: str) -> None:
    """4 KiB PDUs make a 5 MB data set 1280 fragments: more buffers than one scattered read may fill, so the file
    is read in several; the receiver gets the data set after the file's head unchanged, and the hash sees it all.
    Sent from the file read whole: 2565 parts (headers and views between them), more than one gathering write
    takes, to a peer that reads more slowly than we write (partial writes continue where they stopped)."""
    head, data = b"PART10-HEAD" * 30, bytes(range(256)) * (5 * 4096) + b"tail"
    path = tmp_path / "CT.dcm"
    path.write_bytes(head + data + b"after the data set")

    def script(p: Peer) -> Any:
        p.accept_association(max_pdu=4096)
        got = p.read_message()
        p.respond(1, Command(CommandField.C_STORE_RSP, responded_to=1, affected_sop_class=CT,
                             affected_sop_instance="2.25.1", status=0))  # fmt: skip
        return got

    assoc, future = _associate(script)
    dimse, seen = Dimse(assoc), hashlib.sha256()
    command = _store_rq(dimse.next_message_id())
    if message == "sent from the file read whole":
        whole = dimse.scratch(len(head) + len(data))
        read_file(path, whole)
        seen.update(whole[len(head) :])
        outgoing = dimse.encode_view(1, command, whole[len(head) :])
        assert isinstance(outgoing.pdus, list) and len(outgoing.pdus) > os.sysconf("SC_IOV_MAX")
        dimse.send_outgoing(outgoing)
    else:
        with path.open("rb") as fp:
            assert fp.read(len(head)) == head
            dimse.send_stream(1, command, fp, len(data), observe=seen.update)
            assert fp.tell() == len(head) + len(data)
    assert dimse.await_response(command).command.status == 0
    assoc.release()

    sent_command, sent = future.result()
    assert sent_command.affected_sop_instance == "2.25.1"
    assert sent == data
    assert seen.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_peer_that_stops_reading_mid_message_loses_the_association_within_the_send_timeout() -> None:
    """The message's parts go by gathering writes; when the peer takes nothing more, the send gives up after the
    send timeout (not at the first partial write, not never) and the association is aborted."""
    stop = threading.Event()

    def script(p: Peer) -> Any:
        p.accept_association(max_pdu=16384)
        stop.wait(10)  # reads nothing

    assoc, future = _associate(script, Timeouts.uniform(0.3, artim=0.3))
    dimse = Dimse(assoc)
    data = memoryview(bytearray(8 << 20))
    with pytest.raises(AssociationLost, match=r"stopped reading \(nothing taken for 0.3 s\)"):
        dimse.send_outgoing(dimse.encode_view(1, _store_rq(dimse.next_message_id()), data))
    stop.set()
    future.result()
    assert assoc.closed


def test_a_file_shorter_than_read_whole_says_by_how_much(tmp_path: Path) -> None:
    path = tmp_path / "CT.dcm"
    path.write_bytes(b"x" * 10000)
    with pytest.raises(OSError, match="the file ended 2000 bytes early"):
        read_file(path, memoryview(bytearray(12000)))


def test_short_reads_of_a_file_still_fill_every_fragment_in_order(tmp_path: Path, monkeypatch: Any) -> None:
    """A file system may return less than asked (a network share, a signal): reading goes on where it stopped."""
    data = bytes(range(256)) * 400
    path = tmp_path / "CT.dcm"
    path.write_bytes(b"HEAD" + data)
    real = os.preadv

    def a_third_at_a_time(fd: int, buffers: list[memoryview], offset: int) -> int:
        return real(fd, [buffers[0][: max(1, len(buffers[0]) // 3)]], offset)

    monkeypatch.setattr(os, "preadv", a_third_at_a_time)
    buf = bytearray(len(data))
    view = memoryview(buf)
    parts = [view[i : i + 7000] for i in range(0, len(data), 7000)]
    with path.open("rb") as fp:
        fp.read(4)
        read_into(fp, parts)
        assert fp.tell() == 4 + len(data)
    assert buf == data
    assert [len(p) for p in parts] == [min(7000, len(data) - i) for i in range(0, len(data), 7000)]


@pytest.mark.parametrize(
    ("field", "sop_class", "instance", "message_id", "status"),
    [
        (CommandField.C_STORE_RSP, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.55", 1, 0x0000),  # odd, odd
        (CommandField.C_STORE_RSP, "1.2.840.10008.5.1.4.1.1.481.3", "1.2.3.4.5", 0xFFFF, 0xA700),  # even, odd
        (CommandField.C_ECHO_RSP, "1.2.840.10008.1.1", "", 7, 0x0000),
    ],
)
def test_the_receivers_written_response_is_the_encoders_message(
    field: int, sop_class: str, instance: str, message_id: int, status: int
) -> None:
    """The response the receiver writes straight (after each instance) is byte for byte the general encoder's."""
    command = Command(field, affected_sop_class=sop_class, affected_sop_instance=instance)
    full = Command(field, responded_to=message_id, affected_sop_class=sop_class, affected_sop_instance=instance,
                   status=status)  # fmt: skip
    expected = pdu.encode(PDataTF((PDV(5, True, True, full.encode()),)))
    assert response_pdu(5, command, message_id, status) == expected
    assert Command.decode(expected[12:]) == full
