"""Drive the web page (fast_nst.app) in headless Chromium, as a person would: start `python app.py`
on a free port, upload a photo, press Stylize, read back the picture the page shows.

Used by tests/test_app.py (the end-to-end test) and tools/app_screenshot.py (the docs'
picture). Needs Playwright (`pip install -e '.[app]'` or `.[dev]`) and a Chromium on this machine:
Playwright's own browser download is not needed, the system's is used (Debian/Ubuntu:
`apt-get install chromium`; or FAST_NST_CHROMIUM=/path/to/chrome).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """FAST_NST_CHROMIUM, else the first Chromium/Chrome on PATH, else None."""
    env = os.environ.get("FAST_NST_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(*overrides: str, timeout: float = 180.0, env: dict | None = None) -> Iterator[str]:
    """`python app.py host=127.0.0.1 port=<free> *overrides` in a subprocess; yields the page's URL
    once it answers, and stops the server on exit. Its output goes to a log file, quoted in the
    error when it does not come up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tempfile.NamedTemporaryFile(prefix="fast_nst_app_", suffix=".log", delete=False)
    cmd = [sys.executable, str(PROJECT_ROOT / "app.py"), "host=127.0.0.1", f"port={port}", *overrides]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode} before serving:\n"
                                   f"{Path(log.name).read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not answer at {url} within {timeout:.0f} s; its log:\n"
                                   f"{Path(log.name).read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)


@dataclass
class PageResult:
    image: bytes          # the stylized picture as the page serves it
    status: str           # the page's message under the result
    seconds: list[float]  # per press of Stylize: from the click to the (new) picture being shown


def stylize_in_browser(url: str, photo: str | os.PathLike, *, chromium: str, model: str | None = None,
                       painting: str | None = None, strength: float | None = None,
                       screenshot: str | os.PathLike | None = None, viewport=(1280, 800),
                       presses: int = 1, check_empty_error: bool = False, timeout_s: float = 300.0) -> PageResult:
    """Open the page, upload `photo`, optionally choose the model / painting by their menu labels,
    press Stylize (`presses` times, each waiting for a new picture: the first includes loading the
    model) and wait for the result. `screenshot`: also save a PNG of the page. `check_empty_error`:
    first press Stylize with no photo and wait for the page's error message (raises if none)."""
    from playwright.sync_api import sync_playwright

    ms = timeout_s * 1000
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(ms)
            page.goto(url)
            page.locator("#stylize_photo").wait_for()
            if model:
                _choose(page, "#model", model)
            if painting:
                _choose(page, "#painting", painting)
            if strength is not None:
                box = page.locator("#strength input[type=number]")
                box.fill(str(strength))
                box.press("Enter")
            if check_empty_error:
                page.locator("#stylize_photo").click()
                page.get_by_text("upload a photo first").first.wait_for(timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(photo))
            page.locator("#photo img").wait_for()  # uploaded and shown: the button now sends it
            result, seconds, src = page.locator("#result img"), [], None
            for _ in range(presses):
                t0 = time.perf_counter()
                page.locator("#stylize_photo").click()
                if src is None:
                    result.wait_for()
                else:  # every result has a new file name
                    page.wait_for_function("old => { const i = document.querySelector('#result img');"
                                           " return i && i.getAttribute('src') !== old; }", arg=src)
                seconds.append(time.perf_counter() - t0)
                src = result.get_attribute("src")
            status = page.locator("#status").inner_text()
            response = page.request.get(urljoin(url, src))
            if not response.ok:
                raise RuntimeError(f"the page showed {src} but serving it gave HTTP {response.status}")
            if screenshot:
                page.wait_for_timeout(300)  # let the result's fade-in finish
                page.screenshot(path=str(screenshot), full_page=True)
            return PageResult(response.body(), status, seconds)
        finally:
            browser.close()


def _choose(page, elem: str, label: str) -> None:
    """Pick `label` in a Gradio dropdown (an input with a list of options)."""
    box = page.locator(f"{elem} input")
    box.click()
    page.get_by_role("option", name=label).first.click()


