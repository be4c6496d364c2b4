"""The docs' picture of the web page: start `python app.py`, upload a photo in headless
Chromium, stylize it and save a screenshot of the page with the result (docs/app.png).

    python tools/app_screenshot.py
    python tools/app_screenshot.py --photo assets/photos/rocket.jpg --model udnie --size 512

Prints how long the page took from pressing Stylize to showing the picture. Needs Playwright and a
system Chromium (see tools/app_driver.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

from app_driver import find_chromium, running_app, stylize_in_browser
from fast_nst.io.images import load_rgb
from fast_nst.io.files import atomic_write


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", default=str(ROOT / "assets" / "photos" / "aitzgorri.jpg"))
    ap.add_argument("--model", default="starry_night", help="a model of checkpoints/ (file name without extension)")
    ap.add_argument("--size", type=int, default=512, help="long side the photo is uploaded at")
    ap.add_argument("--out", default=str(ROOT / "docs" / "app.png"))
    ap.add_argument("--width", type=int, default=1280, help="browser window width (px)")
    ap.add_argument("--height", type=int, default=760, help="browser window height (px)")
    ap.add_argument("--presses", type=int, default=3, help="press Stylize this many times (timings of each)")
    ap.add_argument("--colors", type=int, default=128, help="palette size of the saved PNG (keeps it small); 0 = full colour")
    args = ap.parse_args()

    chromium = find_chromium()
    if chromium is None:
        sys.exit("no Chromium found: apt-get install chromium, or set FAST_NST_CHROMIUM=/path/to/chrome")
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / f"{Path(args.photo).stem}.jpg"
        load_rgb(args.photo, max_size=args.size).save(photo, quality=95)
        shot = Path(tmp) / "page.png"
        t0 = time.perf_counter()
        with running_app("models_dir=checkpoints", f"model={args.model}", "device=cpu") as url:
            started = time.perf_counter() - t0
            r = stylize_in_browser(url, photo, chromium=chromium, screenshot=shot, presses=args.presses,
                                   viewport=(args.width, args.height))
        w, h = Image.open(photo).size
        print(f"server up in {started:.1f} s; {photo.name} at {w}x{h}: the page showed the result "
              f"{', '.join(f'{s:.2f}' for s in r.seconds)} s after pressing Stylize (the first press loads the model)")
        print(f"page said: {r.status.strip()}")
        im = Image.open(shot).convert("RGB")
        if args.colors:  # a screenshot is mostly flat UI: a palette keeps it small
            im = im.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        atomic_write(args.out, lambda p: im.save(p, format="PNG", optimize=True))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
