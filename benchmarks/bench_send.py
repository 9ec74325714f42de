"""Throughput of sending a 300-slice 512×512 CT to Orthanc: rtexport's sender against DCMTK storescu and pynetdicom.

Every sender sends the same files to the same private Orthanc (TCP_NODELAY=1, fsync as configured by default) in
the same run, in turn, with Orthanc emptied between runs; the order of the senders rotates every round. Prints
MB/s (file bytes / wall time) for each, the ratio to storescu, what verification costs (rtexport hashes
every byte it sends against the stored SHA-256; "unverified" sends objects without a digest), and where the time
goes: the CPU time of the sender (this process, or storescu) and of Orthanc per instance, in microseconds.

pynetdicom is tuned as fairly as we know: TCP_NODELAY on its socket (DCMTK and Orthanc delay their ACKs) and
``STORE_SEND_CHUNKED_DATASET`` (stored bytes streamed, not decoded and re-encoded); N associations are N
threads in one process, as a library sender would run them. ``--receiver storescp`` sends to DCMTK
``storescp --ignore --fork`` instead, which measures the senders alone.

    python benchmarks/bench_send.py [--rounds 3] [--slices 300] [--associations 2 3] [--receiver storescp]
                                    [--no-pynetdicom]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pynetdicom import AE, _config
from tests.support.orthanc import Orthanc
from tests.support.storescp import STORESCU, StoreSCP

from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.export.objects import ExportObject, ObjectKind, read_objects
from rtexport.net.send import DEFAULT_ASSOCIATIONS, Destination, send_objects

CALLING_AE = "RTXBENCH"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"

Sender = Callable[[Destination], None]


class SendFailed(Exception):
    """A run that did not store everything: reported, left out of the medians."""


def storescu(folder: Path) -> Sender:
    def send(dest: Destination) -> None:
        env = dict(os.environ, TCP_NODELAY="1")
        args = [str(STORESCU), "-aet", CALLING_AE, "-aec", dest.ae_title, "+sd", "+r", dest.host, str(dest.port)]
        subprocess.run([*args, str(folder)], env=env, check=True, capture_output=True)

    return send


def pynetdicom(paths: list[Path], associations: int) -> Sender:
    _config.STORE_SEND_CHUNKED_DATASET = True

    def one(dest: Destination, share: list[Path], failures: list[str]) -> None:
        ae = AE(ae_title=CALLING_AE)
        ae.add_requested_context(CT_IMAGE_STORAGE, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            failures.append("association not established")
            return
        assert assoc.dul.socket is not None and assoc.dul.socket.socket is not None
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for path in share:
                status = assoc.send_c_store(path)
                if getattr(status, "Status", None) != 0x0000:
                    failures.append(f"{path.name}: {status or 'association lost (empty response)'}")
                    return
        finally:
            assoc.release()

    def send(dest: Destination) -> None:
        failures: list[str] = []
        threads = [
            threading.Thread(target=one, args=(dest, paths[i::associations], failures)) for i in range(associations)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise SendFailed(f"pynetdicom: {failures[:3]}")

    return send


def rtexport(objects: list[ExportObject], associations: int) -> Sender:
    def send(dest: Destination) -> None:
        report = send_objects(objects, dest, CALLING_AE, associations=associations)
        if not report.ok:
            raise SendFailed(report.summary())

    return send


@dataclasses.dataclass
class Runs:
    """Per sender: MB/s of each round (NaN when it failed), and per instance the CPU µs of sender and receiver."""

    mb_s: dict[str, list[float]]
    sender_us: dict[str, list[float]]
    receiver_us: dict[str, list[float]]
    receiver_queued_us: dict[str, list[float]]
    idle: dict[str, list[float]]


def own_cpu() -> float:
    """CPU seconds of this process and of its finished children (storescu)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_queued(pid: int) -> float:
    """Seconds the threads of a running process have spent ready to run but waiting for a core (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def machine_idle() -> tuple[int, int]:
    """The machine's idle and I/O-wait ticks (no core had work) and all ticks, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


