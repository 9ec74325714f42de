"""Independent computations shared among forked copies of this process, for work the interpreter's lock holds.

A beam's dose is numpy work, but much of it in many small steps whose Python between them holds the interpreter's
lock: two beams on two threads of one process took about as long as one after the other. A forked child has an
interpreter (and lock) of its own and everything already built (the medium, the imported modules) without copying
it, so each share of the work runs on its own core. A child only computes and writes its pickled results to a
pipe, then ends without running any of this process's exit handlers; it never touches the workspace.

Where a child fails in any way (an error, a result that does not unpickle, a killed child), its share is returned
as missing and the caller computes it here, so every error is raised in this process as if nothing had been
forked. Where fork is not available (not Linux), the shares run on threads instead.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

T = TypeVar("T")

CAN_FORK = sys.platform == "linux" and hasattr(os, "fork")


def _child(task: Callable[[], T], write_fd: int) -> None:
    """In the child: compute, write the pickled result (nothing on failure), end at once."""
    try:
        try:
            payload = pickle.dumps(task(), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # any failure: the parent computes this share itself
            payload = b""
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
    finally:
        os._exit(0)


def _collect(pid: int, read_fd: int) -> object | None:
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    if not payload:
        return None
    try:
        result: object = pickle.loads(payload)  # our own child's bytes, through a pipe only it holds
    except Exception:  # unreadable: the parent computes this share itself
        return None
    return result


def shared(tasks: Sequence[Callable[[], T]]) -> list[T | None]:
    """Run ``tasks`` at once: the first here, each other one in a forked child (on threads where fork is not
    available). Returns their results in order; None for a task that failed (raised, or its child failed): the
    caller recomputes it here to raise its error. A task here that raises is returned as None too."""
    if not CAN_FORK:
        return _threads(tasks)
    children: list[tuple[int, int] | None] = []  # None: not forked (the caller computes that share here)
    try:
        for task in tasks[1:]:
            children.append(_fork(task))
        first = _here(tasks[0]) if tasks else None
        results: list[T | None] = [first]
        while children:
            child = children.pop(0)
            results.append(None if child is None else cast("T | None", _collect(*child)))
        return results
    finally:  # interrupted: end the children still running
        for child in filter(None, children):
            os.kill(child[0], signal.SIGKILL)
            os.close(child[1])
            os.waitpid(child[0], 0)


def _fork(task: Callable[[], T]) -> tuple[int, int] | None:
    """A child computing ``task``: its process id and the pipe its result comes through; None if none started."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: computed here instead
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        _child(task, write_fd)
    os.close(write_fd)
    return pid, read_fd


def _here(task: Callable[[], T]) -> T | None:
    try:
        return task()
    except Exception:  # recomputed by the caller in order, which raises it then
        return None


def _threads(tasks: Sequence[Callable[[], T]]) -> list[T | None]:
    with ThreadPoolExecutor(max(1, len(tasks)), thread_name_prefix="shared") as pool:
        futures = [pool.submit(_here, task) for task in tasks]
        return [f.result() for f in futures]
