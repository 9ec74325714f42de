"""One electron beam on a 200×200×150 grid of 2 mm, 10×10 cm cutout, through bone and lung slabs, the skin
between voxel centres (the medium carries its partial volume, as a plan's does).

The same beam twice: with the demo site's beam data (one Fermi–Eyges Gaussian per pencil) and with the 12 MeV
beam data commissioned from Monte Carlo, square fields' depth doses included (each pencil a core and a halo,
:mod:`rtexport.dose.kernel`; the Monte Carlo from benchmarks/mc-cache).

Run: python benchmarks/bench_dose.py   (prints seconds per beam and peak memory)

With ``--peer SRC``: the same beams from this tree and from another source tree (e.g. main's ``src``), each in its
own process, alternating for ``--rounds`` rounds on the same machine: best seconds and CPU seconds per beam of
each, their ratios, and how far the two trees' doses differ (largest |Δ| relative to the dose maximum).

    python benchmarks/bench_dose.py --peer ../main/src [--rounds 3]

With ``--plan``: the demo plan on the demo phantom in this process, stage by stage (median of 3): the beams' setup
(``aim_plan``: surfaces, bolus, applicator checks), the plan dose given that setup (medium and every beam), and
the two together as ``compute_plan_dose`` alone runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rtexport.demo.beamdata import demo_site
from rtexport.dose import BeamSetup, Medium, PencilBeamEngine
from rtexport.geometry.iec import frame_toward
from rtexport.model.course import PatientPosition
from rtexport.model.dose import GridGeometry
from rtexport.model.site import Applicator, EnergyData, Site

FloatArray = npt.NDArray[np.float64]


def kernel_beam_data() -> tuple[EnergyData, Applicator]:
    """12 MeV commissioned from the Monte Carlo cache, with field_pdds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mc.cases import cases
    from mc.commission import commission
    from mc.montecarlo import monte_carlo

    all_cases = cases()
    ref = next(c for c in all_cases if c.reference and c.energy_mev == 12.0)
    squares = [(c, monte_carlo(c)) for c in all_cases if c.square and c.energy_mev == 12.0]
    comm = commission((ref, monte_carlo(ref)), squares)
    return comm.energy, comm.applicator


def timed(
    medium: Medium, beam: BeamSetup, energy: EnergyData
) -> tuple[list[float], list[float], float, npt.NDArray[np.float32]]:
    """Wall and CPU seconds of three runs after a warm-up (CPU time is the figure to read on a shared machine, with
    OPENBLAS_NUM_THREADS=1), and the peak of Python allocations (MiB) of a fourth."""
    engine = PencilBeamEngine()
    engine.beam_dose(medium, beam, energy)  # warm up imports, BLAS threads and the kernel's fit
    times, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        dose = engine.beam_dose(medium, beam, energy)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    tracemalloc.start()
    engine.beam_dose(medium, beam, energy)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return times, cpu, traced_peak / 2**20, dose


def measure(save: Path | None = None) -> dict[str, dict[str, float | list[float]]]:
    """Both beams on the slab phantom: seconds, CPU seconds, allocation peak and dose maximum per beam data set
    (doses saved to ``save`` as .npz if given)."""
    site = Site.model_validate(demo_site())
    machine = site.machines[0]
    energy, app = machine.energy(12.0), machine.applicator("10x10")
    assert energy is not None and app is not None
    g = GridGeometry(origin_mm=(-199.0, -199.0, -149.0), spacing_mm=(2.0, 2.0, 2.0), shape=(150, 200, 200))
    _, ys, _ = g.axes()
    skin = -100.7  # the skin voxel [-102, -100] mm is 35 % inside
    share = np.clip((ys + 1.0 - skin) / 2.0, 0.0, 1.0).astype(np.float32)
    occupancy = np.broadcast_to(share[None, :, None], g.shape).copy()
    inside = occupancy > 0
    s = (ys >= skin - 4.0).astype(np.float32)[None, :, None] * np.ones(g.shape, dtype=np.float32)  # water beyond
    t = s.copy()
    bone = (ys >= -80.0) & (ys < -70.0)
    lung = (ys >= -60.0) & (ys < -30.0)
    s[:, bone, :], t[:, bone, :] = 1.65, 2.19
    s[:, lung, :], t[:, lung, :] = 0.25, 0.25
    medium = Medium(g, s, t, inside, occupancy)
    frame = frame_toward((0.0, skin, 0.0), 0.0, 0.0, 0.0, PatientPosition.HFS, 1000.0, 1000.0)
    poly = np.array([(-50.0, -50.0), (50.0, -50.0), (50.0, 50.0), (-50.0, 50.0)])
    kernel_energy, kernel_app = kernel_beam_data()
    figures: dict[str, dict[str, float | list[float]]] = {}
    doses = {}
    for label, e, a in ((FERMI_EYGES, energy, app), (KERNEL, kernel_energy, kernel_app)):
        beam = BeamSetup("B", frame, poly, False, a.source_to_cutout_tray_mm, 1000.0, a, a)
        times, cpu, traced, dose = timed(medium, beam, e)
        figures[label] = {"wall": times, "cpu": cpu, "traced": traced, "max": float(dose.max())}
        figures[label]["finite"] = float(np.isfinite(dose).all())
        doses[label] = dose
    if save is not None:
        np.savez(save, *doses.values())
    return figures


