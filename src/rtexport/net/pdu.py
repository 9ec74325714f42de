"""Upper Layer PDUs (PS3.8 9.3): records and their encoding, pure bytes in and out, no I/O.

``encode(pdu) -> bytes`` and ``decode(pdu_type, body) -> PDU`` cover the seven PDUs. Sending stored datasets
does not build :class:`PDataTF` records: :func:`pack_pdata_header` writes the 12 bytes in front of each
fragment straight into the send buffer, so the file's bytes are copied once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # DICOM Application Context Name (PS3.7 A.2.1)

HEADER = struct.Struct(">BBI")  # PDU type, reserved, PDU length (PS3.8 9.3.1)
HEADER_SIZE = HEADER.size
# PDU header + PDV item length, presentation context ID, message control header (PS3.8 9.3.5, E.2)
PDATA_HEADER = struct.Struct(">BBIIBB")
PDATA_HEADER_SIZE = PDATA_HEADER.size
# A P-DATA-TF PDU's length counts the PDV's length field, context ID and control byte besides the data.
PDV_OVERHEAD = 6

_ITEM = struct.Struct(">BBH")
_AE_LENGTH = 16


class PDUType(IntEnum):
    """PDU types (PS3.8 Table 9-11)."""

    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07

    @property
    def title(self) -> str:
        """The name PS3.8 gives it, e.g. A-ASSOCIATE-RQ."""
        return self.name.replace("_", "-") if self is PDUType.P_DATA_TF else "A-" + self.name.replace("_", "-")


class AbortSource(IntEnum):
    """A-ABORT source (PS3.8 Table 9-26)."""

    SERVICE_USER = 0
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """A-ABORT reason when the service provider aborts (PS3.8 Table 9-26)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class ContextResult(IntEnum):
    """Result of one presentation context in A-ASSOCIATE-AC (PS3.8 Table 9-18)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class PDUError(ValueError):
    """Bytes that are not a valid PDU; ``reason`` goes into the A-ABORT that answers them."""

    def __init__(self, message: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ProposedContext:
    """A presentation context as proposed in A-ASSOCIATE-RQ (PS3.8 9.3.2.2); the ID is odd, 1 to 255."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class ContextAnswer:
    """A presentation context as answered in A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""

    context_id: int
    result: ContextResult
    transfer_syntax: str = ""


@dataclass(frozen=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4): which roles the requestor takes for a SOP class."""

    sop_class_uid: str
    scu: bool
    scp: bool


@dataclass(frozen=True)
class UserInformation:
    """The User Information item (PS3.8 9.3.2.3, PS3.7 D.3.3); other sub-items are ignored when read."""

    max_pdu_length: int = 0  # 0: no limit (PS3.8 D.1)
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    roles: tuple[RoleSelection, ...] = ()


@dataclass(frozen=True)
class AssociateRQ:
    called_ae: str
    calling_ae: str
    contexts: tuple[ProposedContext, ...]
    user: UserInformation
    application_context: str = APPLICATION_CONTEXT


@dataclass(frozen=True)
class AssociateAC:
    called_ae: str
    calling_ae: str
    contexts: tuple[ContextAnswer, ...]
    user: UserInformation
    application_context: str = APPLICATION_CONTEXT


@dataclass(frozen=True)
class AssociateRJ:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent, 2 transient; source and reason per Table 9-21."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True)
class PDV:
    """One presentation data value: a fragment of a command set or a data set (PS3.8 9.3.5.1, E.2)."""

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | memoryview  # received: a view into its PDU's body, not a copy

    @property
    def control(self) -> int:
        return (1 if self.is_command else 0) | (2 if self.is_last else 0)


@dataclass(frozen=True)
class PDataTF:
    pdvs: tuple[PDV, ...]


@dataclass(frozen=True)
class ReleaseRQ:
    pass


@dataclass(frozen=True)
class ReleaseRP:
    pass


@dataclass(frozen=True)
class Abort:
    source: int = AbortSource.SERVICE_USER
    reason: int = AbortReason.NOT_SPECIFIED


_TYPES = frozenset(PDUType)
_TYPE_OF: dict[type, PDUType] = {
    AssociateRQ: PDUType.ASSOCIATE_RQ,
    AssociateAC: PDUType.ASSOCIATE_AC,
    AssociateRJ: PDUType.ASSOCIATE_RJ,
    PDataTF: PDUType.P_DATA_TF,
    ReleaseRQ: PDUType.RELEASE_RQ,
    ReleaseRP: PDUType.RELEASE_RP,
    Abort: PDUType.ABORT,
}

PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort


def _items(data: bytes, start: int = 0) -> list[tuple[int, bytes]]:
    """Variable items of an A-ASSOCIATE PDU (or sub-items of one), each (type, value)."""
    out = []
    pos = start
    while pos < len(data):
        if pos + _ITEM.size > len(data):
            raise PDUError("truncated item header in an A-ASSOCIATE PDU")
        item_type, _, length = _ITEM.unpack_from(data, pos)
        end = pos + _ITEM.size + length
        if end > len(data):
            raise PDUError(f"item 0x{item_type:02x} runs past the end of its PDU")
        out.append((item_type, data[pos + _ITEM.size : end]))
        pos = end
    return out


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02x} of {len(value)} bytes does not fit in a 2-byte length")
    return _ITEM.pack(item_type, 0, len(value)) + value


