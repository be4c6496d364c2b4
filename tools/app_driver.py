"""Drive the web page (fast_nst.app.page) in headless Chromium, as a person would: start `python app.py`
on a free port, upload a photo, press Stylize, read back the picture the page shows.

Used by tests/test_app.py (the end-to-end test) and tools/app_screenshot.py (the README's
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
