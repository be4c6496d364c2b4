#!/usr/bin/env python
"""Picture of a time-budget run for the docs: photos stylized by the checkpoints a run wrote
after so many minutes (callbacks.time_budget.every, fast_nst/training/time_budget.py).

    row 1:  "photo"   "2 min"    "5 min"    "10 min"   "painting"
    row k:  photo k   stylized   stylized   stylized   (the painting, first row only)

    python train.py experiment=new_painting style.image=my.jpg callbacks.time_budget.every=1
    python tools/minutes_picture.py --minutes checkpoints/runs/my/minutes --at 2 5 10 \
        --photos assets/photos/chelsea_cat.jpg assets/photos/astronaut.jpg --out docs/new_painting.jpg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from grids import fit_box, hstack, label, vstack, write_picture
from fast_nst.io.images import load_rgb, pil_to_tensor, tensor_to_pil
from fast_nst.io.paintings import locate_painting
from fast_nst.optimize.quality import load_for_quality, trained_painting


def checkpoint_at(folder: Path, minutes: float) -> Path:
    """The checkpoint of `folder`'s timeline written at `minutes`."""
    timeline = json.loads((folder / "timeline.json").read_text())
    for row in timeline:
        if abs(row["minutes"] - minutes) < 1e-6:
            return folder / row["ckpt"]
    raise ValueError(f"{folder}: no checkpoint at {minutes:g} min; it has "
                     + ", ".join(f"{r['minutes']:g}" for r in timeline))


def build(folder: Path, at: list[float], photos: list[str], size: int) -> "Image.Image":
    cells = [[] for _ in photos]
    painting = None
    for minutes in at:
        net, info, _ = load_for_quality(checkpoint_at(folder, minutes), torch.device("cpu"))
        style = trained_painting(net)
        cond = net.condition(style=style)
        if painting is None:
            record = info.styles[info.style_names.index(style)] if style else info.styles[0]
            painting = load_rgb(locate_painting(record), max_size=2 * size)
        for row, photo in zip(cells, photos):
            x = pil_to_tensor(load_rgb(photo, max_size=size)).unsqueeze(0)
            with torch.inference_mode():
                row.append(tensor_to_pil(net.stylize(x, cond)[0]))
    first = [load_rgb(p, max_size=size) for p in photos]
    h = max(im.height for im in first)
    header = [label(t, size, 24) for t in ["photo", *(f"{m:g} min" for m in at), "painting"]]
    rows = [hstack([fit_box(im, size, h)] + [fit_box(c, size, h) for c in row]
                   + [fit_box(painting, size, h) if k == 0 else label("", size, h)])
            for k, (im, row) in enumerate(zip(first, cells))]
    return vstack([hstack(header)] + rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", required=True, help="a time-budget checkpoint folder (with timeline.json)")
    ap.add_argument("--at", type=float, nargs="+", default=[2, 5, 10], help="minutes to show (default: 2 5 10)")
    ap.add_argument("--photos", nargs="+", default=["assets/photos/chelsea_cat.jpg"])
    ap.add_argument("--size", type=int, default=320, help="long side of each photo (default: 320)")
    ap.add_argument("--out", default="docs/new_painting.jpg")
    a = ap.parse_args()
    write_picture(lambda: build(Path(a.minutes), a.at, a.photos, a.size), a.out)


if __name__ == "__main__":
    main()
