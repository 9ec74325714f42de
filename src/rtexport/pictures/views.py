"""Where each pixel of a slice picture lies in the patient: the three views and their pixel grids."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from rtexport.model.course import CTGeometry

F64 = npt.NDArray[np.float64]
IMAGE_PX = 480  # the longer side of a rendered slice


class View(StrEnum):
    AXIAL = "axial"
    SAGITTAL = "sagittal"
    CORONAL = "coronal"


@dataclass(frozen=True)
class Plane:
    """Where each output pixel lies in the patient: coordinates (x, y, z) of the pixel centres, each [rows, cols]."""

    x: F64
    y: F64
    z: F64
    label: str  # e.g. "z = -12.5 mm"
    origin: tuple[float, float]  # (horizontal, vertical) mm at the outer corner of pixel (0, 0)
    step: tuple[float, float]  # mm per pixel across and down (negative when the axis runs backwards)

    def pixels(self, h_mm: F64, v_mm: F64) -> list[tuple[float, float]]:
        """Drawing coordinates (PIL: pixel centres at +0.5) of points given in the plane's mm."""
        cols = (h_mm - self.origin[0]) / self.step[0]
        rows = (v_mm - self.origin[1]) / self.step[1]
        return [(float(c), float(r)) for c, r in zip(cols, rows, strict=True)]


def plane(ct: CTGeometry, view: View, index: int, size_px: int = IMAGE_PX) -> Plane:
    """Output pixel grid of one slice: axial (anterior up), coronal and sagittal (superior up, anterior left)."""
    xs, ys, zs = ct.x_mm(), ct.y_mm(), np.asarray(ct.slice_z_mm, dtype=np.float64)
    dy, dx = ct.pixel_spacing_mm
    dz = ct.slice_spacing_mm
    span = {
        "x": (xs[0] - dx / 2, xs[-1] + dx / 2),
        "y": (ys[0] - dy / 2, ys[-1] + dy / 2),
        "z": (zs[-1] + dz / 2, zs[0] - dz / 2),  # top of the picture: superior
    }
    h_axis, v_axis, fixed_axis, fixed = {
        View.AXIAL: ("x", "y", "z", zs),
        View.CORONAL: ("x", "z", "y", ys),
        View.SAGITTAL: ("y", "z", "x", xs),
    }[view]
    index = min(max(index, 0), len(fixed) - 1)
    h0, h1 = span[h_axis]
    v0, v1 = span[v_axis]
    mm_per_px = max(abs(h1 - h0), abs(v1 - v0)) / size_px
    w = max(1, round(abs(h1 - h0) / mm_per_px))
    h = max(1, round(abs(v1 - v0) / mm_per_px))
    hc = h0 + (np.arange(w) + 0.5) * (h1 - h0) / w
    vc = v0 + (np.arange(h) + 0.5) * (v1 - v0) / h
    vv, hh = np.meshgrid(vc, hc, indexing="ij")
    coords = {h_axis: hh, v_axis: vv, fixed_axis: np.full_like(hh, fixed[index])}
    label = f"{fixed_axis} = {fixed[index]:.1f} mm"
    return Plane(coords["x"], coords["y"], coords["z"], label, (h0, v0), ((h1 - h0) / w, (v1 - v0) / h))
