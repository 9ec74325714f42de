"""Throughput of receiving a 300-slice 512×512 CT pushed by DCMTK storescu: rtexport's receiver against DCMTK storescp.

Both receivers get the same files from the same sender (``storescu``, one association, TCP_NODELAY=1) in the same
run, in turn, the order rotating every round; each round starts with an empty workspace or output folder. Prints
MB/s (file bytes / wall time of the storescu run) and the ratio to storescp: of the medians, and the median of the
ratios measured in each round (paired).

Fairness: rtexport's receiver makes every instance durable (its journal entry fdatasync'ed) before it answers
success; DCMTK 3.6.7's storescp has no option to fsync and writes each file into the page cache before it answers.
``--storescp-sync`` runs ``sync`` after storescp's run and counts it in storescp's time (an upper bound on what
making its files durable costs, paid once instead of per instance).

So the ratio can be read against physics, the script splits rtexport's time per instance (its receiving thread's
CPU, and the wait for the entry's head and fdatasync) and measures, before and between the rounds, the disk's own
floor: one instance's bytes written into a file written ahead and fdatasync'ed, and the fdatasync alone once their
writeback ran (the flush). One association sends the next instance only after the answer to the last, so with the
disk busy for the first figure per instance, a durable receiver's rate cannot beat it however little CPU it uses.

``--senders N`` pushes with N ``storescu`` processes at once, the files shared round robin (storescp then runs
with ``--fork``): rtexport's journal makes the entries of parallel associations durable with shared syncs.

    python benchmarks/bench_receive.py [--rounds 3] [--slices 300] [--senders 1] [--storescp-sync]
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
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
from rtexport.net.receiver import ReceiveStats
from rtexport.services.incoming import incoming_sets, receiver
from rtexport.workspace import Workspace

AET = "RTXRECV"
Receiver = Callable[[Path, int], float]  # (round folder, slices) -> seconds
SPLITS: list[ReceiveStats] = []  # rtexport's own split of each round's time


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


def disk_floor(folder: Path, size: int, n: int = 30) -> tuple[float, float]:
    """Seconds (medians) to make one instance's ``size`` bytes durable in a file written ahead (the journal's
    case): pwrite then fdatasync (the disk writes them and flushes), and the same when their writeback already
    ran (sync_file_range WAIT|WRITE|WAIT, not counted) so that fdatasync only flushes."""
    path = folder / "sync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    block = os.urandom(size)
    cold, flush = [], []
    try:
        os.write(fd, bytes(n * size))
        os.fsync(fd)
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, block, i * size)
            os.fdatasync(fd)
            cold.append(time.perf_counter() - t0)
            os.pwrite(fd, block[::-1], i * size)
            _wait_writeback(fd, i * size, size)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            flush.append(time.perf_counter() - t0)
        return statistics.median(cold), statistics.median(flush)
    finally:
        os.close(fd)
        path.unlink()


def _wait_writeback(fd: int, offset: int, size: int) -> None:
    call = ctypes.CDLL(None, use_errno=True).sync_file_range
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call(fd, offset, size, 1 | 2 | 4)  # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER


def rtexport_receiver(ct: list[Path]) -> Receiver:
    def run(work: Path, slices: int) -> float:
        site = demo_site()
        site.pop("uid_root")
        site["dicom"]["receiver"] = {"ae_title": AET, "port": 11112}
        with Workspace.init(work / "home", site) as ws, receiver(ws, port=free_port()) as scp:
            seconds = _push(ct, scp.port, AET)
            scp.settle(60)  # the associations' threads have ended: their figures are in
            SPLITS.append(dataclasses.replace(scp.stats))
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


def _explain(
    runs: dict[str, list[float]], floors: list[tuple[float, float]], size: int, slices: int, senders: int
) -> None:
    """Rtexport's time per instance split, against the disk's own floor measured between the rounds (with
    several senders, CPU and waits are summed over their associations, which overlap)."""
    per = {name: statistics.median(size / 1e6 / v for v in mbs) for name, mbs in runs.items()}  # seconds
    cpu = statistics.median(s.cpu_s / slices for s in SPLITS)
    keep = statistics.median(s.keep_s / slices for s in SPLITS)
    cold = statistics.median(f[0] for f in floors)
    flush = statistics.median(f[1] for f in floors)
    print(f"\nper instance (medians, us): storescp {per['storescp'] * 1e6:.0f}; rtexport {per['rtexport'] * 1e6:.0f} "
          f"of which its receiving thread's CPU {cpu * 1e6:.0f} (kernel included) and the wait for the head's "
          f"write and fdatasync {keep * 1e6:.0f}")  # fmt: skip
    print(f"the disk's floor for one durable instance of {size / 1e3:.0f} kB: pwrite + fdatasync {cold * 1e6:.0f} us, "
          f"fdatasync after its writeback {flush * 1e6:.0f} us (between rounds, this run)")  # fmt: skip
    if senders > 1:
        return
    rest = statistics.median(size / 1e6 / v - s.keep_s / slices for v, s in zip(runs["rtexport"], SPLITS, strict=True))
    print(f"rtexport less its wait for the disk: {rest * 1e6:.0f} us an instance, {per['storescp'] / rest:.2f}x "
          f"storescp's rate (the sender, the network and rtexport's CPU)")  # fmt: skip


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
        print(
            f"{args.slices} CT files, {total / 1e6:.1f} MB, {args.senders} storescu at once; storescp fsync: no "
            f"(sync after its run: {'yes' if args.storescp_sync else 'no'}); rtexport: durable before each answer"
        )
        size = total // args.slices
        floors = [disk_floor(Path(tmp), size)]
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
                split = ""
                if name == "rtexport" and SPLITS:
                    cpu, keep = SPLITS[-1].cpu_s / args.slices, SPLITS[-1].keep_s / args.slices
                    split = f" (receiving CPU {cpu * 1e6:4.0f} us, making it durable {keep * 1e6:4.0f} us)"
                print(f"round {r + 1} {name:<10} {seconds:6.2f} s {total / 1e6 / seconds:7.1f} MB/s "
                      f"{seconds / args.slices * 1e3:5.2f} ms an instance{split}", flush=True)  # fmt: skip
            floors.append(disk_floor(Path(tmp), size))
    _explain(runs, floors, size, args.slices, args.senders)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    paired = statistics.median(a / b for a, b in zip(runs["rtexport"], runs["storescp"], strict=True))
    print(f"\nmedian over {args.rounds} rounds: storescp {medians['storescp']:.1f} MB/s, rtexport "
          f"{medians['rtexport']:.1f} MB/s: {medians['rtexport'] / medians['storescp']:.2f}x of the medians, "
          f"{paired:.2f}x paired")  # fmt: skip
    if math.isnan(paired):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
