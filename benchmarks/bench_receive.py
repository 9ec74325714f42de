"""Throughput of receiving a 300-slice 512×512 CT pushed by DCMTK storescu: rtexport's receiver against DCMTK storescp.

Both receivers get the same files from the same sender (``storescu``, one association, TCP_NODELAY=1) in the same
run, in turn, the order rotating every round; each round starts with an empty workspace or output folder. Prints
MB/s (file bytes / wall time of the storescu run) and the ratio to storescp: of the medians, and the median of the
ratios measured in each round (paired).

Fairness: rtexport's receiver fsyncs every instance (file and folder) and commits its row before it answers
success; DCMTK 3.6.7's storescp has no option to fsync and writes each file into the page cache before it answers.
``--storescp-sync`` runs ``sync`` after storescp's run and counts it in storescp's time (an upper bound on what
making its files durable costs, paid once instead of per instance). Before the figures, the script measures what
one ``fdatasync`` costs on this disk: a floor for rtexport of one sync per instance on one association.

``--senders N`` pushes with N ``storescu`` processes at once, the files shared round robin (storescp then runs
with ``--fork``): rtexport's journal makes the entries of parallel associations durable with shared syncs.

    python benchmarks/bench_receive.py [--rounds 3] [--slices 300] [--senders 1] [--storescp-sync]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.orthanc import free_port
from tests.support.storescp import StoreSCP, storescu

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.services.incoming import incoming_sets, receiver
from rtexport.workspace import Workspace

AET = "RTXRECV"
Receiver = Callable[[Path, int], float]  # (round folder, slices) -> seconds


def _push(folders: list[Path], port: int, called: str) -> float:
    """Wall time of one storescu per folder, all at once."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        runs = list(pool.map(lambda f: storescu([f], port, called, calling="BENCH", timeout=600), folders))
    seconds = time.perf_counter() - t0
    for done in runs:
        if done.returncode != 0:
            raise SystemExit(f"storescu failed: {done.stderr[-2000:]}")
    return seconds


def sync_cost(folder: Path, n: int = 50) -> float:
    """Seconds one 4 KiB write and fdatasync take into a file written ahead (the journal's case)."""
    path = folder / "sync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, bytes(n * 4096))
        os.fsync(fd)
        t0 = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, os.urandom(4096), i * 4096)
            os.fdatasync(fd)
        return (time.perf_counter() - t0) / n
    finally:
        os.close(fd)
        path.unlink()


def rtexport_receiver(ct: list[Path]) -> Receiver:
    def run(work: Path, slices: int) -> float:
        site = demo_site()
        site.pop("uid_root")
        site["dicom"]["receiver"] = {"ae_title": AET, "port": 11112}
        with Workspace.init(work / "home", site) as ws, receiver(ws, port=free_port()) as scp:
            seconds = _push(ct, scp.port, AET)
            scp.settle(60)
            (found,) = incoming_sets(ws)
            if len(found.images) != slices:
                raise SystemExit(f"rtexport received {len(found.images)} of {slices}")
        return seconds

    return run


def storescp_receiver(ct: list[Path], sync: bool) -> Receiver:
    def run(work: Path, slices: int) -> float:
        with StoreSCP(work / "out", aet=AET, fork=len(ct) > 1) as scp:
            seconds = _push(ct, scp.port, AET)
            if sync:
                t0 = time.perf_counter()
                subprocess.run(["sync"], check=True)
                seconds += time.perf_counter() - t0
            got = len(list((work / "out").iterdir()))
        if got != slices:
            raise SystemExit(f"storescp wrote {got} of {slices}")
        return seconds

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument("--storescp-sync", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-receive-") as tmp:
        ct = Path(tmp) / "ct"
        spec = PhantomSpec(rows=512, columns=512, slices=args.slices, pixel_mm=0.9, slice_mm=1.0)
        write_phantom(ct, spec)
        (ct / "RS.phantom.dcm").unlink()
        total = sum(p.stat().st_size for p in ct.iterdir())
        shares = [Path(tmp) / f"share-{i}" for i in range(args.senders)]
        for share in shares:
            share.mkdir()
        for i, path in enumerate(sorted(ct.iterdir())):
            path.rename(shares[i % args.senders] / path.name)
        floor = sync_cost(Path(tmp))
        print(
            f"{args.slices} CT files, {total / 1e6:.1f} MB, {args.senders} storescu at once; storescp fsync: no "
            f"(sync after its run: {'yes' if args.storescp_sync else 'no'}); rtexport: durable before each answer"
        )
        print(f"one fdatasync here: {floor * 1e3:.1f} ms; {args.slices} of them in a row: {floor * args.slices:.2f} s")
        receivers = {"storescp": storescp_receiver(shares, args.storescp_sync), "rtexport": rtexport_receiver(shares)}
        runs: dict[str, list[float]] = {name: [] for name in receivers}
        names = list(receivers)
        for r in range(args.rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                work = Path(tmp) / f"{name}-{r}"
                work.mkdir()
                seconds = receivers[name](work, args.slices)
                shutil.rmtree(work)
                runs[name].append(total / 1e6 / seconds)
                print(f"round {r + 1} {name:<10} {seconds:6.2f} s {total / 1e6 / seconds:7.1f} MB/s "
                      f"{seconds / args.slices * 1e3:5.2f} ms an instance", flush=True)  # fmt: skip
    medians = {name: statistics.median(v) for name, v in runs.items()}
    paired = statistics.median(a / b for a, b in zip(runs["rtexport"], runs["storescp"], strict=True))
    print(f"\nmedian over {args.rounds} rounds: storescp {medians['storescp']:.1f} MB/s, rtexport "
          f"{medians['rtexport']:.1f} MB/s: {medians['rtexport'] / medians['storescp']:.2f}x of the medians, "
          f"{paired:.2f}x paired")  # fmt: skip
    if math.isnan(paired):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
