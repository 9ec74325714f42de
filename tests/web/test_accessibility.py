"""An accessibility check of the plan page in Debian's Chromium: every control has an accessible name (as Chromium
computes it for screen readers), no two buttons share one, and every piece of text has a contrast of at least
4.5:1 (3:1 for large text) against what lies behind it, computed from the computed styles as WCAG 2.1 defines it.
The page is checked with its folds open, the folder picker shown and an export's results on screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import PHYSICIST, PLAN, PLANNER, pages_of
from tests.web.test_browser import serving

pytestmark = pytest.mark.integration

INTERACTIVE = {
    "button",
    "checkbox",
    "combobox",
    "link",
    "radio",
    "slider",
    "spinbutton",
    "textbox",
    "DisclosureTriangle",
}

# For each visible element with text of its own: its colour, size, weight and what lies behind it (the first
# opaque background up the tree, semi-transparent ones composed over it; inside an SVG the fill of the rect the
# text sits on). Disabled controls are exempt (WCAG 1.4.3), as is text hidden from everyone.
TEXTS_JS = (Path(__file__).parent / "texts.js").read_text(encoding="utf-8")


def luminance(rgb: list[float]) -> float:
    """Relative luminance (WCAG 2.1) of an sRGB colour, 0–255 channels."""
    lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: list[float], b: list[float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_contrast_formula_meets_wcags_examples() -> None:
    assert contrast([0, 0, 0], [255, 255, 255]) == pytest.approx(21.0)
    assert contrast([118, 118, 118], [255, 255, 255]) == pytest.approx(4.54, abs=0.01)  # the lightest AA grey
    assert contrast([119, 119, 119], [255, 255, 255]) < 4.5


def low_contrast(texts: list[dict[str, Any]]) -> list[str]:
    found = []
    for t in texts:
        large = t["size"] >= 24 or (t["size"] >= 18.66 and t["weight"] >= 700)
        ratio = contrast(t["fg"], t["bg"])
        if ratio < (3.0 if large else 4.5):
            found.append(f"{ratio:.2f}:1 {t['tag']}#{t['id']}.{t['cls']} {t['text']!r}")
    return found


def unnamed_and_duplicates(tree: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    unnamed, buttons = [], []
    for node in tree:
        if node.get("ignored"):
            continue
        role = node.get("role", {}).get("value")
        name = str(node.get("name", {}).get("value", "")).strip()
        if role in INTERACTIVE and not name:
            unnamed.append(f"{role} {node.get('backendDOMNodeId')}")
        if role == "button":
            buttons.append(name)
    return unnamed, sorted({b for b in buttons if buttons.count(b) > 1})


def test_every_control_is_named_and_every_text_readable(home: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    with serving(home) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/plans/{PLAN}")
        page.fill("input[name=name]", PHYSICIST[0])
        page.fill("input[name=password]", PHYSICIST[1])
        page.click("button:has-text('Log in')")
        form = page.locator("#authorize-form")
        form.locator("input[name=name]").fill(PHYSICIST[0])
        form.locator("input[name=password]").fill(PHYSICIST[1])
        form.locator("button").click()
        expect(page.locator("#authorization")).to_contain_text("A qualified person has authorized the export")
        page.locator("#reports > summary").click()
        page.locator("details.approve > summary").click()
        page.click("#browse")
        expect(page.locator("#picker-list li").first).to_be_visible()
        page.select_option("#server", "custom")
        page.click("#echo")
        expect(page.locator("#echo-result")).to_contain_text("needs its AE title")
        page.click("#export-server")
        expect(page.locator("#progress-title")).to_have_text("Export failed")
        expect(page.locator("#progress-message")).to_contain_text("needs its AE title")
        expect(page.locator("#custom input[name=aet]")).to_have_attribute("aria-invalid", "true")
        page.fill("#folder", str(home / "dicom-export"))  # another destination: the last one's failure goes
        expect(page.locator("#progress")).to_be_hidden()
        expect(page.locator("#echo-result")).to_have_text("")
        page.click("#export-local")
        expect(page.locator("#progress-title")).to_have_text("Export complete")
        page.locator("#ct-rows > summary").click()

        cdp = page.context.new_cdp_session(page)
        tree = cdp.send("Accessibility.getFullAXTree")["nodes"]
        unnamed, duplicates = unnamed_and_duplicates(tree)
        texts = page.evaluate(TEXTS_JS)
    assert unnamed == []
    assert duplicates == []
    folds = {
        str(n.get("name", {}).get("value")) for n in tree if n.get("role", {}).get("value") == "DisclosureTriangle"
    }
    assert {"Export", "Plan Reports", "DICOM"} <= folds  # the ► / ▼ markers are not read out
    assert len(texts) > 100  # the check saw the page
    assert any("CT images, all written" in t["text"] for t in texts), [t["text"] for t in texts if "CT" in t["text"]]
    assert low_contrast(texts) == [], "\n".join(low_contrast(texts))


def test_the_checks_catch_what_they_look_for() -> None:
    grey = {"tag": "P", "id": "", "cls": "hint", "text": "x", "size": 12.0, "weight": 400}
    assert low_contrast([{**grey, "fg": [102, 116, 135], "bg": [244, 246, 249]}]) != []  # the old hint grey
    assert low_contrast([{**grey, "fg": [91, 104, 120], "bg": [244, 246, 249]}]) == []
    tree: list[dict[str, Any]] = [
        {"role": {"value": "button"}, "name": {"value": "Export"}},
        {"role": {"value": "button"}, "name": {"value": "Export"}},
        {"role": {"value": "textbox"}, "name": {"value": ""}},
        {"role": {"value": "textbox"}, "name": {"value": ""}, "ignored": True},
    ]
    unnamed, duplicates = unnamed_and_duplicates(tree)
    assert len(unnamed) == 1 and duplicates == ["Export"]


def test_a_planner_folds_browses_and_makes_a_folder_with_the_keyboard_and_mouse(home: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    with serving(home) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/plans/{PLAN}")
        page.fill("input[name=name]", PLANNER[0])
        page.fill("input[name=password]", PLANNER[1])
        page.click("button:has-text('Log in')")
        page.wait_for_load_state("load")
        # A planner on a site without servers: the select says so, and the page's script runs.
        expect(page.locator("#server")).to_have_value("")
        expect(page.locator("#server option:checked")).to_have_text("No server in the site configuration")
        # Plan Reports starts folded; opened with the keyboard, it stays open for this user after a reload.
        reports = page.locator("#reports")
        expect(reports).not_to_have_attribute("open", "")
        expect(page.locator("#make-report")).to_be_hidden()
        page.locator("#reports > summary").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#make-report")).to_be_visible()
        page.locator("#fold-dicom > summary").click()
        expect(page.locator("#export-local")).to_be_hidden()
        page.reload()
        page.wait_for_load_state("load")
        expect(page.locator("#make-report")).to_be_visible()
        expect(page.locator("#export-local")).to_be_hidden()
        page.locator("#fold-dicom > summary").click()
        form = page.locator("#authorize-form")  # a physicist authorizes at the planner's screen
        form.locator("input[name=name]").fill(PHYSICIST[0])
        form.locator("input[name=password]").fill(PHYSICIST[1])
        form.locator("button").click()
        page.wait_for_load_state("load")
        # Browse: open the export root, make a sub-folder there, open it and use it.
        page.click("#browse")
        expect(page.locator("#browse")).to_have_attribute("aria-expanded", "true")
        root = str((home / "dicom-export").resolve())
        expect(page.locator("#picker-path")).to_have_text(root)  # the folder typed: the default, not made yet
        assert not (home / "dicom-export").exists()
        page.fill("#picker-name", "patient-7")
        page.click("#picker-make")
        expect(page.locator("#picker-message")).to_contain_text("Made")
        page.get_by_role("button", name="Open folder patient-7").click()
        expect(page.locator("#picker-path")).to_have_text(f"{root}/patient-7")
        page.click("#picker-choose")
        expect(page.locator("#folder")).to_have_value(f"{root}/patient-7")
        expect(page.locator("#picker")).to_be_hidden()
    assert (home / "dicom-export" / "patient-7").is_dir()
    assert errors == []
