"""The pictures that need no image library: each cutout in beam's-eye view (SVG), and the look every SVG element
has (presentation attributes, so an SVG stands alone in the PDF report; the page's stylesheet overrides them)."""

from __future__ import annotations

from html import escape

from rtexport.model.plan import Beam, default_cutout
from rtexport.model.site import Applicator, ApplicatorShape

__all__ = ["LOOK", "bev_svg"]

# Each SVG element's look as presentation attributes, so the SVG stands alone (the PDF report); the page's
# stylesheet overrides them by class.
LOOK = {
    name: f'class="{name}" {look}'
    for name, look in {
        "plot-bg": 'fill="#fbfcfd" stroke="#dde3ea"',
        "grid": 'stroke="#e6eaef"',
        "tick": 'font-size="11" fill="#667487"',
        "axis": 'font-size="12" fill="#1d2733"',
        "rx": 'stroke="#b42318" stroke-dasharray="5 4" stroke-width="1.2"',
        "bev-bg": 'fill="#f4f6f9"',
        "bev-app": 'fill="none" stroke="#7d8fa3" stroke-width="1.5" stroke-dasharray="4 3"',
        "bev-cutout": 'fill="#ffc43d" fill-opacity="0.3" stroke="#b07d00" stroke-width="2"',
        "bev-axis": 'stroke="#9fb0c4" stroke-width="1"',
        "bev-label": 'font-size="11" fill="#667487"',
    }.items()
}


def _unknown_applicator(beam: Beam, size: int) -> str:
    """No applicator to draw (the site has no such machine or applicator): say so instead of guessing a frame."""
    return (
        f'<svg class="bev" viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img" '
        f'aria-label="No cutout picture of beam {escape(beam.name)}: applicator {escape(beam.applicator)} is not in '
        f'the site configuration" xmlns="http://www.w3.org/2000/svg"><rect width="{size}" height="{size}" '
        f'{LOOK["bev-bg"]}/><text x="{size / 2}" y="{size / 2 - 8}" text-anchor="middle" {LOOK["bev-label"]}>'
        f'Applicator {escape(beam.applicator)}</text><text x="{size / 2}" y="{size / 2 + 8}" text-anchor="middle" '
        f"{LOOK['bev-label']}>not in the site</text></svg>"
    )


def bev_svg(beam: Beam, applicator: Applicator | None, size: int = 150) -> str:
    """The applicator opening and the cutout at the isocenter plane, seen from the source (x right, y up); without
    the applicator (the site lacks the machine) a picture that says so: the opening is never guessed."""
    if applicator is None:
        return _unknown_applicator(beam, size)
    opening = applicator.opening_mm
    shape = applicator.shape
    cutout = beam.cutout_mm or default_cutout(shape, opening)
    half = max(opening[0], opening[1], *(abs(v) for p in cutout for v in p)) / 2 * 1.15 + 5
    s = size / (2 * half)

    def xy(x: float, y: float) -> str:
        return f"{size / 2 + x * s:.1f},{size / 2 - y * s:.1f}"

    w, h = opening
    out = [
        f'<svg class="bev" viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img" '
        f'aria-label="Cutout of beam {escape(beam.name)} in beam\'s-eye view" xmlns="http://www.w3.org/2000/svg">',
        f'<rect width="{size}" height="{size}" {LOOK["bev-bg"]}/>',
    ]
    if shape is ApplicatorShape.CIRCLE:
        out.append(f'<circle cx="{size / 2}" cy="{size / 2}" r="{w / 2 * s:.1f}" {LOOK["bev-app"]}/>')
    else:
        out.append(
            f'<rect x="{size / 2 - w / 2 * s:.1f}" y="{size / 2 - h / 2 * s:.1f}" width="{w * s:.1f}" '
            f'height="{h * s:.1f}" {LOOK["bev-app"]}/>'
        )
    out.append(f'<polygon points="{" ".join(xy(x, y) for x, y in cutout)}" {LOOK["bev-cutout"]}/>')
    out.append(f'<line x1="0" y1="{size / 2}" x2="{size}" y2="{size / 2}" {LOOK["bev-axis"]}/>')
    out.append(f'<line x1="{size / 2}" y1="0" x2="{size / 2}" y2="{size}" {LOOK["bev-axis"]}/>')
    out.append(f'<text x="4" y="{size - 5}" {LOOK["bev-label"]}>{w:g}×{h:g} mm</text>')
    out.append("</svg>")
    return "".join(out)
