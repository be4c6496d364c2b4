#!/usr/bin/env python
"""Docs gallery of the model zoo: one column per painting (the painting on top), one row per
photo (the photo on the left), every cell one forward pass of that painting's network (a
multi-style model gives one column per painting).

    python tools/gallery.py                                   # the six zoo models, three photos
    python tools/gallery.py --models starry_night the_scream --photos assets/photos/coffee.jpg
    python tools/gallery.py --size 512 --cell 320 --out docs/gallery.jpg

Use free-licence photos for anything you publish (assets/photos, see assets/CREDITS.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


GAP = 4  # white pixels between cells
ZOO = ["starry_night", "the_scream", "great_wave", "composition_vii", "udnie", "shipwreck_of_the_minotaur"]
PHOTOS = ["assets/photos/chelsea_cat.jpg", "assets/photos/astronaut.jpg", "assets/photos/picos_de_europa.jpg"]


def painting_of(stylizer, style: str) -> Image.Image:
    """A painting of a model, from its export record: the file on this machine (found by name and
    sha256), else the export's embedded thumbnail."""
    from fast_nst.io.paintings import locate_painting, thumbnail_image

    record = stylizer.info.styles[stylizer.styles.index(style)]
    try:
        from fast_nst.io.images import load_rgb

        return load_rgb(locate_painting(record))
    except (FileNotFoundError, ValueError):
        if style in stylizer.info.thumbnails:
            return thumbnail_image(stylizer.info.thumbnails[style])
        raise FileNotFoundError(f"{stylizer.name}: painting {style!r} ({record.image}) is not on this machine "
                                "and the export embeds no thumbnail of it") from None


def build(models: list[str], photos: list[str], size: int, cell: int, device: str = "auto"):
    """One column per painting: a per-style model gives one, a multi-style model one per painting."""
    from fast_nst import Stylizer
    from grids import fit_box, hstack, label, vstack
    from fast_nst.io.images import load_rgb

    stylizers = [Stylizer.load(m, device=device) for m in models]
    columns = [(s, name) for s in stylizers for name in s.styles]
    height = cell * 3 // 4  # 4:3 cells: most photos are landscape, so little white is wasted
    header = [label("", cell, height)] + [fit_box(painting_of(s, name), cell, height) for s, name in columns]
    names = [label("", cell, 24)] + [label(name.replace("_", " "), cell, 24) for _, name in columns]
    rows = [hstack(header, gap=GAP), hstack(names, gap=GAP)]
    for p in photos:
        photo = load_rgb(p, max_size=size)
        cells = [fit_box(photo, cell, height)]
        cells += [fit_box(s(photo, style=name if len(s.styles) > 1 else None), cell, height) for s, name in columns]
        rows.append(hstack(cells, gap=GAP))
    return vstack(rows, gap=GAP)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=ZOO, help="exported .safetensors files or names in checkpoints/")
    ap.add_argument("--photos", nargs="+", default=PHOTOS, help="one row each")
    ap.add_argument("--size", type=int, default=512, help="long side the photos are stylized at (pixels)")
    ap.add_argument("--cell", type=int, default=256, help="width of each grid cell (pixels; cells are 4:3)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="docs/gallery.jpg")
    a = ap.parse_args(argv)
    from grids import write_picture

    write_picture(lambda: build(a.models, a.photos, a.size, a.cell, a.device), a.out, quality=90)


if __name__ == "__main__":
    main()
