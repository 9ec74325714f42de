"""Export benchmark: a generated 512×512 course (structure set, plan, plan dose, three beam doses) to a folder.

Prints the export time and its ratio to ``cp -r`` of the same bytes (and to ``cp -r`` + ``sync``, since the
export fsyncs every file), measured in the same run: the export right after the dose was computed (whose
structure set, plan and doses ``rtexport dose`` built then), the export again, and building plus exporting in one
go; and the peak memory of building and exporting for 100 and 300 slices, each measured in a fresh process.
Run: ``python benchmarks/bench_export.py`` (about seven minutes: each measurement starts after ``--rest`` seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

PLAN = """\
format = 1
id = "BENCH"
label = "Bench"
course = "B1"
machine = "DemoLinac"
ct_curve = "Default"
external = "OUTLINE2"
fractions = 25
prescription_gy = 50.0
[[override]]
structure = "Prosthesis"
material = "Water"
{beams}
"""
BEAM = """
[[beam]]
name = "{name}"
energy_mev = {energy}
applicator = "10x10"
gantry_deg = {gantry}
aim_mm = [0.0, -100.0, 0.0]
ssd_mm = 1000
weight = 1.0
cutout_mm = [[-40, -30], [40, -30], [40, 30], [-40, 30]]
{bolus}
"""


def setup(home: Path, slices: int) -> None:
    from rtexport.demo.beamdata import demo_site
    from rtexport.demo.phantom import PhantomSpec, write_phantom
    from rtexport.model.people import Actor, Role
    from rtexport.services.approval import authorize
    from rtexport.services.courses import import_course
    from rtexport.services.dose import compute_dose
    from rtexport.services.plans import load_plan
    from rtexport.services.users import add_user
    from rtexport.workspace import Workspace

    actor = Actor.here("benchmark")
    ws = Workspace.init(home, demo_site())
    spec = PhantomSpec(rows=512, columns=512, pixel_mm=0.9, slices=slices, slice_mm=1.0, seed=f"bench{slices}")
    write_phantom(home / "incoming", spec)
    import_course(ws, home / "incoming", "B1", actor)
    shutil.rmtree(home / "incoming")
    beams = "".join(
        BEAM.format(name=n, energy=e, gantry=g, bolus=b)
        for n, e, g, b in [
            ("A", 9, 0, 'bolus = { thickness_mm = 5, margin_mm = 10, material = "Superflab" }'),
            ("B", 12, 10, ""),
            ("C", 6, 350, ""),
        ]
    )
    load_plan(ws, PLAN.format(beams=beams), "bench.toml", actor)
    compute_dose(ws, "BENCH", actor, grid_mm=2.5)
    add_user(ws, "phys", Role.PHYSICIST, "benchmark-pass", actor, full_name="Bench^Phys")
    authorize(ws, "BENCH", ("phys", "benchmark-pass"), actor)
    ws.close()


def forget_built(home: Path) -> None:
    """Back to a revision whose export objects were never built: drop them from the workspace and its store."""
    from rtexport.workspace import Workspace

    ws = Workspace.open(home)
    with closing(sqlite3.connect(home / "rtexport.db")) as db, db:
        for (digest,) in db.execute("SELECT sha256 FROM built").fetchall():
            ws.blobs.path(digest).unlink(missing_ok=True)
        db.execute("DELETE FROM built")
    ws.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss would carry over the peak
    of the (large) parent that forked us."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_export(home: Path, out: Path, verify: bool = True) -> None:
    """In a fresh process: prepare the objects (as `rtexport dose` does), then export everything; print seconds
    for each step and peak RSS as JSON. ``verify=False``: the same export with the stored hashes dropped from the
    objects, so nothing is hashed (the kernel copies): what verification costs, measured in the same run."""
    import dataclasses

    from rtexport.export.gate import Item
    from rtexport.model.people import Actor
    from rtexport.services.export import FolderDestination, begin_export, finish_export, prepare
    from rtexport.workspace import Workspace

    ws = Workspace.open(home)
    t0 = time.perf_counter()
    prepare(ws, "BENCH", Actor.here("benchmark"))
    t1 = time.perf_counter()
    run = begin_export(ws, "BENCH", tuple(Item), FolderDestination(out), Actor.here("benchmark"))
    if not verify:
        objects = tuple(dataclasses.replace(o, sha256=None) for o in run.prepared.objects)
        run = dataclasses.replace(run, prepared=dataclasses.replace(run.prepared, objects=objects))
    report = finish_export(ws, run)
    t2 = time.perf_counter()
    peak_mb = peak_rss_mb()
    assert report.written is not None
    result = {"prepare": t1 - t0, "export": t2 - t1, "peak_mb": peak_mb, "files": len(report.written.written)}
    print(json.dumps({**result, "bytes": report.prepared.total_bytes}))


def run_export(home: Path, out: Path, verify: bool = True) -> dict[str, float]:
    flags = [] if verify else ["--unverified"]
    r = subprocess.run(
        [sys.executable, __file__, "--child", str(home), str(out), *flags], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def warm_up(folder: Path) -> None:
    """Read every file of ``folder``, so ``cp`` reads it from memory as the export reads the store it just used
    (the kernel may have reclaimed pages unused for a minute)."""
    for p in folder.iterdir():
        p.read_bytes()


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2, metavar=("HOME", "OUT"))
    ap.add_argument("--unverified", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rest", type=float, default=20.0, help="seconds of rest before each measurement (default 20)")
    args = ap.parse_args()
    if args.child:
        child_export(Path(args.child[0]), Path(args.child[1]), verify=not args.unverified)
        return
    with tempfile.TemporaryDirectory(prefix="rtexport-bench-", dir=Path.cwd()) as tmp:
        root = Path(tmp)
        peaks = {}
        for slices in (100, 300):
            home = root / f"ws{slices}"
            t0 = time.perf_counter()
            setup(home, slices)
            print(f"set-up {slices} slices (generate, import, dose for 3 beams): {time.perf_counter() - t0:.1f} s")
            peaks[slices] = run_export(home, root / f"warm{slices}")["peak_mb"]
        home = root / "ws300"
        staging = root / "same-bytes"
        shutil.copytree(root / "warm300", staging)  # the same files the export writes
        size = sum(p.stat().st_size for p in staging.iterdir())
        prepared: list[float] = []
        cold: list[float] = []
        warm: list[float] = []
        bare: list[float] = []
        cp: list[float] = []
        cps: list[float] = []

        # Every measurement writes a folder of its own and nothing is deleted until the end: on a file system
        # mounted with `discard`, the fsync after a deletion pays for trimming the freed blocks.
        def after_dose(k: int) -> None:
            # a revision whose dose was just computed: its structure set (with bolus), plan and doses are built
            # (`rtexport dose` and `approve` do it), then exported; the export of a prepared revision only copies
            forget_built(home)
            os.sync()
            r = run_export(home, root / f"after-dose{k}")
            prepared.append(r["prepare"])
            cold.append(r["export"])

        def again(k: int, verify: bool) -> None:
            seconds = run_export(home, root / f"{'again' if verify else 'unverified'}{k}", verify=verify)["export"]
            (warm if verify else bare).append(seconds)

        def settle() -> None:
            # Every measurement starts with no dirty pages (fsync on ext4 would flush others' too), and after a
            # rest: this machine's virtual disk writes several times slower for some seconds after a burst of
            # writes (a 161 MB `cp -r` took 0.24-0.40 s right after an export, 0.07 s after 20 s of rest).
            os.sync()
            time.sleep(args.rest)

        steps: list[Callable[[int], None]] = [after_dose, lambda k: again(k, True), lambda k: again(k, False)]
        for k in range(args.rounds):
            for step in steps[k % 3 :] + steps[: k % 3]:  # the three exports take turns going first
                settle()
                step(k)
            settle()
            warm_up(staging)
            cp.append(timed(["cp", "-r", str(staging), str(root / f"cp{k}")]))
            settle()
            warm_up(staging)
            cps.append(timed(["sh", "-c", f"cp -r '{staging}' '{root / f'cps{k}'}' && sync"]))
        b, f, e, u, c, s = min(prepared), min(cold), min(warm), min(bare), min(cp), min(cps)
        mb = size / 1e6
        print(f"export of {len(list(staging.iterdir()))} files, {mb:.0f} MB (best of {args.rounds}):")
        rows = (
            ("export after dose", f),
            ("export again", e),
            ("again, not verified", u),
            ("prepare + export", b + f),
        )
        for name, t in rows:
            print(f"  {name:<24} {t:6.2f} s  {mb / t:7.0f} MB/s   ratio to cp {t / c:5.2f}, to cp+sync {t / s:5.2f}")
        paired = sorted(v / n for v, n in zip(warm, bare, strict=True))
        median = paired[len(paired) // 2]
        print(
            f"  verification costs {100 * (e / u - 1):+.0f} % (best of each), {100 * (median - 1):+.0f} % (median of"
            " the rounds' ratios; the three exports take turns going first)"
        )
        print(f"  cp -r                    {c:6.2f} s  {mb / c:7.0f} MB/s")
        print(f"  cp -r && sync            {s:6.2f} s  {mb / s:7.0f} MB/s")
        print(f"  (prepare: building RS with bolus, RP and 4 RD, done by `rtexport dose`/`approve`: {b:.2f} s)")
        print(f"peak memory of the export process: 100 slices {peaks[100]:.0f} MB, 300 slices {peaks[300]:.0f} MB")


if __name__ == "__main__":
    main()