def _uid(value: bytes) -> str:
    # UIDs in PDU items are not padded (PS3.8 9.3.2.2.1), but some peers pad them like data elements.
    return value.decode("ascii", "replace").rstrip("\0 ")


def ae_title_bytes(title: str) -> bytes:
    """An AE title as the 16-byte field of A-ASSOCIATE PDUs (PS3.8 9.3.2); raises ValueError when invalid."""
    try:
        raw = title.encode("ascii")
    except UnicodeEncodeError as e:
        raise ValueError(f"AE title {title!r} is not plain ASCII") from e
    if not raw.strip(b" ") or len(raw) > _AE_LENGTH or b"\\" in raw or any(c < 0x20 for c in raw):
        raise ValueError(f"AE title {title!r} must be 1 to 16 characters, without backslash or control characters")
    return raw.ljust(_AE_LENGTH, b" ")


def _ae(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip(" \0")


def _encode_user(user: UserInformation) -> bytes:
    sub = _item(0x51, struct.pack(">I", user.max_pdu_length))
    sub += _item(0x52, user.implementation_class_uid.encode("ascii"))
    for role in user.roles:
        uid = role.sop_class_uid.encode("ascii")
        sub += _item(0x54, struct.pack(">H", len(uid)) + uid + bytes([int(role.scu), int(role.scp)]))
    if user.implementation_version_name:
        sub += _item(0x55, user.implementation_version_name.encode("ascii"))
    return _item(0x50, sub)


def _decode_user(value: bytes) -> UserInformation:
    max_pdu, impl_uid, impl_version = 0, "", ""
    roles: list[RoleSelection] = []
    for sub_type, sub in _items(value):
        if sub_type == 0x51:
            if len(sub) != 4:
                raise PDUError("Maximum Length sub-item is not 4 bytes long")
            max_pdu = struct.unpack(">I", sub)[0]
        elif sub_type == 0x52:
            impl_uid = _uid(sub)
        elif sub_type == 0x55:
            impl_version = sub.decode("ascii", "replace").strip()
        elif sub_type == 0x54:
            if len(sub) < 4:
                raise PDUError("truncated SCP/SCU Role Selection sub-item")
            n = struct.unpack_from(">H", sub)[0]
            if len(sub) != 2 + n + 2:
                raise PDUError("SCP/SCU Role Selection sub-item has the wrong length")
            roles.append(RoleSelection(_uid(sub[2 : 2 + n]), bool(sub[2 + n]), bool(sub[3 + n])))
    return UserInformation(max_pdu, impl_uid, impl_version, tuple(roles))


def answer_contexts(
    proposed: tuple[ProposedContext, ...], abstract_syntaxes: tuple[str, ...], transfer_syntaxes: tuple[str, ...]
) -> tuple[ContextAnswer, ...]:
    """An acceptor's answer to each proposed context (PS3.8 Table 9-18): accepted with the first of our
    ``transfer_syntaxes`` it offers, else rejected (abstract syntax, or transfer syntaxes, not supported)."""
    answers = []
    for ctx in proposed:
        if ctx.abstract_syntax not in abstract_syntaxes:
            answers.append(ContextAnswer(ctx.context_id, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        ts = next((t for t in transfer_syntaxes if t in ctx.transfer_syntaxes), None)
        if ts is None:
            answers.append(ContextAnswer(ctx.context_id, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED))
        else:
            answers.append(ContextAnswer(ctx.context_id, ContextResult.ACCEPTANCE, ts))
    return tuple(answers)


def type_of(record: PDU) -> PDUType:
    return _TYPE_OF[type(record)]


def _associate_body(called: str, calling: str, variable: bytes) -> bytes:
    return struct.pack(">HH", 1, 0) + ae_title_bytes(called) + ae_title_bytes(calling) + bytes(32) + variable


def encode(pdu: PDU) -> bytes:
    """The PDU's bytes, header included."""
    if isinstance(pdu, PDataTF):
        body = b"".join(struct.pack(">IBB", len(v.data) + 2, v.context_id, v.control) + v.data for v in pdu.pdvs)
        return HEADER.pack(PDUType.P_DATA_TF, 0, len(body)) + body
    if isinstance(pdu, AssociateRQ):
        variable = _item(0x10, pdu.application_context.encode("ascii"))
        for ctx in pdu.contexts:
            sub = _item(0x30, ctx.abstract_syntax.encode("ascii"))
            sub += b"".join(_item(0x40, ts.encode("ascii")) for ts in ctx.transfer_syntaxes)
            variable += _item(0x20, bytes([ctx.context_id, 0, 0, 0]) + sub)
        body = _associate_body(pdu.called_ae, pdu.calling_ae, variable + _encode_user(pdu.user))
        return HEADER.pack(PDUType.ASSOCIATE_RQ, 0, len(body)) + body
    if isinstance(pdu, AssociateAC):
        variable = _item(0x10, pdu.application_context.encode("ascii"))
        for answer in pdu.contexts:
            sub = _item(0x40, answer.transfer_syntax.encode("ascii"))
            variable += _item(0x21, bytes([answer.context_id, 0, answer.result, 0]) + sub)
        body = _associate_body(pdu.called_ae, pdu.calling_ae, variable + _encode_user(pdu.user))
        return HEADER.pack(PDUType.ASSOCIATE_AC, 0, len(body)) + body
    if isinstance(pdu, AssociateRJ):
        return HEADER.pack(PDUType.ASSOCIATE_RJ, 0, 4) + bytes([0, pdu.result, pdu.source, pdu.reason])
    if isinstance(pdu, Abort):
        return HEADER.pack(PDUType.ABORT, 0, 4) + bytes([0, 0, pdu.source, pdu.reason])
    kind = PDUType.RELEASE_RQ if isinstance(pdu, ReleaseRQ) else PDUType.RELEASE_RP
    return HEADER.pack(kind, 0, 4) + bytes(4)


def pack_pdata_header(buf: bytearray, pos: int, context_id: int, control: int, length: int) -> None:
    """Write the header of a P-DATA-TF PDU holding one PDV of ``length`` bytes at ``buf[pos:pos + 12]``."""
    PDATA_HEADER.pack_into(buf, pos, PDUType.P_DATA_TF, 0, length + PDV_OVERHEAD, length + 2, context_id, control)


def pdata_header(context_id: int, control: int, length: int) -> bytes:
    return PDATA_HEADER.pack(PDUType.P_DATA_TF, 0, length + PDV_OVERHEAD, length + 2, context_id, control)


def _decode_pdata(body: bytes | bytearray | memoryview) -> PDataTF:
    pdvs = []
    pos = 0
    view = memoryview(body)  # each PDV's data is a view: the data set is copied once, when its message is whole
    while pos < len(body):
        if pos + 6 > len(body):
            raise PDUError("truncated PDV item in a P-DATA-TF PDU")
        length, context_id, control = struct.unpack_from(">IBB", body, pos)
        if length < 2 or pos + 4 + length > len(body):
            raise PDUError(f"PDV item length {length} does not fit its P-DATA-TF PDU")
        pdvs.append(PDV(context_id, bool(control & 1), bool(control & 2), view[pos + 6 : pos + 4 + length]))
        pos += 4 + length
    if not pdvs:
        raise PDUError("P-DATA-TF PDU without any PDV")
    return PDataTF(tuple(pdvs))


def _decode_associate(pdu_type: int, body: bytes) -> AssociateRQ | AssociateAC:
    if len(body) < 68:
        raise PDUError("A-ASSOCIATE PDU shorter than its fixed fields")
    if not struct.unpack_from(">H", body)[0] & 1:
        raise PDUError("protocol version 1 not supported by the peer")
    called, calling = _ae(body[4:20]), _ae(body[20:36])
    app_context = ""
    proposed: list[ProposedContext] = []
    answers: list[ContextAnswer] = []
    user = UserInformation()
    for item_type, value in _items(body, 68):
        if item_type == 0x10:
            app_context = _uid(value)
        elif item_type in (0x20, 0x21):
            if len(value) < 4:
                raise PDUError("truncated presentation context item")
            subs = _items(value, 4)
            syntaxes = tuple(_uid(v) for t, v in subs if t == 0x40)
            if item_type == 0x20:
                abstract = next((_uid(v) for t, v in subs if t == 0x30), "")
                proposed.append(ProposedContext(value[0], abstract, syntaxes))
            else:
                try:
                    result = ContextResult(value[2])
                except ValueError as e:
                    raise PDUError(f"presentation context result {value[2]} is not defined") from e
                answers.append(ContextAnswer(value[0], result, syntaxes[0] if syntaxes else ""))
        elif item_type == 0x50:
            user = _decode_user(value)
    if pdu_type == PDUType.ASSOCIATE_RQ:
        return AssociateRQ(called, calling, tuple(proposed), user, app_context)
    return AssociateAC(called, calling, tuple(answers), user, app_context)


def decode(pdu_type: int, body: bytes | bytearray | memoryview) -> PDU:
    """The PDU record from its type and body (the bytes after the 6-byte header); raises PDUError."""
    if pdu_type == PDUType.P_DATA_TF:
        return _decode_pdata(body)
    if pdu_type in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC):
        return _decode_associate(pdu_type, bytes(body))
    if pdu_type not in _TYPES:
        raise PDUError(f"unknown PDU type 0x{pdu_type:02x}", AbortReason.UNRECOGNIZED_PDU)
    if len(body) != 4:
        raise PDUError(f"{PDUType(pdu_type).title} PDU of {len(body)} bytes; it has 4")
    if pdu_type == PDUType.ASSOCIATE_RJ:
        return AssociateRJ(body[1], body[2], body[3])
    if pdu_type == PDUType.ABORT:
        return Abort(body[2], body[3])
    return ReleaseRQ() if pdu_type == PDUType.RELEASE_RQ else ReleaseRP()
