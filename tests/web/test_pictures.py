"""The slice pictures as a planner reads them: which way is anterior, how long a centimetre is, where each beam
runs, the dose under the pointer, colours that cannot be confused; and on a site without a machine, pictures that
say what they cannot show instead of breaking."""

from __future__ import annotations

import colorsys
import io
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rtexport.geometry.iec import BeamFrame
from rtexport.pictures.overlay import LINE_COLOR, BeamLines, beam_segments
from rtexport.pictures.render import DOSE_MAP, ISODOSE, PALETTE, View, plane, render_slice, sample_dose
from rtexport.services.pictures import Pictures
from rtexport.services.views import colors, course_volume
from rtexport.workspace import Workspace
from tests.web.conftest import PLAN, PLANNER, edit_site, log_in

# Patient axes (DICOM LPS): the letter at the end each axis increases toward, and at the other end.
TOWARD = {"x": ("L", "R"), "y": ("P", "A"), "z": ("S", "I")}


def _hue_deg(color: str) -> float:
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 360.0 * colorsys.rgb_to_hls(r, g, b)[0]


def _lightness(color: str) -> float:
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_isodoses_come_from_one_sequential_map_unlike_any_structure_hue() -> None:
    by_level = sorted(ISODOSE)  # 30 % … 107 %
    lightness = [_lightness(c) for _, c in by_level]
    assert lightness == sorted(lightness) and len(set(lightness)) == len(lightness)  # sequential: rising
    dose_hues = [_hue_deg(c) for _, c in DOSE_MAP] + [_hue_deg(c) for _, c in ISODOSE]
    for color in PALETTE:
        gap = min(min(abs(_hue_deg(color) - h), 360 - abs(_hue_deg(color) - h)) for h in dose_hues)
        assert gap >= 30, f"structure colour {color} is {gap:.0f}° from an isodose hue"


def test_each_views_letters_match_where_its_axes_run(client: TestClient) -> None:
    log_in(client, PLANNER)
    for view in ("axial", "coronal", "sagittal"):
        info = client.get(f"/plans/{PLAN}/slice/{view}/3.json").json()
        (h, v), (dh, dv), edges = info["axes"], info["step_mm"], info["edges"]
        right, left = TOWARD[h] if dh > 0 else TOWARD[h][::-1]
        bottom, top = TOWARD[v] if dv > 0 else TOWARD[v][::-1]
        assert edges == {"left": left, "right": right, "top": top, "bottom": bottom}, view
    axial = client.get(f"/plans/{PLAN}/slice/axial/3.json").json()["edges"]
    assert (axial["left"], axial["top"]) == ("R", "A")  # as radiologists look at an axial slice


def test_the_scale_bar_is_as_long_as_it_says(client: TestClient) -> None:
    log_in(client, PLANNER)
    info = client.get(f"/plans/{PLAN}/slice/axial/8.json").json()
    png = np.asarray(Image.open(io.BytesIO(client.get(f"/plans/{PLAN}/slice/axial/8.png").content)).convert("RGB"))
    row = np.all(png[png.shape[0] - 14] == 255, axis=-1)  # the bar's row, from its left end at 12 px
    assert row[12] and not row[8]
    drawn_mm = (np.argmin(row[12:]) - 1) * abs(info["step_mm"][0])
    assert info["scale_mm"] in (10, 20, 50, 100, 200)
    assert abs(drawn_mm - info["scale_mm"]) <= 2 * abs(info["step_mm"][0]) + 1


def test_beam_lines_cross_the_isocenter_in_white(home: Path) -> None:
    with Workspace.open(home) as ws:
        state = ws.plan_state(PLAN)
        course = ws.course(state.plan.course)
        vol = course_volume(ws, course)
        aimed = Pictures().aimed(ws, state, ws.site(), vol)
    assert aimed.problem == "" and [b.name for b in aimed.beams] == ["ANT", "ANT_OBL"]
    ant = aimed.beams[0]
    iso = np.array(ant.frame.isocenter_mm)
    index = int(np.argmin(np.abs(np.asarray(course.ct.slice_z_mm) - iso[2])))
    palette = colors(course, state.plan)
    args = (vol, View.AXIAL, index, None, 50.0, palette)
    plain = np.asarray(Image.open(io.BytesIO(render_slice(*args, annotated=False))).convert("RGB"))
    lined = np.asarray(Image.open(io.BytesIO(render_slice(*args, beams=[ant], annotated=False))).convert("RGB"))
    changed = np.any(plain != lined, axis=-1)
    assert changed.sum() > 100 and np.all(lined[changed] == LINE_COLOR)
    p = plane(course.ct, View.AXIAL, index)
    (col, row) = p.pixels(np.array([iso[0]]), np.array([iso[1]]))[0]
    rows, cols = np.nonzero(changed)
    assert np.min(np.hypot(cols - col, rows - row)) <= 5  # the dashed central axis passes the isocenter
    # The field edges are as far apart at the isocenter as the cutout is wide across this plane.
    kinds = [k for k, _, _ in beam_segments(ant, View.AXIAL)]
    assert kinds == ["axis", "edge", "edge"]


