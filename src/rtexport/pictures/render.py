"""Pictures of a plan: CT slices with structure outlines and dose (PNG), the DVH and the beam's-eye
view of each cutout (SVG). Rendered server-side with numpy, scipy and Pillow."""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw
from skimage.measure import find_contours

from rtexport.geometry.contours import PlanarStructure
from rtexport.geometry.sampling import sample
from rtexport.model.course import Contour, Course, CTGeometry
from rtexport.model.dose import DoseGrid
from rtexport.pictures.overlay import BeamLines, annotate, draw_beams
from rtexport.pictures.svg import LOOK
from rtexport.pictures.views import IMAGE_PX as IMAGE_PX
from rtexport.pictures.views import Plane as Plane
from rtexport.pictures.views import View as View
from rtexport.pictures.views import plane as plane

K = TypeVar("K")
V = TypeVar("V")
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

WINDOW_HU = (-160.0, 240.0)  # soft tissue: level 40, width 400
# Isodose lines (% of the prescription) and the dose wash come from one sequential map: violet (low) to pale pink
# (high), lightness rising with dose. Structures take their own hues outside violet–magenta (hue 245°–345°), so
# no isodose line can be mistaken for a structure's outline (see tests/pictures/test_colors.py).
DOSE_MAP = ((0.1, "#4b2a8c"), (0.3, "#6a3fc8"), (0.5, "#8e4fe0"), (0.8, "#b65ee6"), (0.9, "#d06ae0"),
            (0.95, "#e582dc"), (1.0, "#f4a3e4"), (1.07, "#ffd3f3"))  # fmt: skip
ISODOSE_LEVELS = (107, 100, 95, 90, 80, 50, 30)
PALETTE = ("#f2c14e", "#ef5b5b", "#62d26f", "#4fb3ff", "#ff9f1c", "#2ec4b6", "#b5e550", "#9ad1d4", "#e07a5f",
           "#c9a27e")  # fmt: skip
EXTERNAL_COLOR = "#9fb4c7"


def structure_colors(names: Sequence[str], external: str | None) -> dict[str, str]:
    colors = {}
    k = 0
    for name in names:
        if name == external:
            colors[name] = EXTERNAL_COLOR
        else:
            colors[name] = PALETTE[k % len(PALETTE)]
            k += 1
    return colors


@dataclass(frozen=True)
class CourseVolume:
    """The CT in HU and each structure as a mask on the CT grid, both indexed [z, y, x]."""

    ct: CTGeometry
    hu: F32
    masks: dict[str, npt.NDArray[np.bool_]]
    contours: dict[str, list[Contour]]

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.hu.shape
        return (z, y, x)

    def count(self, view: View) -> int:
        nz, ny, nx = self.shape
        return {View.AXIAL: nz, View.SAGITTAL: nx, View.CORONAL: ny}[view]

    def voxel_cc(self) -> float:
        dy, dx = self.ct.pixel_spacing_mm
        return dx * dy * self.ct.slice_spacing_mm / 1000.0


def rasterize(ct: CTGeometry, contours: dict[str, list[Contour]]) -> dict[str, npt.NDArray[np.bool_]]:
    """Structure masks on the CT grid, by the same rule as the dose engine's (nearest contour plane, even-odd)."""
    axes = ct.axes()
    return {name: PlanarStructure(items, ct.slice_spacing_mm).fill(*axes) for name, items in contours.items()}


def _points(p: Plane) -> F64:
    return np.stack([p.x, p.y, p.z], axis=-1)


def sample_dose(dose: DoseGrid, x: F64, y: F64, z: F64) -> F64:
    """Dose (Gy) at points, trilinear; zero outside the grid."""
    return sample(dose.gy, dose.geometry.axes(), np.stack([x, y, z], axis=-1))


