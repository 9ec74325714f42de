"""How fast the plan page answers: the page, its slice pictures and their pointer-readout data over HTTP (the app
under uvicorn on loopback), against a static file of the same server measured in the same run; the full page
load in Debian's Chromium (every picture arrived) against the login page; and what the overlays (orientation
letters, scale bar, beam lines) add to a slice picture, against the same picture without them.

    python benchmarks/bench_page_load.py [--rounds 10] [--full] [--screenshots docs/]

``--full``: the demo's full-size phantom (default: a small one, as the tests use). ``--screenshots DIR``: also
save small PNGs of the Export block and of the CT views into DIR (the pictures in the docs come from here).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import io
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn
from PIL import Image

from rtexport.demo.phantom import PhantomSpec
from rtexport.demo.plan import DEMO_PLAN_ID, DEMO_USERS
from rtexport.model.people import Actor
from rtexport.pictures.render import View, render_slice
from rtexport.services.demo import build_demo_workspace
from rtexport.services.dose import compute_dose
from rtexport.services.pictures import Pictures
from rtexport.services.views import colors, course_volume
from rtexport.web.app import create_app
from rtexport.workspace import Workspace

PLAN = DEMO_PLAN_ID
SMALL = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0)
CHROMIUM = "/usr/bin/chromium"


@contextmanager
def serving(home: Path) -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(home), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def timed(call: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def row(name: str, values: list[float], peer: float | None = None) -> None:
    best, median = min(values), statistics.median(values)
    ratio = f"{median / peer:8.1f}×" if peer else ""
    print(f"{name:<44} {1000 * best:8.1f} {1000 * median:9.1f} {ratio}")


class Client:
    """A logged-in browser session over plain HTTP (the standard library's, as a peer would have it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> bytes:
        with self.opener.open(self.url + path, timeout=120) as rsp:
            body: bytes = rsp.read()
            return body

    def log_in(self, name: str, password: str) -> None:
        token = re.search(r'name="csrf-token" content="([^"]+)"', self.get("/login").decode())
        if token is None:
            raise SystemExit("the login page carries no CSRF token")
        form = {"csrf": token.group(1), "name": name, "password": password, "next": "/"}
        self.opener.open(self.url + "/login", urllib.parse.urlencode(form).encode(), timeout=60).read()


def http_figures(url: str, rounds: int) -> None:
    client = Client(url)
    client.log_in("pat", DEMO_USERS["pat"][1])
    t0 = time.perf_counter()
    client.get(f"/plans/{PLAN}")
    cold = time.perf_counter() - t0
    static = timed(lambda: client.get("/static/style.css"), rounds)
    peer = statistics.median(static)
    print(f"{'over HTTP (loopback)':<44} {'min ms':>8} {'median ms':>9} {'vs static':>9}")
    row("static file (/static/style.css): the peer", static)
    print(f"{'plan page, first request (CT volume loaded)':<44} {1000 * cold:8.1f}")
    row("plan page (HTML)", timed(lambda: client.get(f"/plans/{PLAN}"), rounds), peer)
    for view in View:
        order = iter(range(10_000))

        def next_png(v: View = view, indices: Iterator[int] = order) -> None:
            client.get(f"/plans/{PLAN}/slice/{v.value}/{next(indices) % 16}.png")

        row(f"{view.value} slice PNG (scrolling)", timed(next_png, rounds), peer)
    row("axial slice JSON (dose readout)", timed(lambda: client.get(f"/plans/{PLAN}/slice/axial/8.json"), rounds), peer)


def overlay_figures(home: Path, rounds: int) -> None:
    with Workspace.open(home) as ws:
        state = ws.plan_state(PLAN)
        course = ws.course(state.plan.course)
        vol = course_volume(ws, course)
        aimed = Pictures().aimed(ws, state, ws.site(), vol)
        grid = state.dose.plan.load() if state.dose else None
        palette = colors(course, state.plan)
    index = vol.count(View.AXIAL) // 2
    args = (vol, View.AXIAL, index, grid, state.plan.prescription_gy, palette)
    bare: list[float] = []
    full: list[float] = []
    for _ in range(rounds):  # alternating, so a busy moment of a shared machine falls on both
        bare += timed(lambda: render_slice(*args, annotated=False), 1)
        full += timed(lambda: render_slice(*args, extra=aimed.bolus, beams=aimed.beams), 1)
    print(f"{'rendering in-process (axial)':<44} {'min ms':>8} {'median ms':>9} {'vs bare':>9}")
    row("slice without overlays: the peer", bare)
    row("slice with bolus, beams, letters, scale", full, statistics.median(bare))


def browser_figures(url: str, rounds: int, shots: Path | None) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        print(f"(no {CHROMIUM}: browser figures skipped)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/login")
        page.fill("input[name=name]", "pat")
        page.fill("input[name=password]", DEMO_USERS["pat"][1])
        page.click("button:has-text('Log in')")
        every_image = "() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)"

        def load_plan() -> None:
            page.goto(f"{url}/plans/{PLAN}")
            page.wait_for_function(every_image)

        login = timed(lambda: page.goto(f"{url}/login?next=/"), rounds)
        plan = timed(load_plan, rounds)
        print(f"{'in Chromium (navigation to load)':<44} {'min ms':>8} {'median ms':>9} {'vs login':>9}")
        row("login page: the peer", login)
        row("plan page, every picture arrived", plan, statistics.median(login))
        if shots is not None:
            screenshots(page, shots)
        browser.close()


def screenshots(page: object, folder: Path) -> None:
    """Small PNGs (256 colours) of the pictures and of the Export block, for the docs."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)  # a benchmark script: the caller passes the page it has
    folder.mkdir(parents=True, exist_ok=True)
    form = page.locator("#authorize-form")
    form.locator("input[name=name]").fill("phil")
    form.locator("input[name=password]").fill(DEMO_USERS["phil"][1])
    form.locator("button").click()
    page.wait_for_load_state("load")  # the page's script has run
    page.click("#export-local")
    page.wait_for_function("() => /complete|failed/.test(document.querySelector('#progress-title').textContent)")
    print("export for the screenshot:", page.locator("#progress-title").text_content())
    page.locator("#reports > summary").click()
    page.locator("figure[data-view=axial] img").hover()
    for name, selector in (("page-pictures.png", "#images"), ("page-export.png", "#export")):
        raw = page.locator(selector).screenshot()
        img = Image.open(io.BytesIO(raw)).convert("RGB")
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)
        img.quantize(256).save(folder / name, optimize=True)
        print(f"saved {folder / name} ({(folder / name).stat().st_size // 1000} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="the demo's full-size phantom")
    parser.add_argument("--screenshots", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        home = Path(tmp) / "home"
        ws = build_demo_workspace(home, spec=None if args.full else SMALL)
        compute_dose(ws, PLAN, Actor("pat", "bench", "bench"))
        ws.close()
        print(f"{args.rounds} rounds, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        with serving(home) as url:
            http_figures(url, args.rounds)
            overlay_figures(home, args.rounds)
            browser_figures(url, args.rounds, args.screenshots)


if __name__ == "__main__":
    main()
