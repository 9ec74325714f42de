"""What a slice picture carries besides CT, structures and dose: the patient's orientation at each edge, a scale
bar, each beam's central axis and field edges, and the picture that says why there is no picture."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from rtexport.geometry.iec import BeamFrame
from rtexport.pictures.views import Plane, View

# Patient coordinates are DICOM's LPS: +x toward the patient's left, +y posterior, +z superior. The picture's
# axes per view (horizontal, vertical) as :func:`~rtexport.pictures.render.plane` lays them out.
AXES = {View.AXIAL: (0, 1), View.CORONAL: (0, 2), View.SAGITTAL: (1, 2)}
# The letter at each edge: (left, right, top, bottom).
EDGES = {View.AXIAL: ("R", "L", "A", "P"), View.CORONAL: ("R", "L", "S", "I"), View.SAGITTAL: ("A", "P", "S", "I")}
LINE_COLOR = (255, 255, 255)  # beams: white dashes, unlike every structure hue and the isodose map
LABEL_COLOR = (255, 255, 255)
SHADOW = (0, 0, 0)


def orientation(view: View) -> dict[str, str]:
    """The patient direction at each edge of a view's picture (R/L, A/P, S/I)."""
    left, right, top, bottom = EDGES[view]
    return {"left": left, "right": right, "top": top, "bottom": bottom}


def scale_length_mm(mm_per_px: float, width_px: int) -> int:
    """A round length (10, 20, 50 or 100 mm …) about a fifth of the picture's width."""
    target = mm_per_px * width_px / 5
    for length in (10, 20, 50, 100, 200, 500):
        if length >= target * 0.7:
            return length
    return 1000


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, anchor: str, size: int = 15) -> None:
    draw.text(xy, text, fill=LABEL_COLOR, font=_font(size), anchor=anchor, stroke_width=2, stroke_fill=SHADOW)


def annotate(img: Image.Image, view: View, p: Plane) -> None:
    """The orientation letters at the middle of each edge and a scale bar at the lower left."""
    draw = ImageDraw.Draw(img)
    w, h = img.size
    edges = orientation(view)
    _text(draw, (6, h / 2), edges["left"], "lm")
    _text(draw, (w - 6, h / 2), edges["right"], "rm")
    _text(draw, (w / 2, 6), edges["top"], "mt")
    _text(draw, (w / 2, h - 6), edges["bottom"], "mb")
    mm_per_px = abs(p.step[0])
    length = scale_length_mm(mm_per_px, w)
    px = length / mm_per_px
    x0, y0 = 12.0, h - 14.0
    for color, width in ((SHADOW, 5), (LABEL_COLOR, 3)):
        draw.line([(x0, y0), (x0 + px, y0)], fill=color, width=width)
        draw.line([(x0, y0 - 5), (x0, y0 + 1)], fill=color, width=width - 1)
        draw.line([(x0 + px, y0 - 5), (x0 + px, y0 + 1)], fill=color, width=width - 1)
    _text(draw, (x0 + px / 2, y0 - 6), f"{length} mm", "mb", 12)


@dataclass(frozen=True)
class BeamLines:
    """A beam as the CT views draw it: its frame and its aperture at the isocenter plane (beam's-eye view)."""

    name: str
    frame: BeamFrame
    cutout_mm: npt.NDArray[np.float64]


def _extent(polygon: npt.NDArray[np.float64], direction: tuple[float, float]) -> tuple[float, float]:
    """How far a line through the origin along ``direction`` runs inside ``polygon`` (mm, negative side first)."""
    dx, dy = direction
    lo, hi = 0.0, 0.0
    n = len(polygon)
    for k in range(n):
        (px, py), (qx, qy) = polygon[k], polygon[(k + 1) % n]
        ex, ey = qx - px, qy - py
        det = dx * (-ey) - dy * (-ex)
        if abs(det) < 1e-12:
            continue
        s = (px * (-ey) - py * (-ex)) / det  # distance along the direction
        w = (dx * py - dy * px) / det  # where along the edge
        if -1e-9 <= w <= 1 + 1e-9:
            lo, hi = min(lo, s), max(hi, s)
    return lo, hi


def _dashed(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], dash: float = 8.0) -> None:
    length = math.dist(a, b)
    if length == 0:
        return
    steps = int(length // dash)
    for k in range(0, steps, 2):
        t0, t1 = k * dash / length, min((k + 1) * dash / length, 1.0)
        p0 = (a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0)
        p1 = (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)
        draw.line([p0, p1], fill=LINE_COLOR, width=2)


def beam_segments(
    beam: BeamLines, view: View
) -> list[tuple[str, tuple[float, float, float], tuple[float, float, float]]]:
    """The lines to draw for a beam in a view (patient mm): the central axis (source to 20 % beyond the
    isocenter), and the two field edges where the cutout meets the plane through the axis and the view's in-plane
    perpendicular. Empty when the beam runs across the view (nothing of it lies in the plane's directions)."""
    f = beam.frame
    h_axis, v_axis = AXES[view]
    d = f.direction
    inplane = np.array([d[h_axis], d[v_axis]])
    if np.linalg.norm(inplane) < 0.5:  # more than 60° out of the plane: its projected lines would mislead
        return []
    # The in-plane perpendicular of the axis, as a patient vector, then in beam's-eye-view coordinates.
    perp = np.zeros(3)
    perp[h_axis], perp[v_axis] = -inplane[1], inplane[0]
    perp /= np.linalg.norm(perp)
    u, v = float(perp @ f.axes[:, 0]), float(perp @ f.axes[:, 1])
    norm = math.hypot(u, v)
    far = f.sad_mm * 1.2
    source = (float(f.source_mm[0]), float(f.source_mm[1]), float(f.source_mm[2]))
    segments = [("axis", source, f.point_at(far))]
    if norm < 1e-6:
        return segments
    lo, hi = _extent(np.asarray(beam.cutout_mm, dtype=np.float64), (u / norm, v / norm))
    for s in (lo, hi):
        edge = f.from_fan(s * u / norm, s * v / norm, far)
        segments.append(("edge", source, (float(edge[0]), float(edge[1]), float(edge[2]))))
    return segments


def draw_beams(img: Image.Image, view: View, p: Plane, beams: Sequence[BeamLines]) -> None:
    """Each beam's central axis (dashed) and field edges (solid), projected onto the picture."""
    draw = ImageDraw.Draw(img)
    h_axis, v_axis = AXES[view]
    for beam in beams:
        for kind, a, b in beam_segments(beam, view):
            ends = p.pixels(np.array([a[h_axis], b[h_axis]]), np.array([a[v_axis], b[v_axis]]))
            if kind == "axis":
                _dashed(draw, ends[0], ends[1])
            else:
                draw.line(ends, fill=LINE_COLOR, width=1)


def message_png(text: str, size_px: int = 480) -> bytes:
    """A picture that says why there is no picture (instead of a broken image)."""
    img = Image.new("RGB", (size_px, size_px), (15, 23, 34))
    draw = ImageDraw.Draw(img)
    lines = textwrap.wrap(text, width=44)[:12]
    top = size_px / 2 - 11 * len(lines)
    for k, line in enumerate(lines):
        draw.text((size_px / 2, top + 22 * k), line, fill=(223, 231, 240), font=_font(16), anchor="mt")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