FERMI_EYGES = "demo beam data, Fermi–Eyges"
KERNEL = "Monte Carlo beam data, kernel"


def main() -> None:
    print("grid 200x200x150 of 2 mm, 10x10 cm cutout, 12 MeV, bone + lung slabs, partial-volume skin")
    for label, f in measure().items():
        times, cpu = f["wall"], f["cpu"]
        assert isinstance(times, list) and isinstance(cpu, list)
        print(
            f"{label}: seconds per beam: best {min(times):.2f}, runs {', '.join(f'{x:.2f}' for x in times)}; "
            f"CPU best {min(cpu):.2f}; "
            f"python allocations peak {f['traced']:.0f} MiB; dose max {f['max']:.5f} Gy/MU, "
            f"finite {bool(f['finite'])}"
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"process max RSS {rss_mb:.0f} MiB")


def against_peer(peer: str, rounds: int) -> None:
    """This tree and ``peer`` alternately, each round a fresh process per tree."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = {"this tree": here, "peer": str(Path(peer).resolve())}
    best: dict[str, dict[str, dict[str, float]]] = {t: {} for t in trees}
    with tempfile.TemporaryDirectory(prefix="bench-dose-") as tmp:
        for _ in range(rounds):
            for tree, src in trees.items():
                env = {**os.environ, "PYTHONPATH": src}
                save = Path(tmp) / f"{tree}.npz"
                cmd = [sys.executable, __file__, "--child", str(save)]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                figures = json.loads(out.splitlines()[-1])
                for label, f in figures.items():
                    kept = best[tree].setdefault(label, {"wall": float("inf"), "cpu": float("inf")})
                    kept["wall"] = min(kept["wall"], min(f["wall"]))
                    kept["cpu"] = min(kept["cpu"], min(f["cpu"]))
                    kept["traced"] = f["traced"]
        ours, theirs = (np.load(Path(tmp) / f"{t}.npz") for t in trees)
        diffs = [float(np.abs(ours[k].astype(np.float64) - theirs[k]).max() / theirs[k].max()) for k in theirs]
    print(f"best of {rounds} rounds x 3 runs, this tree ({here}) against peer ({trees['peer']}):")
    for i, label in enumerate(best["this tree"]):
        a, b = best["this tree"][label], best["peer"][label]
        print(
            f"{label}: seconds per beam {a['wall']:.2f} (peer {b['wall']:.2f}, ratio {a['wall'] / b['wall']:.2f}); "
            f"CPU {a['cpu']:.2f} (peer {b['cpu']:.2f}, ratio {a['cpu'] / b['cpu']:.2f}); allocations peak "
            f"{a['traced']:.0f} MiB (peer {b['traced']:.0f}); dose max |Δ| {100 * diffs[i]:.5f} % of max"
        )


def _median(run: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plan_stages() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.dose.conftest import phantom_volume

    from rtexport.demo.phantom import PhantomSpec
    from rtexport.demo.plan import DEMO_PLAN
    from rtexport.dose import compute_plan_dose
    from rtexport.geometry.setup import aim_plan
    from rtexport.model.plan import Plan

    site = Site.model_validate(demo_site())
    ct, contours = phantom_volume(PhantomSpec())
    plan = Plan.model_validate(tomllib.loads(DEMO_PLAN))
    aimed = aim_plan(plan, site, ct.geometry, contours)  # warm up
    setup = _median(lambda: aim_plan(plan, site, ct.geometry, contours))
    dose = _median(lambda: compute_plan_dose(plan, site, ct, contours, aimed=aimed))
    both = _median(lambda: compute_plan_dose(plan, site, ct, contours))
    print(f"demo plan ({len(plan.beams)} beams), median of 3 in one process:")
    print(f"  beam setup (aim_plan)            {setup:6.2f} s")
    print(f"  plan dose given the setup        {dose:6.2f} s")
    print(f"  compute_plan_dose (both)         {both:6.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="time the demo plan's stages instead")
    parser.add_argument("--peer", metavar="SRC", help="also time this source tree, alternating, and compare doses")
    parser.add_argument("--rounds", type=int, default=3, help="with --peer: rounds (a process per tree each)")
    parser.add_argument("--child", metavar="NPZ", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child))))
    elif args.peer:
        against_peer(args.peer, args.rounds)
    elif args.plan:
        plan_stages()
    else:
        main()
