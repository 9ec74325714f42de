"""How fast the planning blocks answer, through the page's own routes (FastAPI TestClient, one process):

- a beam edit: the beam's-eye view and setup (``POST /beams/preview``) and an axial CT picture of the plan
  (``GET /plans/ID/slice/axial/N.png``) — the page redraws both after a change (target ≤ 200 ms);
- saving a changed plan, a new revision (``POST /plans/ID/save``; target ≤ 0.5 s), against an unchanged save
  (no revision) and the service of ``rtexport plan load`` called directly with the same text;
- the peer, measured in the same run: ``GET /plans/ID/edit.json`` (reads the plan, no geometry).

Prints the minimum and median of each over the rounds, and each as a multiple of the peer.

    python benchmarks/bench_page.py [--rounds 15] [--small]
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from rtexport.demo.phantom import PhantomSpec
from rtexport.demo.plan import DEMO_PLAN_ID, DEMO_USERS
from rtexport.model.people import Actor
from rtexport.services.demo import build_demo_workspace
from rtexport.services.editing import plan_text
from rtexport.services.plans import load_plan
from rtexport.services.workspaces import open_workspace
from rtexport.web.app import create_app

JSON = {"Accept": "application/json"}


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def log_in(client: TestClient) -> str:
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").text)
    assert token is not None
    user, (_, password) = "pat", DEMO_USERS["pat"]
    client.post("/login", data={"csrf": token.group(1), "name": user, "password": password, "next": "/"})
    again = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert again is not None
    return again.group(1)


def checked(rsp: Any) -> Any:
    if rsp.status_code >= 400:
        raise SystemExit(f"{rsp.request.method} {rsp.request.url}: {rsp.status_code} {rsp.text[:300]}")
    return rsp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--small", action="store_true", help="a small phantom (80×80×16) instead of the demo's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        home = Path(tmp) / "home"
        spec = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0) if args.small else None
        build_demo_workspace(home, spec=spec).close()
        client = TestClient(create_app(home, secret="bench"))
        headers = {**JSON, "X-CSRF-Token": log_in(client)}
        plan: dict[str, Any] = checked(client.get(f"/plans/{DEMO_PLAN_ID}/edit.json", headers=JSON)).json()["plan"]
        axial = 8 if args.small else 40
        gantry = [0.0]

        def peer() -> None:
            checked(client.get(f"/plans/{DEMO_PLAN_ID}/edit.json", headers=JSON))

        def bev() -> None:
            gantry[0] = 5.0 if gantry[0] == 0.0 else 0.0
            edited = copy.deepcopy(plan)
            edited["beam"][0]["gantry_deg"] = gantry[0]
            checked(client.post("/beams/preview", json={"plan": edited, "index": 0}, headers=headers))

        def ct_picture() -> None:
            checked(client.get(f"/plans/{DEMO_PLAN_ID}/slice/axial/{axial}.png"))

        def beam_edit() -> None:
            bev()
            ct_picture()

        weights = iter([round(0.5 + k / 1000, 3) for k in range(1, 10_000)])
        last: dict[str, Any] = {"plan": plan}

        def save_revision() -> None:
            edited = copy.deepcopy(plan)
            edited["beam"][0]["weight"] = next(weights)
            body = checked(client.post(f"/plans/{DEMO_PLAN_ID}/save", json={"plan": edited}, headers=headers))
            assert body.json()["changed"], body.text
            last["plan"] = edited

        gantries = iter([round(k / 100, 2) for k in range(1, 10_000)])

        def save_new_angle() -> None:  # a geometry change: every beam set up again, bolus built again
            edited = copy.deepcopy(last["plan"])
            edited["beam"][0]["gantry_deg"] = round(plan["beam"][0].get("gantry_deg", 0.0) + next(gantries), 2)
            body = checked(client.post(f"/plans/{DEMO_PLAN_ID}/save", json={"plan": edited}, headers=headers))
            assert body.json()["changed"], body.text
            last["plan"] = edited

        def save_unchanged() -> None:
            body = checked(client.post(f"/plans/{DEMO_PLAN_ID}/save", json=last, headers=headers))
            assert not body.json()["changed"], body.text

        ws = open_workspace(home)

        def plan_load() -> None:
            edited = copy.deepcopy(plan)
            edited["beam"][0]["weight"] = next(weights)
            load_plan(ws, plan_text(edited), "bench.toml", Actor.here("bench"))

        # Two blocks, each interleaved with the peer: the beam edits first (the saved plan, and with it the
        # pictures' cache, unchanged), then the saves.
        blocks = [
            {"edit.json (peer)": peer, "beam edit: BEV": bev, "beam edit: CT picture": ct_picture,
             "beam edit: BEV + CT picture": beam_edit},
            {"edit.json (peer) ": peer, "save: new revision": save_revision,
             "save: new gantry angle": save_new_angle, "save: unchanged": save_unchanged,
             "plan load service": plan_load},
        ]  # fmt: skip
        times: dict[str, list[float]] = {}
        for cases in blocks:
            for fn in cases.values():
                fn()  # warm the caches (CT volume, imports)
            for _ in range(args.rounds):
                for name, fn in cases.items():
                    times.setdefault(name, []).append(timed(fn))
        ws.close()
    peer_s = statistics.median(times["edit.json (peer)"] + times["edit.json (peer) "])
    size = "80×80×16" if args.small else "demo"
    print(f"{args.rounds} rounds, phantom {size}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':<30} {'min ms':>8} {'median ms':>10} {'× peer':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<30} {min(values) * 1000:8.1f} {median * 1000:10.1f} {median / peer_s:7.1f}")


if __name__ == "__main__":
    main()
