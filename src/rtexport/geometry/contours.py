"""Structures as volumes: the rule that turns planar contours into a solid, used for every mask and ray.

A point belongs to the contour plane nearest to it if that plane lies within half the structure's contour spacing
(the median gap between its planes; for a single plane, half the given fallback, e.g. the CT slice spacing), and is
inside when the even-odd rule of :mod:`rtexport.geometry.polygon` puts it inside that plane's closed contours.
The dose engine, the bolus builder, beam aiming and the DVH all use this one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from rtexport.geometry import polygon
from rtexport.model.course import Contour
from rtexport.model.dose import GridGeometry

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def closed_contours(contours: Iterable[Contour]) -> list[Contour]:
    """The contours that enclose a region: CLOSED_PLANAR with at least three points."""
    return [c for c in contours if c.geometric_type == "CLOSED_PLANAR" and len(c.points_mm) >= 3]


class PlanarStructure:
    """A structure's closed contours grouped by plane, as a volume (see the module docstring)."""

    def __init__(self, contours: Iterable[Contour], fallback_spacing_mm: float) -> None:
        by_z: dict[float, list[FloatArray]] = {}
        for c in closed_contours(contours):
            p = np.asarray(c.points_mm, dtype=np.float64)
            by_z.setdefault(round(float(np.mean(p[:, 2])), 3), []).append(p[:, :2])
        self.planes: FloatArray = np.array(sorted(by_z), dtype=np.float64)
        self.polygons: list[list[FloatArray]] = [by_z[float(z)] for z in self.planes]
        spacing = float(np.median(np.diff(self.planes))) if len(self.planes) > 1 else fallback_spacing_mm
        self.half_thickness_mm = 0.5 * spacing + 1e-6

    @property
    def empty(self) -> bool:
        return len(self.planes) == 0

    def plane_index(self, z: FloatArray) -> npt.NDArray[np.int64]:
        """Index of the plane each z belongs to, -1 where none lies within half the contour spacing."""
        z = np.asarray(z, dtype=np.float64)
        if self.empty:
            return np.full(z.shape, -1, dtype=np.int64)
        last = len(self.planes) - 1
        hi = np.clip(np.searchsorted(self.planes, z), 0, last)
        lo = np.clip(hi - 1, 0, last)
        pick = np.where(np.abs(z - self.planes[lo]) <= np.abs(self.planes[hi] - z), lo, hi)
        return np.where(np.abs(z - self.planes[pick]) <= self.half_thickness_mm, pick, -1).astype(np.int64)

    def contains(self, points: FloatArray) -> BoolArray:
        """Which points (..., 3) are inside."""
        p = np.asarray(points, dtype=np.float64)
        flat = p.reshape(-1, 3)
        k = self.plane_index(flat[:, 2])
        out = np.zeros(len(flat), dtype=bool)
        for plane in np.unique(k[k >= 0]):
            sel = k == plane
            out[sel] = polygon.contains(self.polygons[int(plane)], flat[sel, 0], flat[sel, 1])
        return out.reshape(p.shape[:-1])

    def fill(self, xs: FloatArray, ys: FloatArray, zs: FloatArray) -> BoolArray:
        """Mask [z, y, x] sampled at the given axes (x and y increasing)."""
        mask = np.zeros((len(zs), len(ys), len(xs)), dtype=bool)
        filled: dict[int, BoolArray] = {}
        for i, k in enumerate(self.plane_index(np.asarray(zs, dtype=np.float64))):
            if k < 0:
                continue
            if int(k) not in filled:
                filled[int(k)] = polygon.fill(self.polygons[int(k)], xs, ys)
            mask[i] = filled[int(k)]
        return mask

    def fraction(self, xs: FloatArray, ys: FloatArray, zs: FloatArray, sub: int = 16) -> FloatArray:
        """Fraction of each voxel [z, y, x] (centres on the given, evenly spaced axes) inside: the partial volume
        that puts a surface between voxel centres where the contours put it (in-plane to 1/(2·sub) of a voxel;
        across planes from ``sub // 4`` samples per voxel)."""
        out = np.zeros((len(zs), len(ys), len(xs)), dtype=np.float64)
        dz = float(zs[1] - zs[0]) if len(zs) > 1 else 2.0 * self.half_thickness_mm
        nz = max(sub // 4, 1)
        offsets = ((np.arange(nz) + 0.5) / nz - 0.5) * dz
        done: dict[int, FloatArray] = {}
        for i, z in enumerate(zs):
            for k in self.plane_index(z + offsets):
                if k < 0:
                    continue
                if int(k) not in done:
                    done[int(k)] = polygon.coverage(self.polygons[int(k)], xs, ys, sub)
                out[i] += done[int(k)]
        return np.asarray(out / nz, dtype=np.float64)

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        """Lowest and highest corner of the volume (x, y, z)."""
        pts = np.concatenate([p for polys in self.polygons for p in polys])
        lo = np.array([*pts.min(axis=0), self.planes[0] - self.half_thickness_mm])
        hi = np.array([*pts.max(axis=0), self.planes[-1] + self.half_thickness_mm])
        return lo, hi


def rasterize(contours: Sequence[Contour], grid: GridGeometry, fallback_spacing_mm: float) -> BoolArray:
    """Closed planar contours → mask [z, y, x] on ``grid``."""
    return PlanarStructure(contours, fallback_spacing_mm).fill(*grid.axes())


def partial_volume(contours: Sequence[Contour], grid: GridGeometry, fallback_spacing_mm: float) -> FloatArray:
    """Closed planar contours → fraction of each voxel inside [z, y, x] on ``grid``."""
    return PlanarStructure(contours, fallback_spacing_mm).fraction(*grid.axes())


def structure_centroid(contours: Iterable[Contour]) -> tuple[float, float, float] | None:
    """Centroid of a structure: its closed contours' area centroids weighted by area (None if none encloses any)."""
    return polygon.planar_centroid(c.points_mm for c in closed_contours(contours))