def test_a_square_cutout_gives_edges_at_its_half_width() -> None:
    axes = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]).T  # X_b = x, Y_b = -z, toward source = +y
    frame = BeamFrame((0.0, 1000.0, 0.0), axes, 1000.0)  # from the posterior, along -y, isocenter at the origin
    square = np.array([[-30.0, -30.0], [30.0, -30.0], [30.0, 30.0], [-30.0, 30.0]])
    segments = beam_segments(BeamLines("B", frame, square), View.AXIAL)
    assert [k for k, _, _ in segments] == ["axis", "edge", "edge"]
    at_iso = sorted(round(b[0] * 1000.0 / 1200.0, 6) for k, _, b in segments if k == "edge")
    assert at_iso == [-30.0, 30.0]
    assert beam_segments(BeamLines("B", frame, square), View.CORONAL) == []  # it runs across the coronal plane


def test_the_pointer_reads_the_dose_of_the_plan(client: TestClient, home: Path) -> None:
    log_in(client, PLANNER)
    with Workspace.open(home) as ws:
        state = ws.plan_state(PLAN)
        assert state.dose is not None
        grid = state.dose.plan.load()
        ct = ws.course(state.plan.course).ct
    info = client.get(f"/plans/{PLAN}/slice/axial/8.json").json()
    cgy = np.asarray(info["dose_cgy"])
    k = info["dose_step_px"]
    r, c = np.unravel_index(int(np.argmax(cgy)), cgy.shape)
    p = plane(ct, View.AXIAL, 8)
    row, col = r * k + k // 2, c * k + k // 2
    expected = sample_dose(grid, p.x[row : row + 1, col], p.y[row : row + 1, col], p.z[row : row + 1, col])
    assert abs(cgy[r, c] - expected[0] * 100) <= 1
    assert 0.5 * 50.0 < cgy.max() / 100 < 1.2 * 50.0  # the hot spot of a 50 Gy plan


def test_a_site_without_machine_degrades_the_pictures_with_their_reason(client: TestClient, home: Path) -> None:
    edit_site(home, lambda s: s.update(machines=[]))
    log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    assert "Beam lines and bolus are not drawn: unknown machine &#39;DemoLinac&#39;" in page
    for view in ("axial", "sagittal", "coronal"):
        rsp = client.get(f"/plans/{PLAN}/slice/{view}/5.png")
        assert rsp.status_code == 200 and rsp.headers["content-type"] == "image/png", view
        Image.open(io.BytesIO(rsp.content)).verify()
    bevs = re.findall(r'<svg class="bev".*?</svg>', page)
    assert len(bevs) == 2 and all("not in the site" in b and "bev-app" not in b for b in bevs)
    assert re.search(r'id="make-report" disabled aria-describedby="report-reasons"', page)
    assert "Disabled: plan CW-E1: unknown machine" in page
    assert '<fieldset class="export-block" disabled>' in page and "no treatment machine" in page


@pytest.mark.parametrize("view", ["axial", "coronal"])
def test_slices_outside_the_ct_are_refused_by_both_routes(client: TestClient, view: str) -> None:
    log_in(client, PLANNER)
    assert client.get(f"/plans/{PLAN}/slice/{view}/999.json").status_code == 404
    assert client.get(f"/plans/{PLAN}/slice/{view}/999.png").status_code == 404


def test_a_damaged_ct_gives_a_page_without_pictures_and_a_picture_saying_why(client: TestClient, home: Path) -> None:
    with Workspace.open(home) as ws:
        course = ws.course(ws.plan_state(PLAN).plan.course)
        blob = ws.blobs.path(course.slices[3].sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"not the CT slice it was")
    log_in(client, PLANNER)
    rsp = client.get(f"/plans/{PLAN}")
    assert rsp.status_code == 200
    images = rsp.text[rsp.text.index('id="images"') : rsp.text.index('id="dvh"')]
    assert "No CT pictures and no DVH: the course&#39;s CT cannot be read" in images and "<img" not in images
    png = client.get(f"/plans/{PLAN}/slice/axial/3.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(png.content)).convert("L"))
    assert pixels.max() > 200 and (pixels > 200).mean() < 0.2  # light text on a dark ground: a message
