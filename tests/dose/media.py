"""Media and beams the engine tests share: water slabs (or any medium) under a gantry-0 beam at SSD 100."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rtexport.dose import BeamSetup, Medium
from rtexport.geometry.iec import frame_toward
from rtexport.model.course import PatientPosition
from rtexport.model.dose import GridGeometry
from rtexport.model.site import EnergyData, Site

H = 2.0  # grid spacing, mm
SURFACE_Y = -H / 2  # a voxel boundary: the water starts at y = -1
SAD = 1000.0
FloatArray = npt.NDArray[np.float64]


def slab_grid(half_width: float = 140.0, depth: float = 120.0, top: float = -H) -> GridGeometry:
    """A grid from ``top`` (y) to ``depth`` below the surface, |x|, |z| <= ``half_width``."""
    n = int(2 * half_width / H) + 1
    ny = int((depth - top) / H) + 1
    return GridGeometry(origin_mm=(-half_width, top, -half_width), spacing_mm=(H, H, H), shape=(n, ny, n))


def slab_medium(
    slabs: tuple[tuple[float, float, float, float], ...] = (),
    half_width: float = 140.0,
    depth: float = 120.0,
    density: float = 1.0,
) -> Medium:
    """Water (or uniform ``density``) for y >= SURFACE_Y, with slabs (y0, y1, S_rel, T_rel)."""
    g = slab_grid(half_width, depth)
    _, ys, _ = g.axes()
    inside = np.broadcast_to((ys >= 0)[None, :, None], g.shape).copy()
    s = np.where(inside, density, 0.0).astype(np.float32)
    t = s.copy()
    for y0, y1, sr, tr in slabs:
        sel = (ys >= y0) & (ys < y1)
        s[:, sel, :], t[:, sel, :] = sr, tr
    return Medium(g, s, t, inside)


def square(side_mm: float) -> FloatArray:
    a = side_mm / 2
    return np.array([(-a, -a), (a, -a), (a, a), (-a, a)])


def beam(
    site: Site,
    cutout: FloatArray | None,
    energy: float = 12.0,
    applicator: str = "10x10",
    measured: float | None = None,
    surface_y: float = SURFACE_Y,
    ssd: float = SAD,
) -> tuple[BeamSetup, EnergyData]:
    """A gantry-0 beam whose central axis meets y = ``surface_y`` at x = z = 0, ``ssd`` from the source, with a
    custom cutout (None: the open applicator)."""
    machine = site.machines[0]
    app = machine.applicator(applicator)
    e = machine.energy(energy)
    assert app is not None and e is not None
    ref = machine.applicator(e.reference_applicator)
    assert ref is not None
    frame = frame_toward((0.0, surface_y, 0.0), 0.0, 0.0, 0.0, PatientPosition.HFS, ssd, SAD)
    w, h = app.opening_mm
    poly = square(w) if cutout is None else cutout
    assert cutout is not None or w == h
    setup = BeamSetup(
        "T", frame, poly, cutout is not None, app.source_to_cutout_tray_mm, ssd, app, ref, cutout_factor=measured
    )
    return setup, e


def setup(site: Site, side_mm: float, energy: float = 12.0) -> tuple[BeamSetup, EnergyData]:
    """A square field of ``side_mm`` in the 10x10 applicator (in the 25x25 when larger) on the slab's surface."""
    app = "25x25" if side_mm > 100 else "10x10"
    return beam(site, None if side_mm in (100.0, 250.0) else square(side_mm), energy, app)
