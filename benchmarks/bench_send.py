"""Throughput of sending a 300-slice 512×512 CT to Orthanc: rtexport's send_objects against DCMTK storescu.

Both go to the same private Orthanc (TCP_NODELAY=1, fsync as configured by default) in the same run, alternating,
with Orthanc emptied between runs. Prints MB/s (file bytes / wall time) for each and the ratio.
``--receiver storescp`` sends to DCMTK ``storescp --ignore --fork`` instead, which measures the senders alone.

    python benchmarks/bench_send.py [--rounds 3] [--slices 300] [--associations 1 2 3] [--receiver storescp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.orthanc import Orthanc
from tests.support.storescp import STORESCU, StoreSCP

from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.export.send import Destination, read_objects, send_objects

CALLING_AE = "RTXBENCH"


def run_storescu(dest: Destination, folder: Path) -> float:
    env = dict(os.environ, TCP_NODELAY="1")
    args = [str(STORESCU), "-aet", CALLING_AE, "-aec", dest.ae_title, "+sd", "+r", dest.host, str(dest.port)]
    t0 = time.perf_counter()
    subprocess.run([*args, str(folder)], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def run_rtexport(dest: Destination, objects: list[ExportObject], associations: int) -> float:
    t0 = time.perf_counter()
    report = send_objects(objects, dest, CALLING_AE, associations=associations)
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(report.summary())
    return seconds


def rounds(
    n: int,
    runs: dict[str, list[float]],
    dest: Destination,
    folder: Path,
    objects: list[ExportObject],
    clear: Callable[[], None],
    check: Callable[[], None],
) -> None:
    total = sum(o.size for o in objects)
    for r in range(n):
        for name in runs:
            clear()
            if name == "storescu":
                seconds = run_storescu(dest, folder)
            else:
                seconds = run_rtexport(dest, objects, int(name.rsplit("x", 1)[1]))
            check()
            runs[name].append(total / 1e6 / seconds)
            print(f"round {r + 1} {name:<12} {seconds:6.2f} s {total / 1e6 / seconds:7.1f} MB/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--associations", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--receiver", choices=["orthanc", "storescp"], default="orthanc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        folder = Path(tmp) / "ct"
        spec = PhantomSpec(rows=512, columns=512, slices=args.slices, pixel_mm=0.9, slice_mm=1.0)
        t0 = time.perf_counter()
        paths = [p for p in write_phantom(folder, spec) if p.name.startswith("CT")]
        (folder / "RS.phantom.dcm").unlink()  # CT only, for both senders
        objects = read_objects(paths, ObjectKind.CT)
        total = sum(o.size for o in objects)
        print(f"{len(objects)} CT files, {total / 1e6:.1f} MB, written in {time.perf_counter() - t0:.1f} s")
        runs: dict[str, list[float]] = {"storescu": []}
        runs.update({f"rtexport x{n}": [] for n in args.associations})
        if args.receiver == "orthanc":
            with Orthanc(Path(tmp) / "orthanc") as orthanc:
                dest = Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port)

                def check() -> None:
                    if orthanc.count_instances() != len(objects):
                        raise SystemExit(f"Orthanc holds {orthanc.count_instances()} of {len(objects)}")

                rounds(args.rounds, runs, dest, folder, objects, orthanc.clear, check)
        else:
            with StoreSCP(Path(tmp) / "scp-out", fork=True, ignore=True) as scp:
                dest = Destination(scp.aet, "127.0.0.1", scp.port)
                rounds(args.rounds, runs, dest, folder, objects, lambda: None, lambda: None)
        ref = statistics.median(runs["storescu"])
        print("\nmedian MB/s (ratio to storescu)")
        for name, values in runs.items():
            med = statistics.median(values)
            print(f"  {name:<12} {med:7.1f} MB/s  {med / ref:5.2f}x   runs: {', '.join(f'{v:.0f}' for v in values)}")


if __name__ == "__main__":
    main()
