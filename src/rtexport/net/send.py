"""Send stored DICOM files to a server: C-ECHO, C-STORE over parallel associations, Storage Commitment.

CT goes first on several associations at once, then RT Structure Set, RT Plan, RT Dose, each kind only after
every object of the kinds before it is stored (they reference them; ``send_dependents`` overrides). Nothing is
lost silently: every object ends STORED, WARNING, FAILED (with the server's status and its meaning) or NOT_SENT
(with the reason). Sending the same objects again is safe: the server keeps one copy per SOP Instance UID.

Each worker reads, checks and encodes its next object while the server works on the previous one, so between
two stores there is only a send (:mod:`.store`). Every wait is bounded: each by its timer, and the whole send by
a :class:`~rtexport.net.association.Deadline` (a total limit, and a limit without anything confirmed), after
which the report names the server and what was and was not confirmed.

Use::

    dest = Destination.from_server(site.dicom.server("archive"))
    echo(dest, "RTEXPORT")
    report = send_objects(objects, dest, "RTEXPORT", commit=True, commit_listen_port=11113)
    if not report.ok:
        print(report.summary())
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pynetdicom.status import VERIFICATION_SERVICE_CLASS_STATUS

from rtexport.errors import SendError
from rtexport.net import commitment
from rtexport.net.association import AssociationLost
from rtexport.net.commitment import request_commitment
from rtexport.net.dimse import Command, CommandField, status_meaning
from rtexport.net.link import ConnectFailed, Link, check_ae_titles
from rtexport.net.outcome import Destination, InstanceOutcome, InstanceResult, SendReport, T
from rtexport.net.pdu import ProposedContext
from rtexport.net.store import (
    IMPLICIT_VR_LE,
    STREAMED_ABOVE,
    Item,
    prepare,
    presentation_contexts,
)
from rtexport.net.transport import Deadline, Timeouts
from rtexport.net.worker import Run, Worker

__all__ = [
    "DEFAULT_ASSOCIATIONS",
    "STREAMED_ABOVE",
    "Destination",
    "InstanceOutcome",
    "InstanceResult",
    "SendReport",
    "echo",
    "request_commitment",
    "send_objects",
    "status_meaning",
]

LOGGER = logging.getLogger(__name__)
VERIFICATION = commitment.VERIFICATION
# Parallel associations for CT: a receiver's thread waits for its disk between instances, and a third association
# fills what two leave idle (benchmarks/bench_send.py, docs/benchmarks.md); the site's dicom.send_associations.
DEFAULT_ASSOCIATIONS = 3
# Send order by SOP class: images, then what references them (PS3.3: RTSTRUCT → images, RTPLAN → RTSTRUCT,
# RTDOSE → RTPLAN). Other classes go last.
_CT, _RS, _RP, _RD = (f"1.2.840.10008.5.1.4.1.1.{n}" for n in ("2", "481.3", "481.5", "481.2"))
_SEND_ORDER = (_CT, _RS, _RP, _RD)
_CLASS_NAMES = {_CT: "CT image", _RS: "RT Structure Set", _RP: "RT Plan", _RD: "RT Dose"}


def _rank(sop_class_uid: str) -> int:
    return _SEND_ORDER.index(sop_class_uid) if sop_class_uid in _SEND_ORDER else len(_SEND_ORDER)


# What C-ECHO proposes (Verification, PS3.4 A): the transfer syntax every AE accepts.
ECHO_SYNTAXES = (IMPLICIT_VR_LE,)
# What the sender stores (the classes an export holds), each with its file's own syntax, explicit and implicit VR LE.
SENT_CLASSES = _SEND_ORDER


def echo(dest: Destination, calling_ae: str, timeout: float = 10) -> None:
    """C-ECHO the destination; raises SendError saying why it failed and what to check."""
    check_ae_titles(dest, calling_ae)
    contexts = (ProposedContext(1, VERIFICATION, ECHO_SYNTAXES),)
    link = Link(dest, calling_ae, contexts, Timeouts.uniform(timeout), dest.ssl_context())
    try:
        dimse = link.open()
    except ConnectFailed as e:
        raise SendError(f"C-ECHO to {dest} failed: {e}") from e
    try:
        if 1 not in dimse.assoc.accepted:
            raise SendError(f"C-ECHO to {dest} failed: the server did not accept the Verification SOP class")
        command = Command(CommandField.C_ECHO_RQ, message_id=dimse.next_message_id(), affected_sop_class=VERIFICATION)
        dimse.send(1, command)
        status = dimse.await_response(command).command.status
    except AssociationLost as e:
        raise SendError(f"C-ECHO to {dest} failed: {e}") from e
    finally:
        link.close()
    if status != 0x0000:
        meaning = status_meaning(status or 0, VERIFICATION_SERVICE_CLASS_STATUS)
        raise SendError(f"C-ECHO to {dest} answered status 0x{status or 0:04X} ({meaning})")
    LOGGER.info("C-ECHO to %s: success", dest)


def _blocked(sop_class: str, objects: Sequence[T], run: Run[T]) -> str | None:
    """Why objects of ``sop_class`` must not go: an object of an earlier class in this send was not stored."""
    own = _CLASS_NAMES.get(sop_class, "object")
    for earlier in _SEND_ORDER[: _rank(sop_class)]:
        indices = [i for i, o in enumerate(objects) if o.sop_class_uid == earlier]
        missing = [i for i in indices if not (i in run.results and run.results[i].stored)]
        if missing:
            name = _CLASS_NAMES[earlier]
            what = f"{len(missing)} of {len(indices)} {name}s" if len(indices) > 1 else f"the {name}"
            verb = "were" if len(missing) > 1 else "was"
            return f"not sent: {what} {verb} not stored, and this {own} depends on them; send again once they are"
    return None


def _run_phase(run: Run[T], phase_items: list[Item[T]], links: list[Link], parallel: bool) -> list[str]:
    """Send one phase's items on ``links`` (all when ``parallel``, else the first); problems of lost links."""
    with run.cond:
        run.pending.extend(phase_items)
        use = links[: min(len(links), len(run.pending))] if parallel else [links[0]]
        run.workers = len(use)
        run.phase += 1
        phase = run.phase
    threads = [threading.Thread(target=Worker(link, run, phase), daemon=True) for link in use]
    for t in threads:
        t.start()
    with run.cond:
        run.cond.wait_for(run.phase_done)
        leftover = list(run.pending)
        run.pending.clear()
    # A link whose opening still hangs keeps its thread (bounded by the deadline); later phases use link 0 only.
    threads[0].join()
    problems = []
    for item in leftover:
        if run.halted:
            reason = run.halted
        elif run.gave_up:
            reason = f"not sent: {run.gave_up}"
        else:
            reason = run.connect_failures[-1] if run.connect_failures else "no association available"
            problems.append(f"association to {links[0].dest} lost and not reopened: {reason}")
        run.record(InstanceResult(item.obj, InstanceOutcome.NOT_SENT, None, reason), item.index)
    return problems


