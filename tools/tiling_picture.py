#!/usr/bin/env python
"""Docs picture for tiled stylization: the same photo in tiles, each tile normalised with its own
instance-norm statistics (left: the tile grid shows) and with the whole image's (right: what
`tile=` does), each captioned with its PSNR against the untiled output.

    python tools/tiling_picture.py --ckpt starry_night --out docs/tiling.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path



def build(ckpt: str, photo: str, size: int, tile: int, overlap: int, width: int):
    import torch
    from PIL import Image

    from fast_nst.kinds import load_network
    from grids import caption, hstack
    from fast_nst.io.images import load_rgb, pil_to_tensor, tensor_to_pil
    from fast_nst.stylize.stylizer import find_checkpoint
    from fast_nst.stylize.tiling import stylize_tiled

    net = load_network(find_checkpoint(ckpt))[0]
    x = pil_to_tensor(load_rgb(photo, max_size=size)).unsqueeze(0)
    with torch.inference_mode():
        ref = net(x)
    out = []
    for stats, text in (("tile", "each tile its own statistics"), ("thumbnail", "whole-image statistics (tile=)")):
        with torch.inference_mode():
            y = stylize_tiled(net, x, tile=tile, overlap=overlap, stats=stats)
        psnr = float(10 * torch.log10(1 / ((y - ref) ** 2).mean()))
        im = tensor_to_pil(y[0])
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        out.append(caption(im, f"{text}: {psnr:.1f} dB vs untiled"))
    return hstack(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="starry_night", help="a per-style export (default: %(default)s)")
    ap.add_argument("--photo", default="assets/photos/astronaut.jpg", help="default: %(default)s")
    ap.add_argument("--size", type=int, default=1024, help="long side of the stylized photo (default: %(default)s)")
    ap.add_argument("--tile", type=int, default=256, help="default: %(default)s")
    ap.add_argument("--tile-overlap", type=int, default=64, help="default: %(default)s")
    ap.add_argument("--width", type=int, default=400, help="width of each panel (default: %(default)s)")
    ap.add_argument("--out", default="docs/tiling.jpg")
    a = ap.parse_args(argv)
    from grids import write_picture

    write_picture(lambda: build(a.ckpt, a.photo, a.size, a.tile, a.tile_overlap, a.width), a.out, quality=90)


if __name__ == "__main__":
    main()
