"""The association state machine of PS3.8 9.2 as a table: states Sta1–Sta13, events Evt1–Evt19, actions.

:func:`transition` is Table 9-10: the action and next state for an event in a state. It is pure; the
:class:`~rtexport.net.association.Association` carries out the transport side of each action.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class State(IntEnum):
    """Association states (PS3.8 Table 9-10)."""

    IDLE = 1  # Sta1
    AWAITING_ASSOCIATE_RQ = 2  # Sta2: transport open, ARTIM running
    AWAITING_LOCAL_ASSOCIATE_RESPONSE = 3  # Sta3
    AWAITING_TRANSPORT_OPEN = 4  # Sta4
    AWAITING_ASSOCIATE_AC = 5  # Sta5
    ESTABLISHED = 6  # Sta6: ready for data transfer
    AWAITING_RELEASE_RP = 7  # Sta7
    AWAITING_LOCAL_RELEASE_RESPONSE = 8  # Sta8
    COLLISION_REQUESTOR_AWAITING_LOCAL = 9  # Sta9: release collision, requestor side
    COLLISION_ACCEPTOR_AWAITING_RP = 10  # Sta10
    COLLISION_REQUESTOR_AWAITING_RP = 11  # Sta11
    COLLISION_ACCEPTOR_AWAITING_LOCAL = 12  # Sta12
    AWAITING_CLOSE = 13  # Sta13: the association no longer exists, ARTIM running


class Event(IntEnum):
    """Events (PS3.8 Table 9-11); the local ones are primitives from our own code."""

    ASSOCIATE_REQUEST = 1  # local A-ASSOCIATE request
    TRANSPORT_CONFIRM = 2
    ASSOCIATE_AC = 3
    ASSOCIATE_RJ = 4
    TRANSPORT_INDICATION = 5
    ASSOCIATE_RQ = 6
    ASSOCIATE_ACCEPT = 7  # local A-ASSOCIATE response (accept)
    ASSOCIATE_REJECT = 8  # local A-ASSOCIATE response (reject)
    PDATA_REQUEST = 9  # local P-DATA request
    PDATA_TF = 10
    RELEASE_REQUEST = 11  # local A-RELEASE request
    RELEASE_RQ = 12
    RELEASE_RP = 13
    RELEASE_RESPONSE = 14  # local A-RELEASE response
    ABORT_REQUEST = 15  # local A-ABORT request
    ABORT = 16
    TRANSPORT_CLOSED = 17
    ARTIM_EXPIRED = 18
    INVALID_PDU = 19


class Action(StrEnum):
    """Actions (PS3.8 Tables 9-6 to 9-9)."""

    AE_1 = "AE-1"  # open the transport connection
    AE_2 = "AE-2"  # send A-ASSOCIATE-RQ
    AE_3 = "AE-3"  # association accepted: confirm
    AE_4 = "AE-4"  # association rejected: confirm, close the transport
    AE_5 = "AE-5"  # transport connection accepted: start ARTIM
    AE_6 = "AE-6"  # A-ASSOCIATE-RQ received: stop ARTIM, hand it to the local user
    AE_7 = "AE-7"  # send A-ASSOCIATE-AC
    AE_8 = "AE-8"  # send A-ASSOCIATE-RJ, start ARTIM
    DT_1 = "DT-1"  # send P-DATA-TF
    DT_2 = "DT-2"  # P-DATA-TF received: hand it to the local user
    AR_1 = "AR-1"  # send A-RELEASE-RQ
    AR_2 = "AR-2"  # A-RELEASE-RQ received: hand it to the local user
    AR_3 = "AR-3"  # A-RELEASE-RP received: confirm, close the transport
    AR_4 = "AR-4"  # send A-RELEASE-RP, start ARTIM
    AR_5 = "AR-5"  # stop ARTIM
    AR_6 = "AR-6"  # P-DATA-TF received while awaiting A-RELEASE-RP
    AR_7 = "AR-7"  # send P-DATA-TF while the peer awaits our A-RELEASE-RP
    AR_8 = "AR-8"  # release collision
    AR_9 = "AR-9"  # send A-RELEASE-RP (collision, requestor side)
    AR_10 = "AR-10"  # A-RELEASE-RP received (collision, acceptor side)
    AA_1 = "AA-1"  # send A-ABORT (service user), start ARTIM
    AA_2 = "AA-2"  # stop ARTIM, close the transport
    AA_3 = "AA-3"  # A-ABORT received: indicate, close the transport
    AA_4 = "AA-4"  # transport closed by the peer: indicate A-P-ABORT
    AA_5 = "AA-5"  # stop ARTIM
    AA_6 = "AA-6"  # ignore the PDU
    AA_7 = "AA-7"  # send A-ABORT
    AA_8 = "AA-8"  # send A-ABORT (service provider), indicate A-P-ABORT, start ARTIM


_S, _E, _A = State, Event, Action
_TABLE: dict[tuple[State, Event], tuple[Action, State]] = {
    (_S.IDLE, _E.ASSOCIATE_REQUEST): (_A.AE_1, _S.AWAITING_TRANSPORT_OPEN),
    (_S.IDLE, _E.TRANSPORT_INDICATION): (_A.AE_5, _S.AWAITING_ASSOCIATE_RQ),
    (_S.AWAITING_TRANSPORT_OPEN, _E.TRANSPORT_CONFIRM): (_A.AE_2, _S.AWAITING_ASSOCIATE_AC),
    (_S.AWAITING_TRANSPORT_OPEN, _E.ABORT_REQUEST): (_A.AA_2, _S.IDLE),
    (_S.AWAITING_TRANSPORT_OPEN, _E.TRANSPORT_CLOSED): (_A.AA_4, _S.IDLE),
    (_S.AWAITING_ASSOCIATE_RQ, _E.ASSOCIATE_RQ): (_A.AE_6, _S.AWAITING_LOCAL_ASSOCIATE_RESPONSE),
    (_S.AWAITING_ASSOCIATE_RQ, _E.ABORT): (_A.AA_2, _S.IDLE),
    (_S.AWAITING_ASSOCIATE_RQ, _E.TRANSPORT_CLOSED): (_A.AA_5, _S.IDLE),
    (_S.AWAITING_ASSOCIATE_RQ, _E.ARTIM_EXPIRED): (_A.AA_2, _S.IDLE),
    (_S.AWAITING_LOCAL_ASSOCIATE_RESPONSE, _E.ASSOCIATE_ACCEPT): (_A.AE_7, _S.ESTABLISHED),
    (_S.AWAITING_LOCAL_ASSOCIATE_RESPONSE, _E.ASSOCIATE_REJECT): (_A.AE_8, _S.AWAITING_CLOSE),
    (_S.AWAITING_ASSOCIATE_AC, _E.ASSOCIATE_AC): (_A.AE_3, _S.ESTABLISHED),
    (_S.AWAITING_ASSOCIATE_AC, _E.ASSOCIATE_RJ): (_A.AE_4, _S.IDLE),
    (_S.ESTABLISHED, _E.PDATA_REQUEST): (_A.DT_1, _S.ESTABLISHED),
    (_S.ESTABLISHED, _E.PDATA_TF): (_A.DT_2, _S.ESTABLISHED),
    (_S.ESTABLISHED, _E.RELEASE_REQUEST): (_A.AR_1, _S.AWAITING_RELEASE_RP),
    (_S.ESTABLISHED, _E.RELEASE_RQ): (_A.AR_2, _S.AWAITING_LOCAL_RELEASE_RESPONSE),
    (_S.AWAITING_RELEASE_RP, _E.PDATA_TF): (_A.AR_6, _S.AWAITING_RELEASE_RP),
    (_S.AWAITING_RELEASE_RP, _E.RELEASE_RP): (_A.AR_3, _S.IDLE),
    # AR-8 goes to Sta9 for the requestor and Sta10 for the acceptor: see transition().
    (_S.AWAITING_RELEASE_RP, _E.RELEASE_RQ): (_A.AR_8, _S.COLLISION_REQUESTOR_AWAITING_LOCAL),
    (_S.AWAITING_LOCAL_RELEASE_RESPONSE, _E.PDATA_REQUEST): (_A.AR_7, _S.AWAITING_LOCAL_RELEASE_RESPONSE),
    (_S.AWAITING_LOCAL_RELEASE_RESPONSE, _E.RELEASE_RESPONSE): (_A.AR_4, _S.AWAITING_CLOSE),
    (_S.COLLISION_REQUESTOR_AWAITING_LOCAL, _E.RELEASE_RESPONSE): (_A.AR_9, _S.COLLISION_REQUESTOR_AWAITING_RP),
    (_S.COLLISION_ACCEPTOR_AWAITING_RP, _E.RELEASE_RP): (_A.AR_10, _S.COLLISION_ACCEPTOR_AWAITING_LOCAL),
    (_S.COLLISION_REQUESTOR_AWAITING_RP, _E.RELEASE_RP): (_A.AR_3, _S.IDLE),
    (_S.COLLISION_ACCEPTOR_AWAITING_LOCAL, _E.RELEASE_RESPONSE): (_A.AR_4, _S.AWAITING_CLOSE),
    (_S.AWAITING_CLOSE, _E.ASSOCIATE_RQ): (_A.AA_7, _S.AWAITING_CLOSE),
    (_S.AWAITING_CLOSE, _E.ABORT): (_A.AA_2, _S.IDLE),
    (_S.AWAITING_CLOSE, _E.TRANSPORT_CLOSED): (_A.AR_5, _S.IDLE),
    (_S.AWAITING_CLOSE, _E.ARTIM_EXPIRED): (_A.AA_2, _S.IDLE),
    (_S.AWAITING_CLOSE, _E.INVALID_PDU): (_A.AA_7, _S.AWAITING_CLOSE),
}
_PDU_EVENTS = frozenset(
    {_E.ASSOCIATE_AC, _E.ASSOCIATE_RJ, _E.ASSOCIATE_RQ, _E.PDATA_TF, _E.RELEASE_RQ, _E.RELEASE_RP, _E.INVALID_PDU}
)
# Sta3 to Sta12: the cells the table above leaves out are the same for every one of these states.
_LIVE = frozenset(State) - {
    State.IDLE,
    State.AWAITING_ASSOCIATE_RQ,
    State.AWAITING_TRANSPORT_OPEN,
    State.AWAITING_CLOSE,
}


COLLISION_AWAITING_LOCAL = frozenset(
    {State.COLLISION_REQUESTOR_AWAITING_LOCAL, State.COLLISION_ACCEPTOR_AWAITING_LOCAL}
)


class InvalidPrimitive(RuntimeError):
    """A local primitive that PS3.8 does not allow in the current state (a bug in the caller)."""


def transition(state: State, event: Event, *, requestor: bool) -> tuple[Action, State]:
    """The action and next state for ``event`` in ``state`` (PS3.8 Table 9-10); raises InvalidPrimitive."""
    cell = _TABLE.get((state, event))
    if cell is not None:
        if cell[0] is Action.AR_8 and not requestor:
            return Action.AR_8, State.COLLISION_ACCEPTOR_AWAITING_RP
        return cell
    if state == State.AWAITING_ASSOCIATE_RQ and event in _PDU_EVENTS:
        return Action.AA_1, State.AWAITING_CLOSE
    if state == State.AWAITING_CLOSE and event in _PDU_EVENTS:
        return Action.AA_6, State.AWAITING_CLOSE
    if state in _LIVE:
        if event in _PDU_EVENTS:
            return Action.AA_8, State.AWAITING_CLOSE
        if event == Event.ABORT:
            return Action.AA_3, State.IDLE
        if event == Event.TRANSPORT_CLOSED:
            return Action.AA_4, State.IDLE
        if event == Event.ABORT_REQUEST:
            return Action.AA_1, State.AWAITING_CLOSE
    raise InvalidPrimitive(f"{event.name} is not possible in state Sta{state.value} ({state.name})")