def _send_phases(run: Run[T], objects: Sequence[T], items: list[Item[T]], links: list[Link], dependents: bool
                 ) -> list[str]:  # fmt: skip
    problems: list[str] = []
    for sop_class in dict.fromkeys(it.obj.sop_class_uid for it in items):
        phase_items = [it for it in items if it.obj.sop_class_uid == sop_class]
        skip = run.halted or (f"not sent: {run.gave_up}" if run.gave_up else None)
        skip = skip or (None if dependents else _blocked(sop_class, objects, run))
        if skip:
            for item in phase_items:
                run.record(InstanceResult(item.obj, InstanceOutcome.NOT_SENT, None, skip), item.index)
            continue
        LOGGER.debug("sending %d %s instance(s) to %s", len(phase_items), _CLASS_NAMES.get(sop_class, sop_class),
                     links[0].dest)  # fmt: skip
        # Only CT goes in parallel: later kinds reference earlier ones and go in order on one link.
        problems += _run_phase(run, phase_items, links, parallel=sop_class == _CT)
    return problems


def _gave_up(dest: Destination, why: str, results: Sequence[InstanceResult[T]]) -> str:
    stored = sum(1 for r in results if r.stored)
    return (
        f"gave up on {dest}: {why}; {stored} of {len(results)} objects confirmed stored, "
        f"{len(results) - stored} not confirmed (sending again sends those)"
    )


def _commit(
    stored: Sequence[T],
    dest: Destination,
    calling_ae: str,
    halted: str | None,
    port: int | None,
    host: str,
    timeout: float,
    network_timeout: float,
) -> tuple[tuple[str, ...] | None, tuple[str, ...], str | None]:
    """Ask for storage commitment of what was stored: (committed or None, failed, problem or None)."""
    why_not = None
    if halted:
        why_not = "the send stopped at a damaged stored copy"
    elif port is None:
        why_not = "no port to receive the server's report is configured (dicom.commitment_port)"
    elif not stored:
        why_not = "no object was stored"
    if why_not is not None:
        return None, (), f"storage commitment not requested: {why_not}"
    committed, failed, problem = request_commitment(
        stored, dest, calling_ae, port or 0, listen_host=host, timeout=timeout, network_timeout=network_timeout
    )
    return (None if problem else committed), failed, problem