def rounds(
    n: int,
    senders: dict[str, Sender],
    dest: Destination,
    files: tuple[int, int],
    receiver: tuple[Callable[[], None], Callable[[], None], Callable[[], float], Callable[[], float]],
) -> Runs:
    """``files``: how many and their bytes; ``receiver``: empty it, check it holds them all, its CPU seconds, its
    seconds waiting for a core."""
    count, total = files
    clear, check, receiver_cpu, receiver_queued = receiver
    empty: list[dict[str, list[float]]] = [{name: [] for name in senders} for _ in range(5)]
    runs = Runs(*empty)
    names = list(senders)
    for r in range(n):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            clear()
            cpu0, theirs0, queued0, idle0 = own_cpu(), receiver_cpu(), receiver_queued(), machine_idle()
            t0 = time.perf_counter()
            try:
                senders[name](dest)
            except SendFailed as e:
                print(f"round {r + 1} {name:<24} FAILED: {e}", flush=True)
                runs.mb_s[name].append(math.nan)
                continue
            seconds = time.perf_counter() - t0
            mine, theirs = (own_cpu() - cpu0) / count * 1e6, (receiver_cpu() - theirs0) / count * 1e6
            queued = (receiver_queued() - queued0) / count * 1e6
            idle1 = machine_idle()
            idle = (idle1[0] - idle0[0]) / max(1, idle1[1] - idle0[1])
            check()
            figures = (total / 1e6 / seconds, mine, theirs, queued, idle)
            for field, value in zip(dataclasses.fields(runs), figures, strict=True):
                getattr(runs, field.name)[name].append(value)
            print(f"round {r + 1} {name:<24} {seconds:6.2f} s {total / 1e6 / seconds:7.1f} MB/s   per instance: "
                  f"sender CPU {mine:5.0f} µs, receiver CPU {theirs:5.0f} µs, waiting for a core {queued:5.0f} µs; "
                  f"cores idle {idle:4.0%}", flush=True)  # fmt: skip
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--associations", type=int, nargs="+", default=[DEFAULT_ASSOCIATIONS])
    parser.add_argument("--receiver", choices=["orthanc", "storescp"], default="orthanc")
    parser.add_argument("--no-pynetdicom", action="store_true", help="leave pynetdicom out (a shorter run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        folder = Path(tmp) / "ct"
        spec = PhantomSpec(rows=512, columns=512, slices=args.slices, pixel_mm=0.9, slice_mm=1.0)
        t0 = time.perf_counter()
        paths = [p for p in write_phantom(folder, spec) if p.name.startswith("CT")]
        (folder / "RS.phantom.dcm").unlink()  # CT only, for every sender
        plain = read_objects(paths, ObjectKind.CT)
        verified = [dataclasses.replace(o, sha256=hashlib.sha256(o.read_bytes()).hexdigest()) for o in plain]
        total = sum(o.size for o in plain)
        print(f"{len(plain)} CT files, {total / 1e6:.1f} MB, written in {time.perf_counter() - t0:.1f} s")
        senders: dict[str, Sender] = {"storescu": storescu(folder)}
        for n in sorted({1, *args.associations}):
            if not args.no_pynetdicom:
                senders[f"pynetdicom x{n}"] = pynetdicom(paths, n)
            senders[f"rtexport x{n}"] = rtexport(verified, n)
            senders[f"rtexport x{n} unverified"] = rtexport(plain, n)
        if args.receiver == "orthanc":
            with Orthanc(Path(tmp) / "orthanc") as orthanc:
                dest = Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port)

                def check() -> None:
                    if orthanc.count_instances() != len(plain):
                        raise SystemExit(f"Orthanc holds {orthanc.count_instances()} of {len(plain)}")

                if orthanc.process is None:
                    raise SystemExit("Orthanc did not start")
                pid = orthanc.process.pid
                probes = (orthanc.clear, check, lambda: process_cpu(pid), lambda: process_queued(pid))
                runs = rounds(args.rounds, senders, dest, (len(plain), total), probes)
        else:
            with StoreSCP(Path(tmp) / "scp-out", fork=True, ignore=True) as scp:
                dest = Destination(scp.aet, "127.0.0.1", scp.port)
                nothing = (lambda: None, lambda: None, lambda: 0.0, lambda: 0.0)
                runs = rounds(args.rounds, senders, dest, (len(plain), total), nothing)
    report(runs, args.rounds, sorted({1, *args.associations}), (len(plain), total))


def _paired(runs: dict[str, list[float]], name: str, ref: str) -> float:
    """Median over rounds of ``name``'s figure over ``ref``'s in the same round: slow drifts in what else runs on
    the machine cancel out, which they do not in a ratio of medians."""
    return _median([a / b for a, b in zip(runs[name], runs[ref], strict=True)])


def _median(values: list[float]) -> float:
    """The median of the figures of the runs that stored everything (a failed run is NaN)."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def report(every: Runs, n_rounds: int, associations: list[int], files: tuple[int, int]) -> None:
    runs = every.mb_s
    medians = {name: _median(values) for name, values in runs.items()}
    print(f"\nmedian MB/s over {n_rounds} rounds; ratio to storescu: of the medians, and the median of the ratios")
    print(f"measured in each round (paired); default associations: {DEFAULT_ASSOCIATIONS}")
    for name, values in runs.items():
        ratio, paired = medians[name] / medians["storescu"], _paired(runs, name, "storescu")
        shown = ", ".join("failed" if math.isnan(v) else f"{v:.0f}" for v in values)
        print(f"  {name:<24} {medians[name]:7.1f} MB/s  {ratio:5.2f}x  paired {paired:5.2f}x   runs: {shown}")
    for n in associations:
        cost = 1 - _paired(runs, f"rtexport x{n}", f"rtexport x{n} unverified")
        ahead = (
            f"; rtexport is {_paired(runs, f'rtexport x{n}', f'pynetdicom x{n}'):.2f}x pynetdicom"
            if f"pynetdicom x{n}" in runs
            else ""
        )
        print(f"  x{n}: verification costs {cost:+.1%} of throughput (paired){ahead}")
    print("median per instance (µs): wall (from the median MB/s), CPU of the sender (this process, or storescu),")
    print("CPU of the receiver (Orthanc) and its threads' time ready but waiting for a core; the share of the run")
    print("when no core had work (idle or waiting for the disk)")
    count, total = files
    for name in runs:
        sender, receiver = _median(every.sender_us[name]), _median(every.receiver_us[name])
        queued, idle = _median(every.receiver_queued_us[name]), _median(every.idle[name])
        wall = total / count / medians[name]
        print(f"  {name:<24} wall {wall:6.0f}  sender {sender:6.0f}  receiver {receiver:6.0f}  "
              f"waiting for a core {queued:6.0f}  cores idle {idle:4.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
