"""Contours to voxel masks, and bolus built on the patient surface along a beam."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.measure import find_contours

from rtexport.dose.geometry import BeamFrame, frame_from_angles
from rtexport.errors import DoseError
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.dose import GridGeometry
from rtexport.model.plan import Beam, default_cutout
from rtexport.model.site import Applicator

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def fill_polygons(polygons: Sequence[FloatArray], xs: FloatArray, ys: FloatArray) -> BoolArray:
    """Even-odd fill of closed polygons (each (N, 2), x y) sampled at voxel centres: mask [y, x].
    A point is inside when a ray toward +x crosses the edges an odd number of times (holes stay holes)."""
    ny, nx = len(ys), len(xs)
    toggles = np.zeros((ny, nx + 1), dtype=np.int32)
    for poly in polygons:
        p = np.asarray(poly, dtype=np.float64)[:, :2]
        if len(p) < 3:
            continue
        x0, y0 = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
        # rows crossed by each edge: half-open [ylo, yhi) so a vertex on a row counts once
        rows = (ys[None, :] >= ylo[:, None]) & (ys[None, :] < yhi[:, None])
        e, j = np.nonzero(rows)
        if e.size == 0:
            continue
        t = (ys[j] - y0[e]) / (y1[e] - y0[e])
        xc = x0[e] + t * (x1[e] - x0[e])
        k = np.searchsorted(xs, xc, side="left")  # columns with x < xc toggle
        np.add.at(toggles, (j, np.zeros_like(k)), 1)
        np.add.at(toggles, (j, k), -1)
    return (np.cumsum(toggles[:, :nx], axis=1) % 2).astype(bool)


def drop_collinear(ring: FloatArray, tolerance: float = 0.1) -> FloatArray:
    """The vertices of a closed ring (N, 2) that are not on the line through their neighbours (within
    ``tolerance``). A marching-squares trace has a vertex per pixel edge; straight runs keep their ends."""
    if len(ring) < 4:
        return ring
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    chord = nxt - prev
    cross = chord[:, 0] * (ring[:, 1] - prev[:, 1]) - chord[:, 1] * (ring[:, 0] - prev[:, 0])
    off_line = np.abs(cross) > tolerance * np.maximum(np.hypot(chord[:, 0], chord[:, 1]), 1e-12)
    return ring[off_line]


def _plane_tolerance(zs: FloatArray, fallback: float) -> float:
    if len(zs) > 1:
        return 0.5 * float(np.median(np.diff(zs)))
    return 0.5 * fallback


def rasterize_planes(
    contours: Sequence[Contour], xs: FloatArray, ys: FloatArray, zs: FloatArray, fallback_slice_mm: float
) -> BoolArray:
    """Mask [z, y, x] at arbitrary plane positions ``zs``; each plane takes the contours of the nearest
    contour z within half a contour slice."""
    mask = np.zeros((len(zs), len(ys), len(xs)), dtype=bool)
    closed = [c for c in contours if c.geometric_type == "CLOSED_PLANAR" and len(c.points_mm) >= 3]
    if not closed:
        return mask
    by_z: dict[float, list[FloatArray]] = {}
    for c in closed:
        by_z.setdefault(round(float(np.mean(c.points_mm[:, 2])), 3), []).append(c.points_mm)
    cz = np.array(sorted(by_z))
    tol = _plane_tolerance(cz, fallback_slice_mm) + 1e-6
    for k, z in enumerate(zs):
        i = int(np.argmin(np.abs(cz - z)))
        if abs(cz[i] - z) <= tol:
            mask[k] = fill_polygons(by_z[float(cz[i])], xs, ys)
    return mask


def rasterize(contours: Sequence[Contour], grid: GridGeometry) -> BoolArray:
    """Closed planar contours → mask [z, y, x] on ``grid`` (even-odd rule; holes kept)."""
    xs, ys, zs = grid.axes()
    return rasterize_planes(contours, xs, ys, zs, grid.spacing_mm[2])


def _grid_index(grid_axes: tuple[FloatArray, FloatArray, FloatArray], points: FloatArray) -> FloatArray:
    """Fractional [z, y, x] indices of points (..., 3) on axes (x, y, z); z may be non-uniform."""
    xs, ys, zs = grid_axes
    ix = (points[..., 0] - xs[0]) / (xs[1] - xs[0] if len(xs) > 1 else 1.0)
    iy = (points[..., 1] - ys[0]) / (ys[1] - ys[0] if len(ys) > 1 else 1.0)
    if len(zs) > 1:
        iz = np.interp(points[..., 2], zs, np.arange(len(zs)), left=-1e9, right=1e9)
    else:
        iz = np.where(np.abs(points[..., 2] - zs[0]) < 1e-6, 0.0, -1e9)
    return np.stack([iz, iy, ix])


def sample(
    volume: npt.NDArray[np.generic],
    grid_axes: tuple[FloatArray, FloatArray, FloatArray],
    points: FloatArray,
    order: int = 1,
) -> FloatArray:
    """Trilinear (or nearest, order 0) samples of ``volume`` [z, y, x] at patient points; 0 outside."""
    idx = _grid_index(grid_axes, points).reshape(3, -1)
    # A mask is read in place as bytes: converting a CT-sized mask to float on every call costs more than sampling.
    vol = volume.view(np.uint8) if volume.dtype == bool else volume
    out = ndimage.map_coordinates(vol, idx, order=order, mode="constant", cval=0.0, prefilter=False, output=np.float64)
    return np.asarray(out, dtype=np.float64).reshape(points.shape[:-1])


def surface_entry(
    external: BoolArray,
    grid_axes: tuple[FloatArray, FloatArray, FloatArray],
    point_mm: FloatArray,
    direction: FloatArray,
    before_mm: float = 1500.0,
    after_mm: float = 1000.0,
    step_mm: float = 0.25,
) -> float | None:
    """Signed distance from ``point_mm`` along ``direction`` to where the line first enters ``external``
    (the 50 % crossing of the interpolated mask), or None if it never does."""
    s = np.arange(-before_mm, after_mm, step_mm)
    vals = sample(external, grid_axes, point_mm + s[:, None] * direction)
    inside = np.nonzero(vals >= 0.5)[0]
    if inside.size == 0:
        return None
    k = int(inside[0])
    if k == 0:
        return float(s[0])
    f = (0.5 - vals[k - 1]) / max(vals[k] - vals[k - 1], 1e-9)
    return float(s[k - 1] + f * step_mm)


def beam_cutout(beam: Beam, applicator: Applicator) -> FloatArray:
    """The cutout polygon (BEV, isocenter plane): the beam's, or the open applicator."""
    pts = beam.cutout_mm if beam.cutout_mm is not None else default_cutout(applicator.shape, applicator.opening_mm)
    return np.asarray(pts, dtype=np.float64)


