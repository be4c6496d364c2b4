#!/usr/bin/env python
"""Picture grid for the docs: one row per photo, columns content | painting | stylized.

    python tools/make_grid.py --ckpt checkpoints/starry_night.safetensors \
        --photos assets/photos/chelsea_cat.jpg assets/photos/dandelions.jpg --out docs/grid.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from fast_nst import Stylizer
from fast_nst.io.images import load_rgb, save_image_atomic
from fast_nst.io.paintings import locate_painting


def fit(im: Image.Image, h: int) -> Image.Image:
    return im.resize((max(1, round(im.width * h / im.height)), h), Image.LANCZOS)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="exported .safetensors or a style name")
    ap.add_argument("--photos", nargs="+", required=True, help="content photos, one row each")
    ap.add_argument("--painting", help="style image (default: the one recorded in the export)")
    ap.add_argument("--style", help="which painting of a multi-style network")
    ap.add_argument("--size", type=int, default=384, help="long side the photos are stylized at")
    ap.add_argument("--row-height", type=int, default=256)
    ap.add_argument("--out", default="docs/grid.jpg")
    a = ap.parse_args(argv)
    st = Stylizer.load(a.ckpt, device="auto")
    record = st.info.styles[st.styles.index(a.style) if a.style else 0]
    painting = load_rgb(a.painting or locate_painting(record))
    rows = []
    for p in a.photos:
        photo = load_rgb(p, max_size=a.size)
        cells = [fit(photo, a.row_height), fit(painting, a.row_height), fit(st(photo, style=a.style), a.row_height)]
        row = Image.new("RGB", (sum(c.width for c in cells) + 8 * (len(cells) - 1), a.row_height), "white")
        x = 0
        for c in cells:
            row.paste(c, (x, 0))
            x += c.width + 8
        rows.append(row)
    grid = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + 8 * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height + 8
    save_image_atomic(grid, Path(a.out), quality=90)
    print(f"wrote {a.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
