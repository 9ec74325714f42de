"""Bolus built on the patient's skin along a beam: its shape as closed planar contours on the CT slices.

The bolus of a beam fills, along each ray from the source through the cutout grown by the bolus margin, the
``thickness_mm`` of air just before the ray enters the External. It is built on a fine in-plane grid inside the
beam's field only (memory bounded by the field, not the CT) and traced into contours; those contours are the bolus
everywhere else: the structure set, the dose medium and the beam setup all read them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.measure import find_contours

from rtexport.geometry import polygon
from rtexport.geometry.contours import PlanarStructure
from rtexport.geometry.iec import BeamFrame
from rtexport.geometry.rays import surface_distances
from rtexport.geometry.sampling import Axes
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.plan import Bolus

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _depths(frame: BeamFrame, axes: Axes) -> tuple[float, float]:
    """The central-axis distances the axes' box spans, not before 1 mm from the source."""
    xs, ys, zs = axes
    near, far = frame.depth_range((xs[0], ys[0], zs[0]), (xs[-1], ys[-1], zs[-1]))
    return max(near, 1.0), far


def _field_box(frame: BeamFrame, lo: FloatArray, hi: FloatArray, axes: Axes, z_pad: float) -> Axes | None:
    """The part of ``axes`` inside the pyramid of beam's-eye-view box [lo, hi] over the axes' depth range."""
    xs, ys, zs = axes
    bmin, bmax = frame.field_box(lo, hi, _depths(frame, axes))
    keep = (
        (xs >= bmin[0]) & (xs <= bmax[0]),
        (ys >= bmin[1]) & (ys <= bmax[1]),
        (zs >= bmin[2] - z_pad) & (zs <= bmax[2] + z_pad),
    )
    if not all(k.any() for k in keep):
        return None
    return xs[keep[0]], ys[keep[1]], zs[keep[2]]


def bolus_mask(
    axes: Axes, external: BoolArray, frame: BeamFrame, cutout: FloatArray, bolus: Bolus, ray_step_mm: float
) -> BoolArray:
    """Bolus voxels on ``axes``: outside ``external``, whose ray from the source projects (isocenter plane) inside
    the cutout grown by the margin, within the bolus thickness before that ray enters the External."""
    xs, ys, zs = axes
    margin, thick = bolus.margin_mm, bolus.thickness_mm
    lo, hi = cutout.min(axis=0) - margin - 1.0, cutout.max(axis=0) + margin + 1.0
    ub = np.arange(lo[0], hi[0] + ray_step_mm, ray_step_mm)
    vb = np.arange(lo[1], hi[1] + ray_step_mm, ray_step_mm)
    uu, vv = np.meshgrid(ub, vb, indexing="ij")
    d_hit = surface_distances(frame, external, axes, uu, vv, _depths(frame, axes), ray_step_mm)
    out = np.zeros(external.shape, dtype=bool)
    if np.all(np.isnan(d_hit)):
        return out
    surf = frame.ray_length(uu, vv, d_hit)  # each ray's own source-to-surface distance
    # candidate box: the cone between the nearest surface minus the thickness and the farthest surface
    dmin = float(np.nanmin(d_hit)) - thick - ray_step_mm
    dmax = float(np.nanmax(d_hit)) + ray_step_mm
    pmin, pmax = frame.field_box(lo, hi, (dmin, dmax))
    pmin, pmax = pmin - ray_step_mm, pmax + ray_step_mm
    ix = np.nonzero((xs >= pmin[0]) & (xs <= pmax[0]))[0]
    iy = np.nonzero((ys >= pmin[1]) & (ys <= pmax[1]))[0]
    iz = np.nonzero((zs >= pmin[2]) & (zs <= pmax[2]))[0]
    if ix.size == 0 or iy.size == 0 or iz.size == 0:
        return out
    zz, yy, xx = np.meshgrid(zs[iz], ys[iy], xs[ix], indexing="ij")
    u, v, d = frame.to_fan(np.stack([xx, yy, zz], axis=-1))
    length = frame.ray_length(u, v, d)
    iu = np.clip(np.rint((u - ub[0]) / ray_step_mm).astype(int), 0, len(ub) - 1)
    iv = np.clip(np.rint((v - vb[0]) / ray_step_mm).astype(int), 0, len(vb) - 1)
    s = surf[iu, iv]
    with np.errstate(invalid="ignore"):
        near_surface = (length < s) & (length >= s - thick)
    sub = near_surface & ~external[np.ix_(iz, iy, ix)]
    sub[sub] = polygon.inside_with_margin(cutout, u[sub], v[sub], margin)  # only where the rest holds: a thin shell
    out[np.ix_(iz, iy, ix)] = sub
    return out


def bolus_contours(
    ct: CTGeometry,
    external: PlanarStructure,
    frame: BeamFrame,
    cutout: FloatArray,
    bolus: Bolus,
    in_plane_mm: float = 1.0,
) -> list[Contour]:
    """The bolus as CLOSED_PLANAR contours on the CT slice planes it crosses (empty if the field misses the
    External). Contours are traced at ``in_plane_mm``; rays that far apart place the surface within half of it."""
    x_ct, y_ct, z_ct = ct.axes()
    fine: Axes = (
        np.arange(x_ct[0], x_ct[-1] + 1e-6, in_plane_mm),
        np.arange(y_ct[0], y_ct[-1] + 1e-6, in_plane_mm),
        z_ct,
    )
    pad = bolus.margin_mm + 4 * in_plane_mm
    box = _field_box(frame, cutout.min(axis=0) - pad, cutout.max(axis=0) + pad, fine, ct.slice_spacing_mm)
    if box is None:
        return []
    xs, ys, zs = box
    mask = bolus_mask(box, external.fill(xs, ys, zs), frame, cutout, bolus, ray_step_mm=in_plane_mm)
    out: list[Contour] = []
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        # traced within the slice's bolus box only: the same contours, their points moved by whole pixels (exact)
        rows, cols = (np.nonzero(mask[k].any(axis=a))[0] for a in (1, 0))
        iy, ix = int(rows[0]), int(cols[0])
        padded = np.pad(mask[k, iy : rows[-1] + 1, ix : cols[-1] + 1].astype(np.float64), 1)
        for traced in find_contours(padded, 0.5):  # type: ignore[no-untyped-call]
            c = polygon.drop_collinear(traced[:-1] if np.allclose(traced[0], traced[-1]) else traced)
            if len(c) < 3:
                continue
            pts = np.column_stack(
                [
                    xs[0] + (c[:, 1] + (ix - 1)) * in_plane_mm,
                    ys[0] + (c[:, 0] + (iy - 1)) * in_plane_mm,
                    np.full(len(c), zs[k]),
                ]
            )
            out.append(Contour(points_mm=np.round(pts, 3), geometric_type="CLOSED_PLANAR"))
    return out
