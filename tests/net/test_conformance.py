"""docs/conformance.md says what the code does: the SOP classes, roles and transfer syntaxes in its table are
exactly those the sender proposes and the receiver and the commitment listener accept."""

from __future__ import annotations

from pathlib import Path

from pydicom._uid_dict import UID_dictionary

from rtexport.net import commitment, query, send
from rtexport.net.commitment import ReportListener
from rtexport.net.pdu import AssociateAC, AssociateRQ, ContextResult, ProposedContext, UserInformation
from rtexport.net.receiver import ReceiverPolicy, negotiate
from rtexport.net.store import Item, presentation_contexts
from rtexport.net.transport import Timeouts

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
AS_STORED = "as stored"
Row = tuple[str, str, str, frozenset[str]]


def _documented() -> set[Row]:
    """(application entity, SOP class UID, role, transfer syntaxes) of the table in section 4.2."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### 4.2", 1)[1].split("###", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].startswith("1.2.840"):
            rows.add((cells[0], cells[2], cells[3], frozenset(s.strip() for s in cells[4].split(","))))
    return rows


class _Stored:
    """An instance whose file's transfer syntax is unknown in advance: the sender proposes it "as stored"."""

    def __init__(self, sop_class: str) -> None:
        self.kind, self.sop_class_uid, self.sop_instance_uid, self.size = "X", sop_class, "1.2.3", 0
        self.sha256, self.path = None, None

    def open(self):  # type: ignore[no-untyped-def]  # never called here
        raise NotImplementedError


def _proposed() -> set[Row]:
    rows: set[Row] = set()
    for sop in send.SENT_CLASSES:
        contexts = presentation_contexts([Item(0, _Stored(sop), AS_STORED, 0, 0)])
        rows.add(("Sender", sop, "SCU", frozenset(ts for c in contexts for ts in c.transfer_syntaxes)))
    rows.add(("Sender", send.VERIFICATION, "SCU", frozenset(send.ECHO_SYNTAXES)))
    rows.add(("Sender", commitment.STORAGE_COMMITMENT_PUSH, "SCU", frozenset(commitment.SYNTAXES)))
    for model in (query.PATIENT_ROOT_FIND, query.STUDY_ROOT_FIND, query.STUDY_ROOT_MOVE):
        rows.add(("Sender", model, "SCU", frozenset(query.SYNTAXES)))
    return rows


_EVERY_CLASS = sorted(uid for uid, entry in UID_dictionary.items() if entry[1] == "SOP Class")
_EVERY_SYNTAX = sorted(uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax")


def _accepted(ae: str, decide: object, role_of: dict[str, str]) -> set[Row]:
    """Probe an acceptor with every SOP class pydicom knows, one transfer syntax per context."""
    rows: set[Row] = set()
    for sop in _EVERY_CLASS:
        contexts = tuple(ProposedContext(2 * i + 1, sop, (ts,)) for i, ts in enumerate(_EVERY_SYNTAX))
        answer = decide(AssociateRQ("RTEXPORT", "PROBE", contexts, UserInformation(16384)))  # type: ignore[operator]
        assert isinstance(answer, AssociateAC)
        accepted = frozenset(a.transfer_syntax for a in answer.contexts if a.result == ContextResult.ACCEPTANCE)
        if accepted:
            rows.add((ae, sop, role_of.get(sop, "SCP"), accepted))
    return rows


def test_the_documented_sop_classes_roles_and_transfer_syntaxes_are_those_of_the_code() -> None:
    receiver = _accepted("Receiver", lambda rq: negotiate(ReceiverPolicy("RTEXPORT"), rq, "127.0.0.1"), {})
    listener = ReportListener("RTEXPORT", "127.0.0.1", 0, timeouts=Timeouts())
    listening = _accepted("Commitment listener", listener.decide, {commitment.STORAGE_COMMITMENT_PUSH: "SCU"})

    assert _documented() == _proposed() | receiver | listening


def test_the_overview_lists_every_sop_class_of_the_detailed_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    overview = text.split("## 1 Overview", 1)[1].split("## 2", 1)[0]
    named = {row[1] for row in _documented()}
    assert {UID_dictionary[uid][0].removesuffix(" SOP Class") for uid in named} <= {
        c.strip() for line in overview.splitlines() for c in line.split("|")[2:3]
    }
