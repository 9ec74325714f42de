"""How fast the command line answers: ``rtexport --help``, ``plan list`` and ``plan show`` against a bare
``python -c pass`` measured in the same run (each a fresh process, as a user's shell starts it), alternating.

Prints the wall time of each (minimum and median over the rounds), what it adds to the bare interpreter, and the
modules that took longest to import (``python -X importtime``) for each command.

With ``--dose``: ``rtexport dose CW-E1`` on the full demo workspace (a fresh copy each round, made outside the
timing, so every round computes and builds everything), against ``python -c pass`` and ``rtexport --version``,
with the processor time (user + system) each used, which a busy machine stretches less than the wall time;
``--peer SRC`` times the same command from another source tree (e.g. main's ``src``) in the same rounds.

    python benchmarks/bench_cli.py [--rounds 15]
    python benchmarks/bench_cli.py --dose [--rounds 5] [--peer ../main/src]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rtexport
from rtexport.demo.phantom import PhantomSpec
from rtexport.services.demo import build_demo_workspace

SOURCE = str(Path(rtexport.__file__).resolve().parents[1])
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "rtexport --help": ["-m", "rtexport", "--help"],
    "rtexport plan list": ["-m", "rtexport", "plan", "list"],
    "rtexport plan show": ["-m", "rtexport", "plan", "show", "CW-E1"],
}


def once(args: list[str], env: dict[str, str]) -> float:
    return timed(args, env)[0]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and processor time (user + system, all threads) of one fresh process: the processor time says
    what a command costs when other work shares the cores and stretches its wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def slowest_imports(args: list[str], env: dict[str, str], top: int = 5) -> list[tuple[str, float]]:
    """The top-level imports (of this process's own modules) that took longest, cumulative, in ms."""
    r = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, capture_output=True, text=True)
    found: list[tuple[str, float]] = []
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            depth = len(name) - len(name.lstrip())
            if depth <= 2:  # an import made by the program, not one nested deep inside a package
                found.append((name.strip(), int(parts[1]) / 1000))
    return sorted(found, key=lambda x: -x[1])[:top]


def dose(rounds: int, peer: str | None) -> None:
    """``rtexport dose`` of the demo plan, each round on a fresh copy of the workspace."""
    with tempfile.TemporaryDirectory(prefix="bench-dose-") as tmp:
        pristine, home = Path(tmp) / "pristine", Path(tmp) / "home"
        build_demo_workspace(pristine).close()
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RTEXPORT_HOME": str(home)}
        sources = {"this tree": SOURCE, **({"peer": str(Path(peer).resolve())} if peer else {})}
        runs: dict[str, tuple[list[str], dict[str, str], bool]] = {
            "python -c pass": (["-c", "pass"], {**base, "PYTHONPATH": SOURCE}, False),
            "rtexport --version": (["-m", "rtexport", "--version"], {**base, "PYTHONPATH": SOURCE}, False),
        }
        for name, src in sources.items():
            runs[f"rtexport dose CW-E1 ({name})"] = (
                ["-m", "rtexport", "dose", "CW-E1"],
                {**base, "PYTHONPATH": src},
                True,
            )
        times: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(rounds + 1):  # the first round warms the page cache and the .pyc files
            for name, (argv, env, fresh) in runs.items():
                if fresh:
                    shutil.rmtree(home, ignore_errors=True)
                    shutil.copytree(pristine, home)
                took, used = timed(argv, env)
                if r:
                    times[name].append(took)
                    cpu[name].append(used)
        print(f"{rounds} rounds, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"{'command':<36} {'min s':>7} {'median s':>9} {'CPU median s':>13}")
        for name, values in times.items():
            used = statistics.median(cpu[name])
            print(f"{name:<36} {min(values):7.3f} {statistics.median(values):9.3f} {used:13.3f}")
        if peer:
            ours, theirs = (statistics.median(times[f"rtexport dose CW-E1 ({n})"]) for n in sources)
            print(f"median ratio this tree / peer: {ours / theirs:.2f}")
            ours, theirs = (statistics.median(cpu[f"rtexport dose CW-E1 ({n})"]) for n in sources)
            print(f"CPU median ratio this tree / peer: {ours / theirs:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dose", action="store_true", help="time 'rtexport dose' of the demo plan instead")
    parser.add_argument("--peer", metavar="SRC", help="with --dose: also time this source tree")
    args = parser.parse_args()
    if args.dose:
        dose(args.rounds, args.peer)
        return
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        home = Path(tmp) / "home"
        spec = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0)
        build_demo_workspace(home, spec=spec).close()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SOURCE, "RTEXPORT_HOME": str(home)}
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for argv in COMMANDS.values():
            once(argv, env)  # warm the page cache and the .pyc files
        for _ in range(args.rounds):
            for name, argv in COMMANDS.items():
                times[name].append(once(argv, env))
        bare = min(times["python -c pass"])
        print(f"{args.rounds} rounds, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"{'command':<22} {'min s':>7} {'median s':>9} {'min − bare s':>13}")
        for name, values in times.items():
            best = min(values)
            print(f"{name:<22} {best:7.3f} {statistics.median(values):9.3f} {best - bare:13.3f}")
        for name, argv in COMMANDS.items():
            if name != "python -c pass":
                top = ", ".join(f"{m} {ms:.0f} ms" for m, ms in slowest_imports(argv, env))
                print(f"slowest imports of {name}: {top}")


if __name__ == "__main__":
    main()
