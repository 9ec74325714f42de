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
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import rtexport

SOURCE = str(Path(rtexport.__file__).parents[1])

# The launcher: imports the libraries rtexport uses (not rtexport: its modules are imported anew by each run), then
# forks a run for each request on its socket: the request's argv, environment, folder and the three standard
# streams (passed as file descriptors); it answers the run's PID, then its exit code as subprocess reports it.
LAUNCHER = r"""
import json, os, runpy, socket, sys, time, traceback
import rtexport.cli, rtexport.services.demo, rtexport.services.export, rtexport.services.report
import rtexport.services.dose
for name in [m for m in sys.modules if m == "rtexport" or m.startswith("rtexport.")]:
    del sys.modules[name]
sock = socket.socket(fileno=int(sys.argv[1]))


def run(request, fds):
    sock.close()
    for target, fd in enumerate(fds):
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


while True:
    message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
    if not message:
        break
    pid = os.fork()
    if pid == 0:
        run(json.loads(message), fds)
    for fd in fds:
        os.close(fd)
    sock.sendall(json.dumps(pid).encode() + b"\n")
    sock.sendall(json.dumps(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])).encode() + b"\n")
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
        self.answers = ours.makefile("rb")
        self.lock = threading.Lock()
        atexit.register(self.stop)

    def stop(self) -> None:
        self.answers.close()
        self.sock.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)

    def run(
        self, args: list[str], stdin: str, timeout: float, cwd: Path | None, env: dict[str, str]
    ) -> tuple[int, str, str]:
        with tempfile.TemporaryFile() as i, tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
            i.write(stdin.encode())
            i.seek(0)
            request = {"args": args, "cwd": str(cwd or Path.cwd()), "env": env}
            with self.lock:
                socket.send_fds(self.sock, [json.dumps(request).encode()], [i.fileno(), o.fileno(), e.fileno()])
                pid = int(self.answers.readline())
                expired = threading.Event()

                def expire() -> None:
                    expired.set()
                    os.kill(pid, signal.SIGKILL)

                timer = threading.Timer(timeout, expire)
                timer.start()
                try:
                    code = int(self.answers.readline())
                finally:
                    timer.cancel()
            if expired.is_set():
                raise subprocess.TimeoutExpired(["rtexport", *args], timeout)
            o.seek(0)
            e.seek(0)
            return code, _text(o.read()), _text(e.read())


def _text(data: bytes) -> str:
    """What ``subprocess.run(text=True)`` makes of a stream: decoded, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


_launcher: _Launcher | None = None


def run_rtexport(
    home: Path, *args: str, stdin: str = "", columns: int = 200, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``rtexport ARGS`` in a real process, the workspace given by RTEXPORT_HOME, in a terminal ``columns`` wide."""
    environment = shell_env(columns, RTEXPORT_HOME=str(home), **env)
    if os.environ.get("RTEXPORT_TEST_SPAWN") == "1":
        return subprocess.run(
            [sys.executable, "-m", "rtexport", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            env=environment,
        )
    global _launcher
    if _launcher is None or _launcher.proc.poll() is not None:
        _launcher = _Launcher()
    code, out, err = _launcher.run(list(args), stdin, 120, cwd, environment)
    return subprocess.CompletedProcess(["rtexport", *args], code, out, err)
