"""An association slot of a requestor: opened on demand, reopened after a loss, every wait bounded by the
operation's deadline; a failure to open says why in the words of :mod:`.hints`."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from rtexport.dicom.common import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from rtexport.errors import SendError
from rtexport.net.association import MAX_PDU_LENGTH, Association, AssociationLost, AssociationRejected
from rtexport.net.dimse import Dimse
from rtexport.net.hints import connect_hint
from rtexport.net.outcome import Destination
from rtexport.net.pdu import AssociateRQ, ProposedContext, RoleSelection, UserInformation, ae_title_bytes
from rtexport.net.transport import Deadline, Timeouts

LOGGER = logging.getLogger(__name__)


class ConnectFailed(Exception):
    """No association could be opened; the message says why and what to check. ``expired``: the operation's
    deadline passed while trying."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def check_ae_titles(dest: Destination, calling_ae: str) -> None:
    """Raise SendError when either AE title cannot go into an A-ASSOCIATE-RQ."""
    for title, which in ((dest.ae_title, "the server's"), (calling_ae, "our (calling)")):
        try:
            ae_title_bytes(title)
        except ValueError as e:
            raise SendError(f"{dest}: {which} AE title is invalid: {e}") from e


@dataclass
class Link:
    """One association slot to ``dest``, reopened after a loss."""

    dest: Destination
    calling_ae: str
    contexts: tuple[ProposedContext, ...]
    timeouts: Timeouts
    ssl_context: ssl.SSLContext | None
    deadline: Deadline | None = None
    roles: tuple[RoleSelection, ...] = ()
    dimse: Dimse | None = None

    def open(self) -> Dimse:
        """The established association's DIMSE layer, opening one when there is none. Raises ConnectFailed."""
        if self.dimse is not None and self.dimse.assoc.established:
            return self.dimse
        user = UserInformation(MAX_PDU_LENGTH, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, self.roles)
        rq = AssociateRQ(self.dest.ae_title, self.calling_ae, self.contexts, user)
        if self.deadline is not None and self.deadline.expired():
            raise ConnectFailed(f"not reopened: {self.deadline.why()}", expired=True)
        connect_s = self.timeouts.connect
        if self.deadline is not None:
            connect_s = max(min(connect_s, self.deadline.remaining()), 1e-3)
        LOGGER.debug("opening an association to %s as %s", self.dest, self.calling_ae)
        try:
            assoc = Association.request(
                rq,
                lambda: self.dest.open_socket(connect_s, self.ssl_context),
                timeouts=self.timeouts,
                deadline=self.deadline,
                label=str(self.dest),
            )
        except (OSError, AssociationRejected, AssociationLost) as e:
            expired = self.deadline is not None and self.deadline.expired()
            why = self.deadline.why() if expired and self.deadline is not None else self.hint(e)
            LOGGER.info("association to %s failed: %s", self.dest, why)
            raise ConnectFailed(why, expired=expired) from e
        self.dimse = Dimse(assoc)
        return self.dimse

    def hint(self, e: BaseException) -> str:
        tls = self.dest.tls
        return connect_hint(
            e,
            host=self.dest.host,
            port=self.dest.port,
            called_ae=self.dest.ae_title,
            calling_ae=self.calling_ae,
            tls=tls is not None,
            has_cert=tls is not None and tls.cert_file is not None,
        )

    def abort(self) -> None:
        if self.dimse is not None:
            self.dimse.assoc.abort()

    def close(self) -> None:
        if self.dimse is not None:
            self.dimse.assoc.release()
            self.dimse = None