def _hex(color: str) -> tuple[int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def _colormap(rel: F64) -> npt.NDArray[np.float64]:
    """The dose map (:data:`DOSE_MAP`) at relative doses; RGB in 0–1."""
    stops = np.array([level for level, _ in DOSE_MAP])
    rgb = np.array([_hex(color) for _, color in DOSE_MAP], dtype=np.float64) / 255.0
    return np.stack([np.interp(rel, stops, rgb[:, c]) for c in range(3)], axis=-1)


def isodose_color(pct: int) -> str:
    """The colour of an isodose line: :data:`DOSE_MAP` at ``pct`` % of the prescription."""
    r, g, b = (round(255 * float(c)) for c in _colormap(np.array([pct / 100.0]))[0])
    return f"#{r:02x}{g:02x}{b:02x}"


ISODOSE = tuple((pct, isodose_color(pct)) for pct in ISODOSE_LEVELS)


def _lines(field: F64, level: float) -> list[list[tuple[float, float]]]:
    found = find_contours(field, level)  # type: ignore[no-untyped-call]
    return [[(float(c) + 0.5, float(r) + 0.5) for r, c in line] for line in found if len(line) > 2]


@dataclass(frozen=True)
class Outlines:
    """Outlines to draw besides the course's structures (a plan's bolus): planar contours for the axial view,
    masks on the CT grid for the others."""

    contours: dict[str, list[Contour]]
    masks: dict[str, npt.NDArray[np.bool_]]

    @classmethod
    def of(cls, ct: CTGeometry, contours: dict[str, list[Contour]]) -> Outlines:
        return cls(contours, rasterize(ct, contours))


def render_slice(
    vol: CourseVolume,
    view: View,
    index: int,
    dose: DoseGrid | None,
    reference_gy: float,
    colors: dict[str, str],
    size_px: int = IMAGE_PX,
    extra: Outlines | None = None,
    beams: Sequence[BeamLines] = (),
    annotated: bool = True,
) -> bytes:
    """A PNG of one slice: CT (soft-tissue window), dose colour wash from 10 %, isodose lines, outlines of the
    structures and of ``extra``, each beam's central axis and field edges; ``annotated``: the orientation letters
    and a scale bar."""
    p = plane(vol.ct, view, index, size_px)
    ct_axes, points = vol.ct.axes(), _points(p)
    hu = sample(vol.hu, ct_axes, points, outside="edge")
    lo, hi = WINDOW_HU
    gray = np.clip((hu - lo) / (hi - lo), 0.0, 1.0)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rel: F64 | None = None
    if dose is not None and reference_gy > 0:
        rel = sample_dose(dose, p.x, p.y, p.z) / reference_gy
        alpha = np.where(rel >= 0.1, 0.28 + 0.17 * np.clip(rel, 0, 1), 0.0)[..., None]
        rgb = rgb * (1 - alpha) + _colormap(rel) * alpha
    img = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    if rel is not None:
        for pct, color in ISODOSE:
            for line in _lines(rel, pct / 100):
                draw.line(line, fill=_hex(color), width=2)
    sets = [Outlines(vol.contours, vol.masks)] + ([] if extra is None else [extra])
    if view is View.AXIAL:
        # The drawn contours themselves: smoother than an outline of the voxel mask.
        z = float(p.z[0, 0])
        half = vol.ct.slice_spacing_mm / 2
        for name, items in ((n, c) for o in sets for n, c in o.contours.items()):
            for c in items:
                pts = c.points_mm
                if len(pts) >= 3 and abs(pts[0, 2] - z) <= half + 1e-6:
                    xy = p.pixels(pts[:, 0], pts[:, 1])
                    draw.line([*xy, xy[0]], fill=_hex(colors.get(name, "#ffffff")), width=2, joint="curve")
    else:
        for name, mask in ((n, m) for o in sets for n, m in o.masks.items()):
            m = sample(mask, ct_axes, points)
            for line in _lines(m, 0.5):
                draw.line(line, fill=_hex(colors.get(name, "#ffffff")), width=2)
    draw_beams(img, view, p, beams)
    if annotated:
        annotate(img, view, p)
    return _png(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


# -- DVH ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DVHCurve:
    name: str
    color: str
    volume_cc: float
    dose_gy: F64  # bin edges
    volume_pct: F64  # cumulative: % of the structure receiving at least dose_gy
    mean_gy: float
    max_gy: float
    d95_gy: float = 0.0  # the dose at least 95 % of the structure receives
    at_least_pct: tuple[tuple[float, float], ...] = ()  # (dose level Gy, % of the structure receiving at least it)

    def volume_at_least(self, gy: float) -> float:
        """% of the structure receiving at least ``gy`` (a level :func:`dvh` was asked for)."""
        return next(pct for level, pct in self.at_least_pct if level == gy)


def _at_least_of(d: F64, fraction: float) -> float:
    """The dose that at least ``fraction`` of the samples receive: the k-th hottest, k = ⌈fraction · n⌉."""
    k = math.ceil(fraction * len(d) - 1e-9)
    return float(np.partition(d, len(d) - k)[len(d) - k])


def dvh(
    vol: CourseVolume, dose: DoseGrid, colors: dict[str, str], bins: int = 200, levels_gy: Sequence[float] = ()
) -> list[DVHCurve]:
    """Cumulative DVH of each non-empty structure, dose sampled at the CT voxel centres inside it; D95 and the %
    of volume at ``levels_gy`` from the samples themselves (not the binned curve)."""
    zs = np.asarray(vol.ct.slice_z_mm, dtype=np.float64)
    xs, ys = vol.ct.x_mm(), vol.ct.y_mm()
    per: dict[str, F64] = {}
    for name, mask in vol.masks.items():
        k, j, i = np.nonzero(mask)
        if len(k):
            per[name] = sample_dose(dose, xs[i], ys[j], zs[k])
    top = max((float(d.max()) for d in per.values()), default=0.0)
    edges = np.linspace(0.0, max(top, 1e-6) * 1.02, bins + 1)
    curves = []
    for name, d in per.items():
        counts = np.histogram(d, bins=edges)[0][::-1].cumsum()[::-1]
        pct = np.append(counts, 0) * 100.0 / len(d)
        curves.append(
            DVHCurve(
                name,
                colors.get(name, "#ffffff"),
                len(d) * vol.voxel_cc(),
                edges,
                pct,
                float(d.mean()),
                float(d.max()),
                _at_least_of(d, 0.95),
                tuple((float(g), 100.0 * float(np.count_nonzero(d >= g)) / len(d)) for g in levels_gy),
            )
        )
    return curves


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def dvh_svg(curves: Sequence[DVHCurve], prescription_gy: float, width: int = 560, height: int = 330) -> str:
    """The cumulative DVH as an inline SVG: dose (Gy) across, volume (%) up, a dashed prescription line."""
    left, right, top, bottom = 52, 16, 14, 40
    pw, ph = width - left - right, height - top - bottom
    dmax = max([float(c.dose_gy[-1]) for c in curves] + [prescription_gy * 1.15])
    sx: Callable[[float], float] = lambda d: left + pw * d / dmax  # noqa: E731
    sy: Callable[[float], float] = lambda v: top + ph * (1 - v / 100)  # noqa: E731
    out = [
        f'<svg class="dvh" viewBox="0 0 {width} {height}" role="img" aria-label="Dose-volume histogram" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" {LOOK["plot-bg"]}/>',
    ]
    step = _nice_step(dmax)
    d = 0.0
    while d <= dmax + 1e-9:
        x = sx(d)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" {LOOK["grid"]}/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" {LOOK["tick"]} text-anchor="middle">{d:g}</text>')
        d += step
    for v in range(0, 101, 20):
        y = sy(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" {LOOK["grid"]}/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" {LOOK["tick"]} text-anchor="end">{v}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" {LOOK["axis"]} text-anchor="middle">Dose (Gy)</text>')
    out.append(
        f'<text x="14" y="{top + ph / 2}" {LOOK["axis"]} text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2})">Volume (%)</text>'
    )
    if prescription_gy > 0:
        x = sx(prescription_gy)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" {LOOK["rx"]}/>')
    for c in curves:
        pairs = zip(c.dose_gy, c.volume_pct, strict=True)
        pts = " ".join(f"{sx(float(dd)):.1f},{sy(float(vv)):.1f}" for dd, vv in pairs)
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{c.color}" stroke-width="2">'
            f"<title>{escape(c.name)}: mean {c.mean_gy:.2f} Gy, max {c.max_gy:.2f} Gy</title></polyline>"
        )
    out.append("</svg>")
    return "".join(out)


# -- beam's-eye view --------------------------------------------------------------------------------------------


# -- caches ---------------------------------------------------------------------------------------------------


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used cache (CT volumes are tens of MB: keep a few)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: slow, and a duplicate build is harmless
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def course_key(course: Course) -> tuple[str, str, str]:
    return (course.id, course.ct.series_instance_uid, course.structure_set.sha256)
