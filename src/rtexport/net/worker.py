"""The workers of a send: each takes the next object of the current phase, sends it on its association slot,
reopens a lost association and sends again what was not confirmed, backs off on 0xA7xx, and reads, checks and
encodes its next object while the server answers the last one. :class:`Run` is what they share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic

from pynetdicom.status import STATUS_WARNING, code_to_category

from rtexport.net.association import AssociationLost
from rtexport.net.dimse import Dimse, Outgoing, status_meaning
from rtexport.net.link import ConnectFailed, Link
from rtexport.net.outcome import InstanceOutcome, InstanceResult, T
from rtexport.net.store import DamagedInstance, Item, Ready, encode, store
from rtexport.net.transport import Deadline

LOGGER = logging.getLogger(__name__)


class _Halt(Exception):
    """Stop the whole send: the object being sent is a damaged stored copy (the message says how)."""


@dataclass
class Run(Generic[T]):
    """Shared state of one send, guarded by one condition: the queue of a phase, results, counters."""

    progress: Callable[[InstanceResult[T]], None] | None
    retries: int
    backoff: float
    deadline: Deadline
    results: dict[int, InstanceResult[T]] = field(default_factory=dict)
    connect_failures: list[str] = field(default_factory=list)
    pending: deque[Item[T]] = field(default_factory=deque)
    in_flight: int = 0
    workers: int = 0
    phase: int = 0
    finished: bool = False
    halted: str | None = None  # why the send stopped early (a damaged stored copy)
    gave_up: str | None = None  # why the send stopped at its deadline
    bytes_sent: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, result: InstanceResult[T], index: int, nbytes: int = 0) -> None:
        with self.cond:
            self.results[index] = result
            if result.stored:
                self.bytes_sent += nbytes
                self.deadline.progress()
            if self.progress is not None:
                self.progress(result)

    def phase_done(self) -> bool:
        return (not self.pending and self.in_flight == 0) or self.workers == 0

    def stopped(self) -> bool:
        return bool(self.halted or self.gave_up or self.finished)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` (a back-off) or until the deadline; False when the deadline passed."""
        time.sleep(max(0.0, min(seconds, self.deadline.remaining())))
        if self.deadline.expired():
            with self.cond:
                self.gave_up = self.gave_up or self.deadline.why()
            return False
        return True


def _answered(obj: T, status: int, comment: str) -> InstanceResult[T] | None:
    """The result of a status, or None for out of resources (0xA7xx, PS3.4 B.2.3: worth a retry)."""
    meaning = status_meaning(status) + (f": {comment}" if comment else "")
    if status == 0x0000:
        return InstanceResult(obj, InstanceOutcome.STORED, status, meaning)
    if code_to_category(status) == STATUS_WARNING:
        return InstanceResult(obj, InstanceOutcome.WARNING, status, meaning)
    if 0xA700 <= status <= 0xA7FF:
        return None
    LOGGER.warning("%s %s refused by the server: status 0x%04X (%s)", obj.kind, obj.sop_instance_uid, status, meaning)
    return InstanceResult(obj, InstanceOutcome.FAILED, status, meaning)


