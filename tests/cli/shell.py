"""The environment of a user's shell for `python -m rtexport`: a plain PATH, a terminal width, and the rtexport
under test (the same source tree the test imports, whatever is installed).

Each ``rtexport`` run is a process of its own with its own environment, working folder, standard streams and exit
code. To spare every run the second an interpreter takes to import rtexport's libraries, the runs are forked from
a launcher process that imported them once (started with the same shell environment, stopped by PID when the
tests end); the fork then runs ``rtexport/__main__.py`` as ``python -m rtexport`` does, rtexport's own modules
imported anew in it. RTEXPORT_TEST_SPAWN=1 starts a new interpreter for every run instead."""

from __future__ import annotations

import atexit
import json
import locale
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, TextIO

import rtexport

SOURCE = str(Path(rtexport.__file__).parents[1])

# The launcher: imports the libraries rtexport uses (not rtexport: its modules are imported anew by each run), then
# forks a run for each request on its socket: the request's argv, environment and folder, and four file descriptors
# (standard input, output and error, and a socket on which a thread answers the run's PID, then its exit code as
# subprocess reports it).
LAUNCHER = r"""
import importlib, json, os, pkgutil, runpy, socket, sys, threading, time, traceback
import rtexport
for found in pkgutil.walk_packages(rtexport.__path__, "rtexport."):
    if not found.name.endswith(".__main__"):
        importlib.import_module(found.name)
import rich.console, rich.markup, rich.progress, rich.table, uvicorn, weasyprint  # what commands import when run
for name in [m for m in sys.modules if m == "rtexport" or m.startswith("rtexport.")]:
    del sys.modules[name]
sock = socket.socket(fileno=int(sys.argv[1]))


def run(request, fds):
    sock.close()
    os.close(fds[3])
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    sys.argv = ["rtexport", *request["args"]]
    code = 0
    try:
        runpy.run_module("rtexport", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def answer(pid, reply):
    with socket.socket(fileno=reply) as s:
        s.sendall(b"%d\n" % pid)
        s.sendall(b"%d\n" % os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


while True:
    message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
    if not message:
        break
    pid = os.fork()
    if pid == 0:
        run(json.loads(message), fds)
    for fd in fds[:3]:
        os.close(fd)
    threading.Thread(target=answer, args=(pid, fds[3]), daemon=True).start()
"""


def shell_env(columns: int = 200, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "COLUMNS": str(columns), "PYTHONPATH": SOURCE, **extra}


class _Launcher:
    """The launcher process of this test process, started at its first use."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=shell_env(),
        )
        theirs.close()
        self.sock = ours
        self.lock = threading.Lock()
        atexit.register(self.stop)

    def stop(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)

    def start(self, args: list[str], streams: tuple[int, int, int], cwd: Path | None, env: dict[str, str]) -> Forked:
        """A run of ``rtexport ARGS`` with these standard input, output and error."""
        ours, theirs = socket.socketpair()
        with theirs:
            request = {"args": args, "cwd": str(cwd or Path.cwd()), "env": env}
            with self.lock:
                socket.send_fds(self.sock, [json.dumps(request).encode()], [*streams, theirs.fileno()])
        answers = ours.makefile("rb")
        ours.close()  # the file keeps the socket
        return Forked(int(answers.readline()), answers)


class Forked:
    """A run forked by the launcher: what tests use of :class:`subprocess.Popen` (its standard output a pipe,
    its standard error a file)."""

    def __init__(self, pid: int, answers: BinaryIO) -> None:
        self.pid, self._answers = pid, answers
        self.returncode: int | None = None
        self.stdout: TextIO | None = None
        self._stderr: BinaryIO | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                os.kill(self.pid, signal.SIGKILL)

            timer = threading.Timer(timeout, expire) if timeout is not None else None
            if timer is not None:
                timer.start()
            try:
                self.returncode = int(self._answers.readline())
            finally:
                if timer is not None:
                    timer.cancel()
                self._answers.close()
            if expired.is_set():
                raise subprocess.TimeoutExpired(["rtexport"], timeout or 0)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._answers], [], [], 0)[0]:
            self.wait()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """The rest of its standard output and its standard error, once it has ended."""
        out, err = "", b""
        if self.stdout is not None and not self.stdout.closed:
            out = self.stdout.read()
            self.stdout.close()
        self.wait(timeout)
        if self._stderr is not None and not self._stderr.closed:
            self._stderr.seek(0)
            err = self._stderr.read()
            self._stderr.close()
        return out, _text(err)


def _text(data: bytes) -> str:
    """What ``subprocess.run(text=True)`` makes of a stream: decoded, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


Process = subprocess.Popen[str] | Forked  # a started rtexport, as start_rtexport gives it
_launcher: _Launcher | None = None


def _the_launcher() -> _Launcher:
    global _launcher
    if _launcher is None or _launcher.proc.poll() is not None:
        _launcher = _Launcher()
    return _launcher


def run_rtexport(
    home: Path,
    *args: str,
    stdin: str = "",
    columns: int = 200,
    cwd: Path | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``rtexport ARGS`` in a real process, the workspace given by RTEXPORT_HOME, in a terminal ``columns`` wide."""
    environment = shell_env(columns, RTEXPORT_HOME=str(home), **env)
    if os.environ.get("RTEXPORT_TEST_SPAWN") == "1":
        return subprocess.run(
            [sys.executable, "-m", "rtexport", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=environment,
        )
    with tempfile.TemporaryFile() as i, tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
        i.write(stdin.encode())
        i.seek(0)
        code = _the_launcher().start(list(args), (i.fileno(), o.fileno(), e.fileno()), cwd, environment).wait(timeout)
        o.seek(0)
        e.seek(0)
        return subprocess.CompletedProcess(["rtexport", *args], code, _text(o.read()), _text(e.read()))


def start_rtexport(home: Path, *args: str) -> Process:
    """``rtexport ARGS`` started in a process of its own (a long-running one: a receiver, the server), reading
    nothing, its standard output a pipe to read as it goes, the workspace given by RTEXPORT_HOME."""
    environment = shell_env(RTEXPORT_HOME=str(home))
    if os.environ.get("RTEXPORT_TEST_SPAWN") == "1":
        return subprocess.Popen(
            [sys.executable, "-m", "rtexport", *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    read, write = os.pipe()
    err = tempfile.TemporaryFile()  # noqa: SIM115 (the run's standard error, closed by communicate)
    try:
        with open(os.devnull, "rb") as nothing:
            forked = _the_launcher().start(list(args), (nothing.fileno(), write, err.fileno()), None, environment)
    finally:
        os.close(write)
    forked.stdout = open(read, encoding=locale.getpreferredencoding(False))  # noqa: SIM115 (it outlives this)
    forked._stderr = err
    return forked
