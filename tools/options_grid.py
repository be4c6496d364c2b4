#!/usr/bin/env python
"""Docs picture of the stylize options that finish a network's output: one row per model,
columns photo | strength 0.25, 0.5, 0.75, 1 | preserve_color=true (strength 1).

    python tools/options_grid.py                       # starry_night and the_scream on the cat
    python tools/options_grid.py --models udnie --photo assets/photos/coffee.jpg --out docs/options.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path


GAP = 4
STRENGTHS = (0.25, 0.5, 0.75, 1.0)


def build(models: list[str], photo_path: str, size: int, cell: int, device: str = "auto"):
    from fast_nst import Stylizer
    from grids import fit_box, hstack, label, vstack
    from fast_nst.io.images import load_rgb

    photo = load_rgb(photo_path, max_size=size)
    height = cell * photo.height // photo.width
    heads = ["photo"] + [f"strength={s:g}" for s in STRENGTHS] + ["preserve_color=true"]
    rows = [hstack([label("", 110, 24)] + [label(h, cell, 24) for h in heads], gap=GAP)]
    for m in models:
        plain, keep_colour = Stylizer.load(m, device=device), Stylizer.load(m, device=device, preserve_color=True)
        cells = [label(plain.name.replace("_", " "), 110, height), fit_box(photo, cell, height)]
        cells += [fit_box(plain(photo, strength=s), cell, height) for s in STRENGTHS]
        cells.append(fit_box(keep_colour(photo), cell, height))
        rows.append(hstack(cells, gap=GAP))
    return vstack(rows, gap=GAP)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["starry_night", "the_scream"],
                    help="exports (.safetensors or names in checkpoints/), one row each (default: %(default)s)")
    ap.add_argument("--photo", default="assets/photos/chelsea_cat.jpg", help="a free-licence photo (default: %(default)s)")
    ap.add_argument("--size", type=int, default=512, help="long side the photo is stylized at (default: %(default)s)")
    ap.add_argument("--cell", type=int, default=200, help="cell width in pixels (default: %(default)s)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="docs/options.jpg")
    a = ap.parse_args(argv)
    from grids import write_picture

    write_picture(lambda: build(a.models, a.photo, a.size, a.cell, a.device), a.out, quality=88)


if __name__ == "__main__":
    main()