def _send_one(
    link: Link, item: Item[T], run: Run[T], ready: Ready = None, meanwhile: Callable[[Dimse], None] | None = None
) -> InstanceResult[T]:
    """Send one object, reopening a lost association and backing off on 0xA7xx.

    Raises ConnectFailed when the association cannot be reopened (the item is then still unsent), and _Halt
    when the stored copy is damaged."""
    obj, lost, busy = item.obj, 0, 0
    while True:
        try:
            dimse = link.open()
        except ConnectFailed as e:
            if lost > run.retries or e.expired:
                raise
            lost += 1
            if not run.wait(run.backoff * lost):
                raise ConnectFailed(f"not reopened: {run.gave_up}", expired=True) from e
            continue
        try:
            answer, ready = store(dimse, item, ready, meanwhile)  # a retry sends the same message
        except AssociationLost as e:
            ready, lost = None, lost + 1
            if e.expired or lost > run.retries:
                if e.expired:
                    with run.cond:
                        run.gave_up = run.gave_up or (run.deadline.why())
                tries = f"{lost} attempt{'s' if lost > 1 else ''}"
                return InstanceResult(obj, InstanceOutcome.NOT_SENT, None, f"not confirmed: {e} ({tries})")
            LOGGER.info("association to %s lost (%s); sending again (attempt %d of %d)", link.dest, e, lost + 1,
                        run.retries + 1)  # fmt: skip
            continue
        except DamagedInstance as e:
            link.abort()  # before the last fragment: the receiver discards the incomplete data set
            raise _Halt(str(e)) from e
        except OSError as e:
            link.abort()  # the message may be half sent
            return InstanceResult(obj, InstanceOutcome.FAILED, None, f"cannot read the file: {e}")
        if isinstance(answer, str):
            return InstanceResult(obj, InstanceOutcome.FAILED, None, answer)
        result = _answered(obj, *answer)
        if result is not None:
            return result
        if busy >= run.retries:
            return InstanceResult(obj, InstanceOutcome.FAILED, answer[0], status_meaning(answer[0]))
        busy += 1
        LOGGER.info("%s is out of resources (status 0x%04X); retrying in %g s", link.dest, answer[0],
                    run.backoff * 2 ** (busy - 1))  # fmt: skip
        if not run.wait(run.backoff * 2 ** (busy - 1)):
            return InstanceResult(obj, InstanceOutcome.NOT_SENT, answer[0], f"not stored: {run.gave_up}")


@dataclass
class _Ahead(Generic[T]):
    """The next object of a worker, taken and encoded while the previous response was awaited."""

    item: Item[T]
    ready: Ready = None


class Worker(Generic[T]):
    """Takes objects of the current phase until none is left. The association is opened before taking one,
    so a server that queues extra associations (storescp without --fork) delays nothing. While a response is
    awaited the next object is read, checked and encoded, so the time between two stores is a send."""

    def __init__(self, link: Link, run: Run[T], phase: int) -> None:
        self.link, self.run, self.phase = link, run, phase
        self.ahead: _Ahead[T] | None = None

    def take_next(self, dimse: Dimse) -> None:
        run = self.run
        with run.cond:
            if self.ahead is not None or run.phase != self.phase or not run.pending or run.stopped():
                return
            ahead = self.ahead = _Ahead(run.pending.popleft())
            run.in_flight += 1
        try:
            encoded = encode(dimse, ahead.item)
        except (DamagedInstance, OSError) as e:
            ahead.ready = e  # raised when its turn comes, after the response now awaited
        else:
            ahead.ready = encoded if isinstance(encoded, Outgoing) else None

    def _next(self) -> tuple[Item[T], Ready] | None:
        run = self.run
        with run.cond:
            if run.finished:
                self.link.close()
                return None
            if self.ahead is not None:
                if run.halted or run.gave_up:
                    return None
                taken, self.ahead = self.ahead, None
                return taken.item, taken.ready
            if run.phase != self.phase or not run.pending or run.stopped():
                return None
            run.in_flight += 1
            return run.pending.popleft(), None

    def __call__(self) -> None:
        run = self.run
        try:
            while True:
                try:
                    self.link.open()
                except ConnectFailed as e:
                    with run.cond:
                        run.connect_failures.append(str(e))
                    return
                taken = self._next()
                if taken is None:
                    return
                item, ready = taken
                try:
                    result = _send_one(self.link, item, run, ready, self.take_next)
                except ConnectFailed as e:
                    with run.cond:
                        run.pending.appendleft(item)
                        run.in_flight -= 1
                        run.connect_failures.append(str(e))
                    return
                except _Halt as halt:
                    result = InstanceResult(item.obj, InstanceOutcome.FAILED, None, str(halt))
                    with run.cond:
                        run.halted = (
                            f"not sent: the send stopped because the stored copy of "
                            f"{item.obj.kind} {item.obj.sop_instance_uid} is damaged"
                        )
                run.record(result, item.index, item.length)
                with run.cond:
                    run.in_flight -= 1
        finally:
            with run.cond:
                if self.ahead is not None:  # taken but not sent: back to the queue
                    run.pending.appendleft(self.ahead.item)
                    run.in_flight -= 1
                if run.phase == self.phase:
                    run.workers -= 1
                run.cond.notify_all()