def beam_frame(
    beam: Beam, external: BoolArray, grid_axes: tuple[FloatArray, FloatArray, FloatArray], sad_mm: float
) -> tuple[BeamFrame, float]:
    """Frame of ``beam`` (isocenter resolved) with the source ``ssd_mm`` before the External along the
    central axis; also the distance from the source to that entry point."""
    if beam.isocenter_mm is None:
        raise DoseError(f"beam {beam.name}: isocenter not resolved (target {beam.target!r}); resolve it first")
    iso = np.asarray(beam.isocenter_mm, dtype=np.float64)
    probe = frame_from_angles(beam.isocenter_mm, beam.gantry_deg, beam.collimator_deg, beam.couch_deg, 1.0, sad_mm)
    entry = surface_entry(external, grid_axes, iso, probe.direction)
    if entry is None:
        raise DoseError(
            f"beam {beam.name}: the central axis through the isocenter {tuple(round(v, 1) for v in iso)} mm "
            "never enters the External; check the isocenter and the angles"
        )
    frame = frame_from_angles(
        beam.isocenter_mm, beam.gantry_deg, beam.collimator_deg, beam.couch_deg, beam.ssd_mm - entry, sad_mm
    )
    return frame, beam.ssd_mm


def inside_polygon_with_margin(poly: FloatArray, u: FloatArray, v: FloatArray, margin: float) -> BoolArray:
    """Points (u, v) inside the polygon, or within ``margin`` of its edges."""
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    inside = np.zeros(u.shape, dtype=bool)
    near = np.zeros(u.shape, dtype=bool)
    for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
        cross = ((b <= v) & (v < d)) | ((d <= v) & (v < b))
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = a + (v - b) * (c - a) / (d - b)
        inside ^= cross & (u < xc)
        if margin > 0:
            ex, ey = c - a, d - b
            t = np.clip(((u - a) * ex + (v - b) * ey) / max(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
            near |= (u - a - t * ex) ** 2 + (v - b - t * ey) ** 2 <= margin * margin
    return inside | near


_RAYS_PER_CHUNK = 2048


def _first_hit(
    frame: BeamFrame,
    external: BoolArray,
    grid_axes: tuple[FloatArray, FloatArray, FloatArray],
    uu: FloatArray,
    vv: FloatArray,
    ds: FloatArray,
) -> tuple[FloatArray, BoolArray]:
    """Distance along the central-axis coordinate where each ray (uu, vv) first enters the External, sampled at
    ``ds`` and refined linearly between samples; and whether it enters at all."""
    pts = frame.from_fan(uu[:, None], vv[:, None], ds[None, :])
    vals = sample(external, grid_axes, pts)
    hit = vals >= 0.5
    first = np.argmax(hit, axis=-1)
    any_hit: BoolArray = np.asarray(hit.any(axis=-1), dtype=bool)
    k = np.maximum(first, 1)
    i = np.arange(len(uu))
    prev, cur = vals[i, k - 1], vals[i, k]
    f = np.clip((0.5 - prev) / np.maximum(cur - prev, 1e-9), 0.0, 1.0)
    d: FloatArray = np.asarray(np.where(first == 0, ds[0], ds[k - 1] + f * (ds[k] - ds[k - 1])), dtype=np.float64)
    return d, any_hit


def _ray_surface(
    frame: BeamFrame,
    external: BoolArray,
    grid_axes: tuple[FloatArray, FloatArray, FloatArray],
    ub: FloatArray,
    vb: FloatArray,
    d_range: tuple[float, float],
    step: float,
) -> FloatArray:
    """Ray length from the source to the first External entry for each ray (ub × vb); NaN if none.

    Rays march coarsely (2 mm, finer than any body outline feature that matters for bolus) and are then
    refined at ``step`` inside the coarse interval, in chunks, so memory stays bounded whatever the CT size."""
    coarse = max(2.0, step)
    uu, vv = np.meshgrid(ub, vb, indexing="ij")
    u_flat, v_flat = uu.ravel(), vv.ravel()
    d_coarse = np.arange(d_range[0], d_range[1] + coarse, coarse)
    # the coarse crossing is interpolated between two samples of a step: the true one is within a coarse step of it
    fine = np.arange(0.0, 2.0 * coarse + step, step)
    d_hit = np.full(u_flat.shape, np.nan)
    for lo in range(0, len(u_flat), _RAYS_PER_CHUNK):
        cu, cv = u_flat[lo : lo + _RAYS_PER_CHUNK], v_flat[lo : lo + _RAYS_PER_CHUNK]
        rough, any_hit = _first_hit(frame, external, grid_axes, cu, cv, d_coarse)
        start = np.maximum(rough - coarse, d_coarse[0])
        # refine each ray on its own interval: sample start + fine, then take the first crossing
        pts = frame.from_fan(cu[:, None], cv[:, None], start[:, None] + fine[None, :])
        vals = sample(external, grid_axes, pts)
        hit = vals >= 0.5
        first = np.argmax(hit, axis=-1)
        k = np.maximum(first, 1)
        i = np.arange(len(cu))
        prev, cur = vals[i, k - 1], vals[i, k]
        f = np.clip((0.5 - prev) / np.maximum(cur - prev, 1e-9), 0.0, 1.0)
        exact = np.where(first == 0, start, start + fine[k - 1] + f * step)
        exact = np.where(hit.any(axis=-1), exact, rough)
        d_hit[lo : lo + _RAYS_PER_CHUNK] = np.where(any_hit, exact, np.nan)
    d_hit = d_hit.reshape(uu.shape)
    stretch = np.sqrt(1.0 + (uu**2 + vv**2) / frame.sad_mm**2)
    return np.asarray(d_hit * stretch, dtype=np.float64)


def _bolus_on_axes(
    grid_axes: tuple[FloatArray, FloatArray, FloatArray],
    external: BoolArray,
    beam: Beam,
    applicator: Applicator,
    sad_mm: float,
    ray_step_mm: float | None = None,
) -> BoolArray:
    if beam.bolus is None:
        return np.zeros(external.shape, dtype=bool)
    xs, ys, zs = grid_axes
    frame, _ = beam_frame(beam, external, grid_axes, sad_mm)
    poly = beam_cutout(beam, applicator)
    margin, thick = beam.bolus.margin_mm, beam.bolus.thickness_mm
    lo, hi = poly.min(axis=0) - margin - 1.0, poly.max(axis=0) + margin + 1.0
    # rays at half the voxel spacing unless told: a voxel then never falls between two rays' surfaces
    step = ray_step_mm or 0.5 * min(
        float(np.diff(xs[:2])[0]) if len(xs) > 1 else 1.0, float(np.diff(ys[:2])[0]) if len(ys) > 1 else 1.0
    )
    ub = np.arange(lo[0], hi[0] + step, step)
    vb = np.arange(lo[1], hi[1] + step, step)
    # the source-to-axis distance range the grid spans
    corners = np.array([[x, y, z] for x in (xs[0], xs[-1]) for y in (ys[0], ys[-1]) for z in (zs[0], zs[-1])])
    dc = (corners - np.asarray(frame.source_mm)) @ frame.direction
    surf = _ray_surface(frame, external, grid_axes, ub, vb, (max(float(dc.min()), 1.0), float(dc.max())), step)
    if np.all(np.isnan(surf)):
        return np.zeros(external.shape, dtype=bool)
    # candidate box: the cone between the nearest surface minus the thickness and the farthest surface
    dmin = float(np.nanmin(surf)) - thick - step
    dmax = float(np.nanmax(surf)) + step
    cone = frame.from_fan(*np.meshgrid([lo[0], hi[0]], [lo[1], hi[1]], [dmin, dmax], indexing="ij"))
    pmin, pmax = cone.reshape(-1, 3).min(axis=0), cone.reshape(-1, 3).max(axis=0)
    ix = np.nonzero((xs >= pmin[0] - step) & (xs <= pmax[0] + step))[0]
    iy = np.nonzero((ys >= pmin[1] - step) & (ys <= pmax[1] + step))[0]
    iz = np.nonzero((zs >= pmin[2] - step) & (zs <= pmax[2] + step))[0]
    out = np.zeros(external.shape, dtype=bool)
    if ix.size == 0 or iy.size == 0 or iz.size == 0:
        return out
    zz, yy, xx = np.meshgrid(zs[iz], ys[iy], xs[ix], indexing="ij")
    u, v, d = frame.to_fan(np.stack([xx, yy, zz], axis=-1))
    length = d * np.sqrt(1.0 + (u**2 + v**2) / sad_mm**2)
    iu = np.clip(np.rint((u - ub[0]) / step).astype(int), 0, len(ub) - 1)
    iv = np.clip(np.rint((v - vb[0]) / step).astype(int), 0, len(vb) - 1)
    s = surf[iu, iv]
    with np.errstate(invalid="ignore"):
        near_surface = (length < s) & (length >= s - thick)
    sub = near_surface & inside_polygon_with_margin(poly, u, v, margin)
    sub &= ~external[np.ix_(iz, iy, ix)]
    out[np.ix_(iz, iy, ix)] = sub
    return out


def bolus_mask(grid: GridGeometry, external: BoolArray, beam: Beam, applicator: Applicator, sad_mm: float) -> BoolArray:
    """Bolus of ``beam`` on ``grid``: voxels outside the External whose ray from the source projects
    (isocenter plane) inside the cutout grown by the bolus margin, within the bolus thickness before the surface along
    the ray. ``beam.isocenter_mm`` must be set (see :func:`rtexport.dose.resolve_beam`)."""
    return _bolus_on_axes(grid.axes(), external, beam, applicator, sad_mm)


def _beam_box(
    ct_geometry: CTGeometry,
    external_contours: Sequence[Contour],
    beam: Beam,
    applicator: Applicator,
    sad_mm: float,
    axes: tuple[FloatArray, FloatArray, FloatArray],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The part of the fine axes that the beam's field (cutout grown by the bolus margin) can reach: the bolus
    lies in it, so the fine work is bounded by the field, not by the length of the CT."""
    assert beam.bolus is not None
    xs, ys, zs = axes
    coarse = (xs[::4], ys[::4], zs)  # every 4th fine point: the same samples, coarser
    outline = rasterize_planes(external_contours, *coarse, ct_geometry.slice_spacing_mm)
    if not outline.any():
        return axes
    frame, _ = beam_frame(beam, outline, coarse, sad_mm)
    poly = beam_cutout(beam, applicator)
    pad = beam.bolus.margin_mm + 4 * float(xs[1] - xs[0] if len(xs) > 1 else 1.0)
    lo, hi = poly.min(axis=0) - pad, poly.max(axis=0) + pad
    corners = np.array([[x, y, z] for x in (xs[0], xs[-1]) for y in (ys[0], ys[-1]) for z in (zs[0], zs[-1])])
    d = (corners - np.asarray(frame.source_mm)) @ frame.direction
    pyramid = frame.from_fan(
        *np.meshgrid([lo[0], hi[0]], [lo[1], hi[1]], [max(float(d.min()), 1.0), float(d.max())], indexing="ij")
    ).reshape(-1, 3)
    bmin, bmax = pyramid.min(axis=0), pyramid.max(axis=0)
    dz = ct_geometry.slice_spacing_mm
    keep = (
        (xs >= bmin[0]) & (xs <= bmax[0]),
        (ys >= bmin[1]) & (ys <= bmax[1]),
        (zs >= bmin[2] - dz) & (zs <= bmax[2] + dz),
    )
    if not all(k.any() for k in keep):
        return axes
    return xs[keep[0]], ys[keep[1]], zs[keep[2]]


def bolus_contours(
    ct_geometry: CTGeometry,
    external_contours: Sequence[Contour],
    beam: Beam,
    applicator: Applicator,
    sad_mm: float,
    in_plane_mm: float = 1.0,
    target_contours: Sequence[Contour] | None = None,
) -> list[Contour]:
    """The bolus of ``beam`` as CLOSED_PLANAR contours on the CT slice planes it crosses. A beam aimed at a
    target needs ``target_contours`` (its isocenter is their centroid, as in the dose computation)."""
    if beam.bolus is None:
        return []
    if beam.isocenter_mm is None:
        from rtexport.dose.plan import resolve_beam  # plan builds on this module

        if target_contours is None:
            raise DoseError(f"beam {beam.name}: aimed at {beam.target!r}; pass its contours to build the bolus")
        beam = resolve_beam(beam, {str(beam.target): target_contours})
    x0, y0, _ = ct_geometry.origin_mm
    xs_ct, ys_ct = ct_geometry.x_mm(), ct_geometry.y_mm()
    xs = np.arange(x0, xs_ct[-1] + 1e-6, in_plane_mm)
    ys = np.arange(y0, ys_ct[-1] + 1e-6, in_plane_mm)
    zs = np.asarray(ct_geometry.slice_z_mm, dtype=np.float64)
    xs, ys, zs = _beam_box(ct_geometry, external_contours, beam, applicator, sad_mm, (xs, ys, zs))
    external = rasterize_planes(external_contours, xs, ys, zs, ct_geometry.slice_spacing_mm)
    if not external.any():
        raise DoseError("the External has no contour on the CT slices; cannot build bolus")
    # Contours are traced at in_plane_mm; rays that far apart place the surface to within half of it.
    mask = _bolus_on_axes((xs, ys, zs), external, beam, applicator, sad_mm, ray_step_mm=in_plane_mm)
    out: list[Contour] = []
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        padded = np.pad(mask[k].astype(np.float64), 1)
        for traced in find_contours(padded, 0.5):  # type: ignore[no-untyped-call]
            c = drop_collinear(traced[:-1] if np.allclose(traced[0], traced[-1]) else traced)
            if len(c) < 3:
                continue
            pts = np.column_stack(
                [
                    xs[0] + (c[:, 1] - 1) * in_plane_mm,
                    ys[0] + (c[:, 0] - 1) * in_plane_mm,
                    np.full(len(c), zs[k]),
                ]
            )
            out.append(Contour(points_mm=np.round(pts, 3), geometric_type="CLOSED_PLANAR"))
    return out
