#!/usr/bin/env python
"""Picture of a multi-style network for the docs: one photo in every painting, plus a row that
mixes two paintings from 0 to 1 (convex combinations of their instance-norm scales and shifts).

    row 1:  (blank)   painting 1   painting 2   ...   painting N        (the export's thumbnails)
    row 2:  photo     stylized 1   stylized 2   ...   stylized N
    row 3:  painting A   mix 0   mix 1/(K-1)   ...   mix 1   painting B

    python tools/multi_style_grid.py --ckpt checkpoints/multi_style.safetensors \
        --photo assets/photos/chelsea_cat.jpg --mix starry_night the_scream --out docs/multi_style.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps


from fast_nst import Stylizer
from fast_nst.io.images import load_rgb, save_image_atomic
from fast_nst.io.paintings import locate_painting, thumbnail_image

GAP, LABEL_H = 6, 16


def painting_image(st: Stylizer, name: str) -> Image.Image:
    """The painting's embedded thumbnail, else its file on this machine."""
    if st.info is not None and name in st.info.thumbnails:
        return thumbnail_image(st.info.thumbnails[name])
    record = st.info.styles[st.styles.index(name)]
    return load_rgb(locate_painting(record), max_size=512)


def cell(im: Image.Image | None, size: tuple[int, int], label: str = "") -> Image.Image:
    """`im` cropped to fill `size`, with `label` underneath (blank cell when `im` is None)."""
    out = Image.new("RGB", (size[0], size[1] + LABEL_H), "white")
    if im is not None:
        out.paste(ImageOps.fit(im, size, Image.LANCZOS), (0, 0))
    if label:
        ImageDraw.Draw(out).text((2, size[1] + 2), label, fill=(40, 40, 40))
    return out


def row(cells: list[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (sum(c.width for c in cells) + GAP * (len(cells) - 1), cells[0].height), "white")
    x = 0
    for c in cells:
        out.paste(c, (x, 0))
        x += c.width + GAP
    return out


def make_grid(ckpt: str, photo: str, mix: tuple[str, str] | None, steps: int, size: int, cell_h: int,
              device: str = "auto") -> Image.Image:
    st = Stylizer.load(ckpt, device=device)
    names = st.styles
    if len(names) < 2:
        raise SystemExit(f"{ckpt}: holds {len(names)} painting(s); this picture is for multi-style networks")
    mix = mix or (names[0], names[1])
    unknown = [m for m in mix if m not in names]
    if unknown:
        raise SystemExit(f"--mix {unknown}: not in {ckpt} (it holds {', '.join(names)})")
    image = load_rgb(photo, max_size=size)
    dims = (round(cell_h * image.width / image.height), cell_h)
    rows = [row([cell(None, dims)] + [cell(painting_image(st, n), dims, n) for n in names]),
            row([cell(image, dims, Path(photo).stem)] + [cell(st(image, style=n), dims) for n in names])]
    a, b = mix
    mixed = []
    for k in range(steps):
        t = k / (steps - 1)
        mixed.append(cell(st(image, style_weights={a: 1 - t, b: t}), dims, f"{b} {t:.2f}"))
    rows.append(row([cell(painting_image(st, a), dims, a)] + mixed + [cell(painting_image(st, b), dims, b)]))
    grid = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + GAP * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height + GAP
    return grid


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a multi-style export (.safetensors or its name)")
    ap.add_argument("--photo", required=True, help="the content photo")
    ap.add_argument("--mix", nargs=2, metavar=("A", "B"), help="the two paintings of the mixing row "
                    "(default: the first two)")
    ap.add_argument("--steps", type=int, default=5, help="images in the mixing row, from A to B (default: %(default)s)")
    ap.add_argument("--size", type=int, default=512, help="long side the photo is stylized at (default: %(default)s)")
    ap.add_argument("--cell-height", type=int, default=160, help="height of each cell (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--out", default="docs/multi_style.jpg", help="output image (default: %(default)s)")
    a = ap.parse_args(argv)
    if a.steps < 2:
        ap.error("--steps must be at least 2 (the two ends)")
    grid = make_grid(a.ckpt, a.photo, tuple(a.mix) if a.mix else None, a.steps, a.size, a.cell_height, a.device)
    save_image_atomic(grid, Path(a.out), quality=90)
    print(f"wrote {a.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