LIVE_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# In the page: every stylized frame the Live tab shows is a new <img> under #live_result; keep the
# time each arrived and the last few pictures.
_COUNT_FRAMES = """() => {
  window.__live = {times: [], srcs: []};
  const seen = src => { window.__live.times.push(performance.now()); window.__live.srcs.push(src);
                        if (window.__live.srcs.length > 4) window.__live.srcs.shift(); };
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === 'attributes' && r.target.nodeName === 'IMG') { seen(r.target.src); continue; }
      for (const n of r.addedNodes) {
        const img = n.nodeName === 'IMG' ? n : (n.querySelector ? n.querySelector('img') : null);
        if (img) seen(img.src);
      }
    }
  }).observe(document.querySelector('#live_result'),
             {childList: true, subtree: true, attributes: true, attributeFilter: ['src']});
}"""


@dataclass
class LiveResult:
    fps: float              # stylized frames arriving per second, counted in the page after warm-up
    frames: int             # how many arrived in the timed window
    first: bytes            # the first and last frames of the window, as the page got them (JPEG)
    last: bytes
    switched: bytes | None  # the last frame after the painting was switched (when asked)
    status: str             # the page's own frames/s line


def _frame_bytes(src: str) -> bytes:
    import base64

    return base64.b64decode(src.split(",", 1)[1])


def live_in_browser(url: str, *, chromium: str, seconds: float = 10.0, painting: str | None = None,
                    switch_to: str | None = None, model: str | None = None, warmup_s: float = 3.0,
                    timeout_s: float = 300.0, screenshot: str | os.PathLike | None = None,
                    viewport=(1280, 900)) -> LiveResult:
    """Open the Live tab with Chromium's synthetic camera (LIVE_FLAGS), start streaming, wait for the
    first stylized frame (it includes loading the model), let it run `warmup_s`, then count frames
    for `seconds`. `switch_to`: then pick that painting while it streams and wait for a frame
    painted with it. `screenshot`: a PNG of the page at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *LIVE_FLAGS])
        try:
            page = browser.new_context(permissions=["camera"], viewport={"width": viewport[0], "height": viewport[1]}
                                       ).new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            if model:
                _choose(page, "#model", model)
            if painting:
                _choose(page, "#painting", painting)
            page.get_by_role("tab", name="Live").click()
            page.evaluate(_COUNT_FRAMES)
            page.locator("#camera").get_by_text("Click to Access Webcam").click()
            page.locator("#camera button", has_text="Record").click()
            page.wait_for_function("() => window.__live.times.length > 0")
            page.wait_for_timeout(warmup_s * 1000)
            start, first = page.evaluate("() => [window.__live.times.length, window.__live.srcs.at(-1)]")
            page.wait_for_timeout(seconds * 1000)
            live = page.evaluate("() => window.__live")
            times = live["times"][start:]
            fps = (len(times) - 1) / ((times[-1] - times[0]) / 1000) if len(times) > 1 else 0.0
            switched = None
            if switch_to:
                _choose(page, "#painting", switch_to)
                # count from when the menu shows the new painting (choosing takes a while on a busy
                # machine, and frames keep arriving meanwhile); frames in flight then were painted
                # before the switch: wait for a few more
                page.wait_for_function("label => document.querySelector('#painting input').value.toLowerCase()"
                                       ".includes(label)", arg=switch_to.lower())
                after = page.evaluate("() => window.__live.times.length")
                page.wait_for_function(f"() => window.__live.times.length > {after + 3}")
                switched = _frame_bytes(page.evaluate("() => window.__live.srcs.at(-1)"))
            status = page.locator("#live_status").inner_text()
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
            page.locator("#camera button", has_text="Stop").first.click()
            return LiveResult(fps, len(times), _frame_bytes(first), _frame_bytes(live["srcs"][-1]), switched, status)
        finally:
            browser.close()
