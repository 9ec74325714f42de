"""Export benchmark: a generated 512×512 course (structure set, plan, plan dose, three beam doses) to a folder.

Prints the export time and its ratio to ``cp -r`` of the same bytes (and to ``cp -r`` + ``sync``, since the export
fsyncs every file), measured in the same run, and the export's peak memory for 100 and 300 slices, each measured in
a fresh process. Run: ``python benchmarks/bench_export.py`` (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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
isocenter_mm = [0.0, -100.0, 0.0]
ssd_mm = 1000
weight = 1.0
cutout_mm = [[-40, -30], [40, -30], [40, 30], [-40, 30]]
{bolus}
"""


def setup(home: Path, slices: int) -> None:
    from rtexport.demo.beamdata import demo_site
    from rtexport.demo.phantom import PhantomSpec, write_phantom
    from rtexport.services import compute_dose
    from rtexport.workspace import Workspace
    from rtexport.workspace.workspace import Role

    ws = Workspace.init(home, demo_site())
    spec = PhantomSpec(rows=512, columns=512, pixel_mm=0.9, slices=slices, slice_mm=1.0, seed=f"bench{slices}")
    write_phantom(home / "incoming", spec)
    ws.import_course(home / "incoming", "B1")
    shutil.rmtree(home / "incoming")
    beams = "".join(
        BEAM.format(name=n, energy=e, gantry=g, bolus=b)
        for n, e, g, b in [
            ("A", 9, 0, 'bolus = { thickness_mm = 5, margin_mm = 10, material = "Superflab" }'),
            ("B", 12, 10, ""),
            ("C", 6, 350, ""),
        ]
    )
    ws.load_plan(PLAN.format(beams=beams))
    compute_dose(ws, "BENCH", grid_mm=2.5)
    ws.add_user("phys", Role.PHYSICIST, "benchmark-pass")
    ws.authorize("BENCH", "phys", "benchmark-pass")
    ws.close()


def child_export(home: Path, out: Path) -> None:
    """In a fresh process: export everything, print seconds and peak RSS as JSON."""
    from rtexport.export.gate import Item
    from rtexport.export.pipeline import export_to_folder
    from rtexport.workspace import Workspace

    ws = Workspace.open(home)
    t0 = time.perf_counter()
    prep, report = export_to_folder(ws, "BENCH", tuple(Item), out)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "files": len(report.written), "bytes": prep.total_bytes}))


def run_export(home: Path, out: Path) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, __file__, "--child", str(home), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2, metavar=("HOME", "OUT"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.child:
        child_export(Path(args.child[0]), Path(args.child[1]))
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
        exp, cp, cps = [], [], []
        for k in range(args.rounds):
            exp.append(run_export(home, root / f"export{k}")["seconds"])
            cp.append(timed(["cp", "-r", str(staging), str(root / f"cp{k}")]))
            cps.append(timed(["sh", "-c", f"cp -r '{staging}' '{root / f'cps{k}'}' && sync"]))
        e, c, s = min(exp), min(cp), min(cps)
        print(f"export of {len(list(staging.iterdir()))} files, {size / 1e6:.0f} MB (best of {args.rounds}):")
        print(f"  rtexport export      {e:6.2f} s  {size / 1e6 / e:7.0f} MB/s")
        print(f"  cp -r                {c:6.2f} s  {size / 1e6 / c:7.0f} MB/s   ratio export/cp       {e / c:.2f}")
        print(f"  cp -r && sync        {s:6.2f} s  {size / 1e6 / s:7.0f} MB/s   ratio export/cp+sync  {e / s:.2f}")
        print(f"peak memory of the export process: 100 slices {peaks[100]:.0f} MB, 300 slices {peaks[300]:.0f} MB")


if __name__ == "__main__":
    main()
