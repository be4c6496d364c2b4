"""The docs picture of the any-painting networks: photos x style images no network here trained
on, for each network, plus a strength row per network.

    python tools/any_painting_grid.py                                   # -> docs/any_painting.jpg
    python tools/any_painting_grid.py --ckpt magenta adain checkpoints/my_style_prediction.safetensors \
        --styles a.jpg b.jpg --output /tmp/g.jpg

--ckpt takes any network kind that accepts any painting: `adain`, `magenta` (pretrained, no file)
or an export. Layout: the top row shows the style images; then, per network, one row per photo
(the photo, then the photo in each style); then per network one strength row (the first photo in
the first style at each --strengths value: 0 is the photo's own rendering, 1 the full style).

The defaults use only free-licence photos of assets/photos (CC0 / CC BY, assets/CREDITS.md) as
both photos and styles, so the output may be committed. Pictures made with other paintings (e.g.
../shared/data/styles, several under copyright) are for local checks only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from grids import caption, fit_box, hstack, label, vstack, write_picture
from fast_nst.io.images import load_rgb, pil_to_tensor, resolve_path, tensor_to_pil
from fast_nst.stylize.stylizer import Stylizer

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ["chelsea_cat", "astronaut", "picos_de_europa"]
# free-licence photos as styles: none of them is in any training set of this project or of Magenta
STYLES = ["paint_brushes", "fig_bowl", "forest_stream", "mountain_sunset", "dandelions"]
NETWORKS = ["magenta", "adain"]  # the shipped any-painting networks (a trained style_prediction export can be added)


def square(img: torch.Tensor, side: int) -> torch.Tensor:
    """Centred square crop of (1, 3, H, W), resized (antialiased) to side x side."""
    h, w = img.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[..., top: top + s, left: left + s]
    return F.interpolate(crop, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def network_label(st: Stylizer, ckpt: str) -> str:
    return {"adain": "AdaIN", "magenta": "Magenta"}.get(st.kind, Path(ckpt).stem.replace("_", " "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", nargs="+", default=NETWORKS, help="any-painting networks, one block of rows each")
    ap.add_argument("--photos", nargs="+", default=[f"assets/photos/{p}.jpg" for p in PHOTOS])
    ap.add_argument("--styles", nargs="+", default=[f"assets/photos/{p}.jpg" for p in STYLES])
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--size", type=int, default=384, help="side of the square photo crop that is stylized")
    ap.add_argument("--tile", type=int, default=160, help="side of each tile in the picture")
    ap.add_argument("--output", default=str(ROOT / "docs" / "any_painting.jpg"))
    ap.add_argument("--quality", type=int, default=85, help="JPEG quality")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def build():
        photos = [square(pil_to_tensor(load_rgb(p)).unsqueeze(0), args.size) for p in args.photos]
        styles = [str(resolve_path(s)) for s in args.styles]  # by path: each embedded once, then cached
        t = args.tile

        def tile(x: torch.Tensor):
            return tensor_to_pil(square(x, t))

        head = label("style", t, t)
        rows = [hstack([head] + [caption(fit_box(load_rgb(s), t, t), Path(s).stem.replace("_", " "))
                                 for s in styles])]
        strength_rows = []
        for ckpt in args.ckpt:
            st = Stylizer.load(ckpt, device="cpu")
            name = network_label(st, ckpt)
            with torch.inference_mode():
                for photo in photos:
                    rows.append(hstack([caption(tile(photo), name)] +
                                       [tile(st.stylize_tensor(photo, style_image=s)) for s in styles]))
                strength_rows.append(hstack(
                    [caption(tile(photos[0]), f"{name}: strength")] +
                    [caption(tile(st.stylize_tensor(photos[0], style_image=styles[0], strength=a)), f"{a:g}")
                     for a in args.strengths]))
        return vstack(rows + strength_rows)

    write_picture(build, args.output, quality=args.quality)


if __name__ == "__main__":
    main()
