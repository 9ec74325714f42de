"""Planar polygons: area, centroid, perimeter, equivalent square, and the one inside rule.

A point is inside a set of closed polygons when a ray from it toward +x crosses their edges an odd number of times
(even-odd: a contour inside another is a hole). An edge counts for the rows ``min(y0, y1) <= y < max(y0, y1)`` and
for points strictly left of the crossing, so :func:`fill` on a grid and :func:`contains` on loose points agree
point for point, also on edges and vertices. numpy only: the model imports this module for validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
PolygonLike = FloatArray | Sequence[Sequence[float]]

_BLOCK = 1 << 20


def _xy(poly: PolygonLike) -> FloatArray:
    return np.asarray(poly, dtype=np.float64)[:, :2]


def area(poly: PolygonLike) -> float:
    """Signed shoelace area (positive counter-clockwise in x-right, y-up axes)."""
    p = _xy(poly)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def perimeter(poly: PolygonLike) -> float:
    """Length of the closed outline."""
    p = _xy(poly)
    return float(np.sum(np.hypot(*(np.roll(p, -1, axis=0) - p).T)))


def equivalent_square(poly: PolygonLike) -> float:
    """Side of the equivalent square of a field: 4 · area / perimeter."""
    return 4.0 * abs(area(poly)) / perimeter(poly)


def centroid(poly: PolygonLike) -> tuple[float, float] | None:
    """Area centroid of a simple polygon (None if it encloses no area)."""
    p = _xy(poly)
    x, y = p[:, 0], p[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = 0.5 * float(cross.sum())
    if abs(a) < 1e-9:
        return None
    return float(((x + xn) * cross).sum()) / (6.0 * a), float(((y + yn) * cross).sum()) / (6.0 * a)


def planar_centroid(rings: Iterable[FloatArray]) -> tuple[float, float, float] | None:
    """Centroid of planar contours (each (N, 3), one z): their area centroids weighted by area."""
    total, acc = 0.0, np.zeros(3)
    for ring in rings:
        p = np.asarray(ring, dtype=np.float64)
        if len(p) < 3:
            continue
        c = centroid(p)
        if c is None:
            continue
        a = abs(area(p))
        total += a
        acc += a * np.array([c[0], c[1], float(p[:, 2].mean())])
    if total <= 0:
        return None
    return float(acc[0] / total), float(acc[1] / total), float(acc[2] / total)


def _edges(polygons: Iterable[PolygonLike]) -> Iterable[tuple[FloatArray, FloatArray, FloatArray, FloatArray]]:
    for poly in polygons:
        p = _xy(poly)
        if len(p) < 3:
            continue
        x0, y0 = p[:, 0], p[:, 1]
        yield x0, y0, np.roll(x0, -1), np.roll(y0, -1)


def contains(polygons: Iterable[PolygonLike], x: npt.ArrayLike, y: npt.ArrayLike) -> BoolArray:
    """Even-odd inside test of points (x, y), any matching shapes, against closed polygons."""
    xa, ya = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    px, py = xa.ravel()[:, None], ya.ravel()[:, None]
    count = np.zeros(px.shape[0], dtype=np.int64)
    for x0, y0, x1, y1 in _edges(polygons):
        keep = y0 != y1  # a horizontal edge crosses no row
        x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
        ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
        block = max(1, _BLOCK // max(len(count), 1))  # points × edges at a time, so memory stays bounded
        for e in range(0, len(x0), block):
            sl = slice(e, e + block)
            # the same expression as fill's, so both agree to the last bit on edges
            xc = x0[sl] + (py - y0[sl]) / (y1[sl] - y0[sl]) * (x1[sl] - x0[sl])
            count += np.count_nonzero((py >= ylo[sl]) & (py < yhi[sl]) & (px < xc), axis=1)
    return np.asarray(count % 2 == 1).reshape(xa.shape)


def _crossed(lo: FloatArray, hi: FloatArray, lines: FloatArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The pairs (edge, line) with ``lo[edge] <= lines[line] < hi[edge]`` (``lines`` increasing), ordered by edge
    then line: what ``np.nonzero`` of that comparison gives, without the edges × lines table."""
    first = np.searchsorted(lines, lo, side="left")
    count = np.maximum(np.searchsorted(lines, hi, side="left") - first, 0)
    e = np.repeat(np.arange(len(lo)), count)
    start = np.cumsum(count) - count  # where each edge's run begins in the output
    j = np.arange(len(e)) - np.repeat(start - first, count)
    return e, j


def fill(polygons: Iterable[PolygonLike], xs: FloatArray, ys: FloatArray) -> BoolArray:
    """Even-odd fill of closed polygons sampled on the grid ``xs`` × ``ys`` (both increasing): mask [y, x]."""
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    ny, nx = len(ys), len(xs)
    # each crossing flips the parity of the columns left of it: a flip at column 0 and one at k, xor-accumulated
    # along x. The flips are counted column-major ([x, y]) so that the accumulation runs over whole rows of memory.
    flips: list[npt.NDArray[np.intp]] = []
    for x0, y0, x1, y1 in _edges(polygons):
        ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
        e, j = _crossed(ylo, yhi, ys)
        if e.size == 0:
            continue
        xc = x0[e] + (ys[j] - y0[e]) / (y1[e] - y0[e]) * (x1[e] - x0[e])
        k = np.searchsorted(xs, xc, side="left")  # the columns with x < xc toggle
        flips += [j, k * ny + j]
    if not flips:
        return np.zeros((ny, nx), dtype=bool)
    toggles = (np.bincount(np.concatenate(flips), minlength=(nx + 1) * ny) & 1).astype(np.uint8)
    parity = np.bitwise_xor.accumulate(toggles.reshape(nx + 1, ny)[:nx], axis=0)
    return np.ascontiguousarray(parity.T).view(np.bool_)