def _links(items: list[Item[T]], dest: Destination, calling_ae: str, timeouts: Timeouts, deadline: Deadline,
           associations: int) -> list[Link]:  # fmt: skip
    """The association slots of a send, the first one opened (when there is anything to send): SendError when
    it cannot be, or when the server accepted none of the presentation contexts."""
    try:
        contexts = presentation_contexts(items)
    except ValueError as e:
        raise SendError(f"cannot send to {dest}: {e}") from e
    ctx = dest.ssl_context()
    links = [Link(dest, calling_ae, contexts, timeouts, ctx, deadline) for _ in range(associations)]
    LOGGER.info("sending %d objects (%d bytes) to %s as %s on up to %d association(s)", len(items),
                sum(it.length for it in items), dest, calling_ae, associations)  # fmt: skip
    if not items:
        return links
    try:
        first = links[0].open()
    except ConnectFailed as e:
        raise SendError(f"cannot send to {dest}: {e}") from e
    if not first.assoc.accepted:
        links[0].close()
        classes = ", ".join(sorted({it.obj.sop_class_uid for it in items}))
        raise SendError(
            f"cannot send to {dest}: the server accepted none of the {len(contexts)} presentation contexts "
            f"proposed (SOP classes {classes}); it does not store these objects, or not in these transfer syntaxes"
        )
    return links


def send_objects(
    objects: Sequence[T],
    dest: Destination,
    calling_ae: str,
    *,
    progress: Callable[[InstanceResult[T]], None] | None = None,
    commit: bool = False,
    commit_listen_port: int | None = None,
    commit_listen_host: str = "",
    commit_timeout: float = 60,
    associations: int = DEFAULT_ASSOCIATIONS,
    timeout: float = 30,
    artim: float = 5,
    retries: int = 3,
    backoff: float = 0.5,
    send_dependents: bool = False,
    deadline_s: float | None = None,
    idle_s: float | None = 300,
) -> SendReport[T]:
    """C-STORE ``objects`` to ``dest`` as ``calling_ae``; the report says what became of each one.

    CT goes first on up to ``associations`` parallel associations, then RT Structure Set, RT Plan and RT Dose
    in order on one; a kind goes only when every object of the kinds before it was stored, unless
    ``send_dependents``. A lost association (abort, ``timeout`` without answer, closed) is reopened and what
    was not confirmed is sent again, up to ``retries`` times; 0xA7xx (out of resources) is retried after
    ``backoff`` seconds, doubling; other failures are final. ``artim`` bounds the wait for the server to close
    after an abort (PS3.8 ARTIM). The whole send ends within ``deadline_s`` seconds, and when nothing was
    confirmed for ``idle_s`` seconds (None: no such limit); the report then says so, naming the server and
    what was and was not confirmed. ``progress`` is called after each object, from worker threads but never
    concurrently. With ``commit``, Storage Commitment (push model) is asked for the stored objects and the
    server's N-EVENT-REPORT awaited on ``commit_listen_port`` (see :func:`request_commitment`).

    Raises SendError when nothing could be sent: no connection, association rejected, TLS failure.
    """
    if associations < 1:
        raise ValueError("associations must be at least 1")
    check_ae_titles(dest, calling_ae)
    started = time.perf_counter()
    run: Run[T] = Run(progress, retries, backoff, Deadline(deadline_s, idle_s))
    items: list[Item[T]] = []
    for index, obj in enumerate(objects):
        prepared = prepare(index, obj)
        if isinstance(prepared, InstanceResult):
            run.record(prepared, index)
        else:
            items.append(prepared)
    items.sort(key=lambda it: (_rank(it.obj.sop_class_uid), it.index))
    links = _links(items, dest, calling_ae, Timeouts.uniform(timeout, artim), run.deadline, associations)
    try:
        problems = _send_phases(run, objects, items, links, send_dependents)
    finally:
        with run.cond:
            run.finished = True
        links[0].close()
        for link in links[1:]:
            with run.cond:
                if link.dimse is not None and not link.dimse.assoc.closed:
                    link.close()
    seconds = time.perf_counter() - started
    results = tuple(run.results[i] for i in range(len(objects)))
    if run.gave_up:
        problems.insert(0, _gave_up(dest, run.gave_up, results))
    stored = [r.obj for r in results if r.stored]
    LOGGER.info("%d of %d objects stored on %s in %.1f s (%.0f MB/s)", len(stored), len(results), dest, seconds,
                run.bytes_sent / 1e6 / seconds if seconds else 0)  # fmt: skip
    committed: tuple[str, ...] | None = None
    commit_failed: tuple[str, ...] = ()
    if commit:
        committed, commit_failed, problem = _commit(
            stored, dest, calling_ae, run.halted, commit_listen_port, commit_listen_host, commit_timeout, timeout
        )
        if problem:
            problems.append(problem)
    return SendReport(
        dest, results, committed, commit_failed, tuple(dict.fromkeys(problems)), run.bytes_sent, seconds, commit
    )
