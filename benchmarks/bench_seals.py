"""What checking the seals of a plan's records costs when its state is read for a decision, in a workspace whose
audit log has grown: the demo workspace, then ``--records`` audit records (one in ``--sealed-every`` also seals a
row, as a role change or a new password does).

Prints, alternating over the rounds, the time of reading a plan's state with its seals checked (what ``plan show``,
approve and export do) against the same read without the check (the peer, measured in the same run), and the time
``verify`` takes to check every sealed record.

    python benchmarks/bench_seals.py [--records 20000] [--sealed-every 10] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtexport.demo.phantom import PhantomSpec
from rtexport.model.people import Actor
from rtexport.model.stored import parse_stored_plan
from rtexport.services.demo import build_demo_workspace
from rtexport.workspace import Workspace

PLAN = "CW-E1"


def grow(ws: Workspace, records: int, sealed_every: int) -> None:
    actor = Actor("bench", "bench-os", "cli")
    with ws.transaction():
        for k in range(records):
            if k % sealed_every == 0:
                found = ws.users.get("pat")
                if found is not None:
                    ws.users.set_password("pat", found[1])
            ws.audit(actor, "login", "ok", client=f"10.0.0.{k % 250}")


def unchecked_state(ws: Workspace) -> object:
    """The plan's state as read before seals existed: the same rows, no seal check."""
    rev = ws.plans.last_revision(PLAN)
    parse_stored_plan(rev.toml, PLAN)
    return (rev, ws.plans.approval(PLAN, rev.number), ws.plans.authorization(PLAN, rev.number), ws.doses.get(PLAN, 1))


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--sealed-every", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-seals-") as tmp:
        home = Path(tmp) / "home"
        spec = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0)
        build_demo_workspace(home, spec=spec).close()
        with Workspace.open(home) as ws:
            grow(ws, args.records, args.sealed_every)
            checked: list[float] = []
            peer: list[float] = []
            for _ in range(args.rounds):
                checked.append(timed(lambda: ws.plan_state(PLAN)))
                peer.append(timed(lambda: unchecked_state(ws)))
            verify = [timed(ws.seals.check_all) for _ in range(3)]
            records = ws.db.one("SELECT COUNT(*) AS n FROM audit")
            rows = len(ws.seals.all_rows())
        n = 0 if records is None else int(records["n"])
        print(f"{args.rounds} rounds, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"audit records {n}, sealed rows {rows}")
        c, p = statistics.median(checked), statistics.median(peer)
        print(f"plan state, seals checked:  median {1000 * c:7.2f} ms  min {1000 * min(checked):7.2f} ms")
        print(f"plan state, unchecked peer: median {1000 * p:7.2f} ms  min {1000 * min(peer):7.2f} ms")
        print(f"ratio checked / peer (median): {c / p:.2f}; added {1000 * (c - p):.2f} ms")
        print(f"verify, every sealed record: median {1000 * statistics.median(verify):.1f} ms")


if __name__ == "__main__":
    main()