def _span(axis: FloatArray, step: float, lo: float, hi: float) -> slice:
    """The cells (centres on ``axis``, ``step`` wide) that reach into [lo, hi], one more on each side."""
    first = int(np.searchsorted(axis + step / 2, lo, side="left"))
    last = int(np.searchsorted(axis - step / 2, hi, side="right"))
    return slice(max(first - 1, 0), min(last + 1, len(axis)))


def coverage(polygons: Iterable[PolygonLike], xs: FloatArray, ys: FloatArray, sub: int = 16) -> FloatArray:
    """Fraction of each cell of the grid ``xs`` × ``ys`` (cell centres, evenly spaced, increasing) inside closed
    polygons by the even-odd rule: [y, x], exact along x, from ``sub`` scanlines per cell along y (so an outline
    is placed to 1/(2·sub) of a cell, not snapped to cell centres as :func:`fill` does)."""
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    out = np.zeros((len(ys), len(xs)), dtype=np.float64)
    edges = list(_edges(polygons))
    if not edges:
        return out
    dx = float(xs[1] - xs[0]) if len(xs) > 1 else 1.0
    dy = float(ys[1] - ys[0]) if len(ys) > 1 else 1.0
    # only the cells the polygons' box reaches can be covered: the sums below are zero elsewhere
    x_all, y_all = np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])
    sy = _span(ys, dy, float(y_all.min()), float(y_all.max()))
    sx = _span(xs, dx, float(x_all.min()), float(x_all.max()))
    xs, ys = xs[sx], ys[sy]
    nx, ny = len(xs), len(ys)
    if nx == 0 or ny == 0:
        return out
    bounds = np.concatenate([xs - dx / 2, [xs[-1] + dx / 2]])
    lines = (ys[:, None] + ((np.arange(sub) + 0.5) / sub - 0.5) * dy).ravel()
    rows: list[npt.NDArray[np.int64]] = []
    cross: list[FloatArray] = []
    for x0, y0, x1, y1 in edges:
        ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
        e, j = _crossed(ylo, yhi, lines)
        rows.append(j)
        cross.append(x0[e] + (lines[j] - y0[e]) / (y1[e] - y0[e]) * (x1[e] - x0[e]))
    if sum(len(r) for r in rows) == 0:
        return out
    row, xc = np.concatenate(rows), np.concatenate(cross)
    order = np.lexsort((xc, row))
    row, xc = row[order], xc[order]
    first = np.searchsorted(row, row, side="left")  # each line's crossings, left to right: in, out, in, ...
    sign = np.where((np.arange(len(row)) - first) % 2 == 0, 1.0, -1.0)
    # inside length left of each cell boundary b: Σ sign·max(0, b − xc), as ramps summed along the line. The sum is
    # linear, so a cell row's ``sub`` lines are added up before the ramps rather than each line ramped on its own.
    flat = (row // sub) * (nx + 2) + np.searchsorted(bounds, xc, side="left")
    size = ny * (nx + 2)
    s1 = np.bincount(flat, weights=sign, minlength=size).reshape(ny, nx + 2)
    s2 = np.bincount(flat, weights=sign * xc, minlength=size).reshape(ny, nx + 2)
    left = bounds[None, :] * np.cumsum(s1, axis=1)[:, : nx + 1] - np.cumsum(s2, axis=1)[:, : nx + 1]
    out[sy, sx] = np.clip(np.diff(left, axis=1) / (dx * sub), 0.0, 1.0)
    return out


def inside_with_margin(poly: PolygonLike, x: npt.ArrayLike, y: npt.ArrayLike, margin: float) -> BoolArray:
    """Points inside the polygon or within ``margin`` of its outline."""
    xa, ya = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = contains([poly], xa, ya)
    if margin <= 0:
        return out
    # only points outside yet within the margin of the outline's box can be within the margin of an edge
    p = _xy(poly)
    lo, hi = p.min(axis=0) - margin, p.max(axis=0) + margin
    near = ~out & (xa >= lo[0]) & (xa <= hi[0]) & (ya >= lo[1]) & (ya <= hi[1])
    xn, yn = xa[near], ya[near]
    hit = np.zeros(xn.shape, dtype=bool)
    for x0, y0, x1, y1 in _edges([poly]):
        for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
            ex, ey = c - a, d - b
            t = np.clip(((xn - a) * ex + (yn - b) * ey) / max(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
            hit |= (xn - a - t * ex) ** 2 + (yn - b - t * ey) ** 2 <= margin * margin
    out[near] = hit
    return out


def drop_collinear(ring: FloatArray, tolerance: float = 0.1) -> FloatArray:
    """The vertices of a closed ring (N, 2) that are off the line through their neighbours by more than
    ``tolerance``. A marching-squares trace has a vertex per pixel edge; straight runs keep their ends."""
    if len(ring) < 4:
        return ring
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    chord = nxt - prev
    cross = chord[:, 0] * (ring[:, 1] - prev[:, 1]) - chord[:, 1] * (ring[:, 0] - prev[:, 0])
    off_line = np.abs(cross) > tolerance * np.maximum(np.hypot(chord[:, 0], chord[:, 1]), 1e-12)
    return ring[off_line]
