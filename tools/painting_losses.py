#!/usr/bin/env python
"""Per-painting content, style and TV terms of trained networks on the same held-out photos, each
against its own training objective (the loss, loss network and painting recorded in the export).
Compares a multi-style network with per-style networks painting by painting:

    python tools/painting_losses.py --ckpt checkpoints/multi_style.safetensors checkpoints/udnie.safetensors \
        --photos ../shared/data/photos/bsds500/test --num-photos 8 --size 128

Prints one row per (painting, network), plus the unchanged photo as a reference (its content term
is 0, its style term is where training starts), and writes the table as JSON (--out).

Networks that take any painting (AdaIN, style prediction) are scored on the same paintings and
objectives with --arbitrary: each is given the painting file the --ckpt network trained on, at that
objective's style_size:

    python tools/painting_losses.py --ckpt starry_night the_scream --arbitrary adain checkpoints/style_prediction.safetensors \
        --photos ../shared/data/photos/bsds500/test

and on paintings no --ckpt network holds (--paintings FILES: the photo and the --arbitrary networks
only, against the first --ckpt network's objective, weight multiplier 1):

    python tools/painting_losses.py --ckpt starry_night --arbitrary adain --paintings my_painting.jpg \
        --photos ../shared/data/photos/bsds500/test
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch


from fast_nst.training.data.decode import resize_crop
from fast_nst.io.paintings import Painting
from fast_nst.io.export import training_ingredients
from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
from fast_nst.io.files import atomic_write
from fast_nst.kinds.base import painting_tensor
from fast_nst.models.losses import PerceptualLoss
from fast_nst.optimize.quality import load_lightning_checkpoint
from fast_nst.stylize.stylizer import Stylizer, find_checkpoint, pick_device

TERMS = ("content", "style", "tv", "loss")


def held_out_photos(folder: str, k: int, size: int) -> torch.Tensor:
    files = list_images(folder)
    if not files:
        raise SystemExit(f"--photos {folder}: no images found")
    step = max(1, len(files) // k)
    return torch.stack([pil_to_tensor(resize_crop(load_rgb(f), size, None)) for f in files[::step][:k]])


def _network(ckpt: str, device: torch.device):
    """(label, export metadata, training steps, stylize(images, painting)) of an export, or of a
    periodic training checkpoint (.ckpt: compare networks at the same number of steps)."""
    if ckpt.endswith(".ckpt"):
        net, info, step = load_lightning_checkpoint(ckpt, device)
        run = Path(ckpt).parent.parent.name if Path(ckpt).parent.name == "ckpt" else Path(ckpt).parent.name
        return f"{run}@{step}", info, step, torch.no_grad()(lambda x, name: net.stylize(x, net.condition(style=name)))
    path = find_checkpoint(ckpt)
    st = Stylizer.load(path, device=str(device))
    return path.stem, st.info, st.info.model_card.get("steps"), lambda x, name: st.stylize_tensor(x, style=name)


def painting_losses(ckpts: list[str], photos: torch.Tensor, device: torch.device, vgg_weights: str | None,
                    arbitrary: list[str] = (), unseen: list[str] = ()) -> list[dict]:
    """`unseen`: painting files no --ckpt network holds; only the `arbitrary` networks (and the
    photo) are scored on them, against the first --ckpt network's objective (weight multiplier 1)."""
    rows = []
    any_painting = [Stylizer.load(a, device=str(device)) for a in arbitrary]
    jobs = []
    for ckpt in ckpts:
        label, info, steps, stylize = _network(ckpt, device)
        jobs += [(label, steps, stylize, name, training_ingredients(info, style=name)) for name in info.style_names]
    if unseen:
        first = jobs[0][4]
        jobs += [(None, None, None, Path(f).stem, replace(first, painting=Painting(Path(f).stem, str(f)),
                                                          painting_file=Path(f), style_weight_scale=1.0))
                 for f in unseen]
    for label, steps, stylize, name, ing in jobs:
        crit = PerceptualLoss.build(ing.loss, ing.loss_net, style_weight_scale=ing.style_weight_scale,
                                    weights=vgg_weights).to(device)
        crit.set_style([painting_tensor(ing.painting, ing.loss.get("style_size")).to(device)])
        x = photos.to(device)
        outputs = [("(photo)", x)] + ([(label, stylize(x, name).to(device))] if stylize else [])
        for arb in any_painting:  # the same painting file, at the objective's painting size
            arb.style_size = ing.loss.get("style_size")
            outputs.append((arb.name, arb.stylize_tensor(x, style_image=str(ing.painting_file)).to(device)))
        with torch.no_grad():
            for who, images in outputs:
                per = [crit(images[i:i + 1], x[i:i + 1]) for i in range(len(x))]
                row = {"painting": name, "network": who, "steps": steps if who == label else None}
                row.update({t: statistics.fmean(float(p[t]) for p in per) for t in TERMS})
                rows.append(row)
    # the photo reference once per painting (identical objective for every network of a painting)
    seen, out = set(), []
    for r in rows:
        key = (r["painting"], r["network"])
        if r["network"] == "(photo)" and key in seen:
            continue
        seen.add(key)
        out.append(r)
    return sorted(out, key=lambda r: (r["painting"], r["network"] != "(photo)", r["network"]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", nargs="+", required=True,
                    help="exports (.safetensors or names in checkpoints/) and/or training checkpoints (.ckpt)")
    ap.add_argument("--arbitrary", nargs="*", default=[],
                    help="networks that take any painting (adain, style prediction exports), given each --ckpt painting")
    ap.add_argument("--paintings", nargs="*", default=[],
                    help="painting files no --ckpt network holds: only --arbitrary networks are scored on them, "
                         "against the first --ckpt network's objective")
    ap.add_argument("--photos", required=True, help="a folder of photos none of the networks trained on")
    ap.add_argument("--num-photos", type=int, default=8, help="photos, evenly spaced over the folder (default: %(default)s)")
    ap.add_argument("--size", type=int, default=128, help="centre crops of size x size; use the training size (default: %(default)s)")
    ap.add_argument("--vgg-weights", default=None, help="override the recorded loss_net.weights")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="outputs/painting_losses.json", help="JSON table (default: %(default)s)")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    rows = painting_losses(a.ckpt, held_out_photos(a.photos, a.num_photos, a.size), device, a.vgg_weights, a.arbitrary,
                           a.paintings)
    print(f"{'painting':28s} {'network':28s} {'steps':>6s} " + " ".join(f"{t:>11s}" for t in TERMS))
    for r in rows:
        print(f"{r['painting']:28s} {r['network']:28s} {str(r['steps'] or ''):>6s} "
              + " ".join(f"{r[t]:11.4g}" for t in TERMS))
    atomic_write(a.out, lambda tmp: tmp.write_text(json.dumps({"photos": a.photos, "num_photos": a.num_photos,
                                                               "size": a.size, "rows": rows}, indent=1)))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
