"""ompmc runs of the benchmark's cases, cached by a hash of everything that goes in.

The cache (``benchmarks/mc-cache/<hash>.npz``, compressed) is committed, so a machine without ompmc re-runs the
comparison; a missing entry is recomputed (that needs ``pip install '.[bench]'``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mc.cases import CELL_CM, Case, Voxels, aperture, opening, phantom, voxels

FloatArray = npt.NDArray[np.float64]

CACHE = Path(__file__).resolve().parent.parent / "mc-cache"
OMPMC_VERSION = "0.4.0"  # part of every cache key: results of another version are other results
# Electron range rejection below 2 MeV total energy (the bremsstrahlung it forgoes is < 1 % of the tail), no
# photon splitting (there is no photon source), photons followed down to 50 keV, electrons to 189 keV (the
# PEGS4 data's AE = 0.7 MeV total).
PHYSICS = {"global_ecut": 0.7, "global_pcut": 0.05, "n_split": 1, "esave": 2.0, "seeds": (97, 33)}
N_BATCHES = 10


@dataclass(frozen=True)
class MCResult:
    """Dose in Gy per history [x, y, z] and its relative uncertainty, the histories and the seconds they took
    (the seconds of the run that made the cache entry)."""

    dose: FloatArray
    uncertainty: FloatArray
    n_histories: int
    seconds: float
    key: str


def _inputs(case: Case, vox: Voxels) -> tuple[dict[str, object], npt.NDArray[np.int32], FloatArray]:
    mat, rho = phantom(case, vox)
    ssd, (x0, x1, y0, y1) = opening(case)
    meta: dict[str, object] = {
        "engine": f"ompmc {OMPMC_VERSION}",
        "media": list(case.media),
        "source": [round(v, 9) for v in (ssd, x0, x1, y0, y1)],
        "energy_mev": case.energy_mev,
        "charge": -1,
        "physics": {k: list(v) if isinstance(v, tuple) else v for k, v in PHYSICS.items()},
        "n_histories": case.n_histories,
        "n_batches": N_BATCHES,
    }
    if case.outline_cm is not None:  # a shaped cutout: the opening is its bounding box, masked (calc_forward)
        meta["outline"] = [list(p) for p in case.outline_cm]
        meta["mask_cell_cm"] = CELL_CM
    return meta, mat, rho


def cache_key(case: Case) -> str:
    vox = voxels(case)
    meta, mat, rho = _inputs(case, vox)
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for a in (vox.x, vox.y, vox.z, rho):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(mat, dtype=np.int32).tobytes())
    return h.hexdigest()[:20]


def _compute(case: Case, key: str) -> MCResult:
    import ompmc  # optional (GPL-3.0, bench extra): only a missing cache entry needs it

    if ompmc.__version__ != OMPMC_VERSION:
        raise RuntimeError(f"the cache is keyed to ompmc {OMPMC_VERSION}, found {ompmc.__version__}: install that one")
    vox = voxels(case)
    _, mat, rho = _inputs(case, vox)
    ssd, (x0, x1, y0, y1) = opening(case)
    geometry = ompmc.Geometry(
        vox.x, vox.y, vox.z, list(case.media), np.asfortranarray(rho), np.asfortranarray(mat, dtype=np.int32)
    )
    physics = ompmc.Physics(**PHYSICS)
    last = [0.0]

    def progress(f: float) -> bool:
        if f - last[0] >= 0.2 or f >= 1.0:
            last[0] = f
            print(f"  {case.name}: {f:.0%}", file=sys.stderr, flush=True)
        return True

    t0 = time.perf_counter()
    spectrum = ompmc.Spectrum.monoenergetic(case.energy_mev)
    run = {"n_histories": case.n_histories, "n_batches": N_BATCHES, "charge": -1, "progress": progress}
    if case.outline_cm is None:
        source = ompmc.CollimatedSource(ssd=ssd, x_min=x0, x_max=x1, y_min=y0, y_max=y1)
        dose, unc = ompmc.calc_cube(geometry, source, spectrum, physics, **run)
    else:
        # one beamlet over the bounding box, as calc_cube's opening, and a transmission mask in its plane: blocked
        # histories still count, so dose per history × the box's solid angle is dose per emission, as for calc_cube
        z0 = float(vox.z[0])
        beamlet = ompmc.BeamletSource(
            [0], [[0.0, 0.0, z0 - ssd]], [[x0, y0, z0]], [[x1 - x0, 0.0, 0.0]], [[0.0, y1 - y0, 0.0]]
        )
        mx, my, transmission = aperture(case)
        mask = ompmc.ApertureMask(z=z0, x0=mx, y0=my, dx=CELL_CM, dy=CELL_CM, transmission=transmission)
        dose, unc = ompmc.calc_forward(geometry, beamlet, [1.0], spectrum, physics, collimator=mask, **run)
    seconds = time.perf_counter() - t0
    result = MCResult(np.asarray(dose, np.float64), np.asarray(unc, np.float64), case.n_histories, seconds, key)
    CACHE.mkdir(exist_ok=True)
    tmp = CACHE / f"{key}.tmp.npz"
    np.savez_compressed(
        tmp,
        dose=result.dose.astype(np.float32),
        uncertainty=np.minimum(result.uncertainty, 1.0).astype(np.float16),
        n_histories=np.int64(case.n_histories),
        seconds=np.float64(seconds),
        case=np.str_(case.name),
    )
    tmp.replace(CACHE / f"{key}.npz")
    return result


def monte_carlo(case: Case, recompute: bool = False) -> MCResult:
    """The case's Monte Carlo dose: from the cache, or computed (and cached) when missing or asked to."""
    key = cache_key(case)
    path = CACHE / f"{key}.npz"
    if path.exists() and not recompute:
        with np.load(path) as z:
            return MCResult(
                dose=z["dose"].astype(np.float64),
                uncertainty=z["uncertainty"].astype(np.float64),
                n_histories=int(z["n_histories"]),
                seconds=float(z["seconds"]),
                key=key,
            )
    return _compute(case, key)
