"""End to end in headless Chromium (Playwright, Debian's /usr/bin/chromium): a planner imports a course from a folder
under the import roots, builds a plan in the page (External, an override, two beams with cutouts from the PTV, a
bolus; the beam form by keyboard only), computes dose; a physicist approves; the plan file the page downloads
loads as the same revision, and the RT Structure Set and RT Plan exported after it are the same bytes."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pydicom
import pytest

from rtexport.demo.phantom import write_phantom
from rtexport.export.gate import Item
from rtexport.model.people import Actor
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import load_plan, plan_state
from rtexport.services.workspaces import open_workspace
from tests.support.dciodvfy import assert_valid
from tests.web.conftest import PHYSICIST, PLANNER, SMALL, edit_site, pages_of
from tests.web.test_browser import serving

pytestmark = pytest.mark.integration
SCREENSHOT = Path("/tmp/rtexport-plan-editor.png")


def tab_to(page: Any, selector: str, limit: int = 400) -> None:
    """Press Tab until ``selector`` has the focus (the keyboard's way there)."""
    target = page.locator(selector).element_handle()
    for _ in range(limit):
        if page.evaluate("t => document.activeElement === t", target):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"Tab never reached {selector}")


def type_into(page: Any, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def choose(page: Any, selector: str, value: str) -> None:
    """Choose an option of a select with the arrow keys."""
    tab_to(page, selector)
    box = page.locator(selector)
    count = box.locator("option").count()
    for _ in range(count):
        page.keyboard.press("ArrowUp")
    for _ in range(count):
        if box.input_value() == value:
            return
        page.keyboard.press("ArrowDown")
    pytest.fail(f"{selector} has no option {value!r} the keyboard reaches")


def press(page: Any, selector: str, key: str = "Enter") -> None:
    tab_to(page, selector)
    page.keyboard.press(key)


def beam_by_keyboard(page: Any, i: int, name: str, gantry: str, weight: str, bolus: bool) -> None:
    """Fill beam ``i``'s form with the keyboard only: name, angle, target, cutout from the PTV, energy, bolus."""
    from playwright.sync_api import expect

    key = f"#f-beam-{i}-"
    type_into(page, key + "name", name)
    choose(page, key + "applicator", "15x15")
    type_into(page, key + "gantry_deg", gantry)
    choose(page, key + "target", "PTV")
    type_into(page, key + "ssd_mm", "1000")
    type_into(page, key + "weight", weight)
    choose(page, key + "cutout_target", "PTV")
    type_into(page, key + "margin_mm", "10")
    press(page, f".beam[data-index='{i}'] button[data-action=cutout-from-target]")
    expect(page.locator(key + "cutout_mm")).not_to_have_value("")
    box = page.locator(key + "bolus-on")
    if box.is_checked() != bolus:
        press(page, key + "bolus-on", "Space")
    if bolus:
        type_into(page, key + "bolus-thickness_mm", "10")
        type_into(page, key + "bolus-margin_mm", "10")
        choose(page, key + "bolus-material", "Superflab")
    press(page, f".beam[data-index='{i}'] button[data-action=suggest-energy]")
    expect(page.locator(f".beam[data-index='{i}'] .suggestion")).to_contain_text("reaches PTV's distal surface at")
    expect(page.locator(f".beam[data-index='{i}'] .bev-facts")).to_contain_text("depth on the central axis")
    expect(page.locator(f".beam[data-index='{i}'] .axial-preview .axial-axis")).to_have_count(1)


def drag_a_cutout_corner(page: Any, i: int) -> None:
    """Drag the cutout's first corner in the beam's-eye view: the typed polygon follows."""
    from playwright.sync_api import expect

    text = page.locator(f"#f-beam-{i}-cutout_mm")
    expect(page.locator(f".beam[data-index='{i}'] .bev-handle")).not_to_have_count(0)
    expect(page.locator("#editor")).to_have_attribute("data-busy", "0")  # the previews asked for are drawn
    before = text.input_value().splitlines()
    handle = page.locator(f".beam[data-index='{i}'] .bev-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 3, y + 3, steps=3)
    page.mouse.up()
    after = text.input_value().splitlines()
    assert after[0] != before[0] and after[1:] == before[1:]
    u0, v0 = (float(c) for c in before[0].split())
    u1, v1 = (float(c) for c in after[0].split())
    assert u1 > u0 and v1 < v0  # right and down on the screen: +x, -y in the beam's-eye view


def log_in(page: Any, url: str, user: tuple[str, str], path: str) -> None:
    page.goto(f"{url}{path}")
    page.fill("input[name=name]", user[0])
    page.fill("input[name=password]", user[1])
    page.click("button:has-text('Log in')")


def build_plan_in_the_page(page: Any, url: str, scans: Path) -> None:
    from playwright.sync_api import expect

    log_in(page, url, PLANNER, "/import")
    row = page.locator("tr", has_text="patient-1")
    expect(row).to_contain_text("CT series: 16 slice(s)")
    row.locator("input[name=course_id]").fill("C2")
    row.locator("button").click()
    expect(page.locator("h1")).to_contain_text("New plan")
    expect(page.locator("#editor")).to_have_attribute("data-ready", "true")
    # Saved empty: each problem beside its field, the first such field focused, nothing stored.
    page.click("#save-plan")
    expect(page.locator(".problem[data-for=id]")).to_contain_text("Field required")
    expect(page.locator(".problem[data-for=beam]")).not_to_be_empty()
    expect(page.locator("#f-id")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-id")).to_be_focused()
    page.select_option("#f-external", "OUTLINE2")
    page.fill("#f-id", "PG-1")
    page.fill("#f-label", "Page plan")
    page.fill("#f-fractions", "25")
    page.fill("#f-prescription_gy", "50")
    page.click("#add-override")
    page.select_option("#f-override-0-structure", "Prosthesis")
    page.select_option("#f-override-0-material", "Water")
    # The beams, by keyboard only.
    press(page, "#add-beam")
    expect(page.locator("#f-beam-0-name")).to_be_focused()
    beam_by_keyboard(page, 0, "ANT", "0", "0.6", bolus=True)
    drag_a_cutout_corner(page, 0)
    press(page, ".beam[data-index='0'] button[data-action=clone-beam]")
    expect(page.locator("#f-beam-1-name")).to_be_focused()
    beam_by_keyboard(page, 1, "ANT_OBL", "20", "0.4", bolus=False)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert accessibility_problems(page) == []
    press(page, "#save-plan")
    expect(page.locator("h1")).to_contain_text("Page plan")
    expect(page.locator("#editor")).to_have_attribute("data-ready", "true")


def test_plan_built_in_the_page_exports_as_its_plan_file_loads(home: Path, tmp_path: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    scans = home / "scans"
    write_phantom(scans / "patient-1", SMALL)
    edit_site(home, lambda s: s["dicom"].update(import_roots=["scans"]))
    with serving(home) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
        build_plan_in_the_page(page, url, scans)
        page.click("#compute-dose")
        expect(page.locator("#dose-result")).to_contain_text("Dose computed for revision 1", timeout=180_000)
        with page.expect_download() as download:
            page.click("#download-plan")
        plan_file = Path(download.value.path()).read_text(encoding="utf-8")

        physicist = browser.new_page(viewport={"width": 1400, "height": 1000})
        log_in(physicist, url, PHYSICIST, "/plans/PG-1")
        form = physicist.locator("#approve-form")
        physicist.locator("details.approve summary").click()
        form.locator("input[name=name]").fill(PHYSICIST[0])
        form.locator("input[name=password]").fill(PHYSICIST[1])
        for name in ("acknowledge_mu_check", "acknowledge_warnings"):  # what the physicist has reviewed
            ack = form.locator(f"input[name={name}]")
            if ack.count():
                ack.check()
        form.locator("button").click()
        expect(physicist.locator(".state")).to_contain_text("Approved")
        physicist.reload()
        expect(physicist.locator("#editor")).to_have_attribute("data-ready", "true")
        expect(physicist.locator("#approved-note")).to_be_visible()
        expect(physicist.locator("#save-plan")).to_be_disabled()
        physicist.fill("#clone-id", "PG-2")
        physicist.click("#clone-form button")
        expect(physicist.locator("h1")).to_contain_text("PG-2")
        expect(physicist.locator("#editor")).to_have_attribute("data-ready", "true")
        expect(physicist.locator("#save-plan")).to_be_enabled()  # the copy is not approved
    assert [e for e in errors if "edit.js" in e] == []  # the blocks' own script (plan.js is the Export block's)

    with open_workspace(home) as ws:
        state = plan_state(ws, "PG-1")
        plan = state.plan
        assert state.approved and plan.external == "OUTLINE2" and plan.course == "C2"
        assert [(o.structure, o.material) for o in plan.overrides] == [("Prosthesis", "Water")]
        assert [b.name for b in plan.beams] == ["ANT", "ANT_OBL"]
        assert plan.beams[0].bolus is not None and plan.beams[1].bolus is None
        assert all(b.cutout_mm and len(b.cutout_mm) > 4 for b in plan.beams)
        items = (Item.RTSTRUCT, Item.RTPLAN)
        actor = Actor.here("test", PLANNER[0])
        export_plan(ws, "PG-1", items, FolderDestination(tmp_path / "from-page"), actor)
        loaded, changed = load_plan(ws, plan_file, "downloaded.toml", Actor.here("cli"))
        assert not changed and loaded.revision == state.revision
        export_plan(ws, "PG-1", items, FolderDestination(tmp_path / "from-file"), actor)
    page_files = sorted(p.name for p in (tmp_path / "from-page").glob("*.dcm"))
    assert [n.split(".")[0] for n in page_files] == ["RP", "RS"]
    match, mismatch, errs = filecmp.cmpfiles(tmp_path / "from-page", tmp_path / "from-file", page_files, shallow=False)
    assert (mismatch, errs) == ([], []) and match == page_files
    rp = pydicom.dcmread(next((tmp_path / "from-page").glob("RP*.dcm")))
    assert [b.BeamName for b in rp.BeamSequence] == ["ANT", "ANT_OBL"]
    for p in (tmp_path / "from-page").glob("*.dcm"):
        assert_valid(p)


# What an accessibility checker (axe) looks at in the blocks: every control has a label, every button a name no other
# button has, and text contrasts with what is behind it by at least 4.5:1 (3:1 for large text), WCAG 2.1 AA.
A11Y = """root => {
  const problems = [];
  const shown = (e) => e.offsetParent !== null || e.getClientRects().length > 0;
  const name = (e) => (e.getAttribute("aria-label") || e.textContent || "").trim();
  for (const c of root.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const labelled = (c.labels && c.labels.length) || c.getAttribute("aria-label");
    if (shown(c) && !labelled) problems.push("no label: " + c.outerHTML.slice(0, 80));
  }
  const names = new Map();
  for (const b of root.querySelectorAll("button")) {
    if (!shown(b)) continue;
    const n = name(b);
    if (!n) problems.push("button without a name: " + b.outerHTML.slice(0, 80));
    if (names.has(n)) problems.push("two buttons named " + JSON.stringify(n));
    names.set(n, b);
  }
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const behind = (e) => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const e of root.querySelectorAll("*")) {
    if (!shown(e) || e.closest("svg")) continue;
    const text = Array.from(e.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!text) continue;
    const style = getComputedStyle(e);
    const a = lum(rgb(style.color).slice(0, 3)), b = lum(behind(e));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const what = `${e.tagName} ${e.textContent.trim().slice(0, 40)}`;
    if (ratio < needed) problems.push(`contrast ${ratio.toFixed(2)}:1 < ${needed}: ${what}`);
  }
  return problems;
}"""


def accessibility_problems(page: Any, root: str = "#editor") -> list[str]:
    found: list[str] = page.locator(root).evaluate(A11Y)
    return found
