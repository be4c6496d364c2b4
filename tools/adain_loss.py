#!/usr/bin/env python
"""AdaIN decoders scored on their own training objective (the paper's: content at relu4_1 against
the AdaIN target, style weight 10 on channel means and stds at relu1_1..relu4_1) over held-out
photos x paintings. Use it to check that a fine-tune helped, on the paintings it trained on and on
paintings it never saw:

    python tools/adain_loss.py --ckpt adain checkpoints/adain_decoder.safetensors \
        --photos ../shared/data/photos/bsds500/test --paintings assets/styles --size 128

`--ckpt adain` is the pretrained decoder; exports (.safetensors) and periodic training checkpoints
(.ckpt) of experiment=adain runs work too. Each photo and painting is resized so its short side is
`--context` x `--size`, then centre-cropped to `--size` (the paper trains on 256 px crops of images
resized to 512: --context 2). Every decoder sees the same pairs. Prints one row per
(decoder, painting) and the mean, and writes the table as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.progress import track


from fast_nst.training.data.decode import resize_crop
from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
from fast_nst.io.files import atomic_write
from fast_nst.kinds.adain.loss import AdaINLoss

TERMS = ("content", "style", "loss")


def centre_crops(files: list[Path], size: int, context: float) -> torch.Tensor:
    """Short side resized to context x size, then the centre size x size crop: the training
    loader's own crop (data.photo_scale = context), centred."""
    return torch.stack([pil_to_tensor(resize_crop(load_rgb(f), size, None, context)) for f in files])


def image_files(items: list[str], what: str, limit: int | None = None) -> list[Path]:
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            step = max(1, len(found) // limit) if limit else 1
            files += found[::step][:limit] if limit else found
        elif p.is_file():
            files.append(p)
        else:
            raise SystemExit(f"--{what} {item}: no such file or folder")
    if not files:
        raise SystemExit(f"--{what} {' '.join(items)}: no images found")
    return files


def load_decoder(ckpt: str, device: torch.device):
    """(label, the AdaIN module: encoder + decoder) of `adain`, an export or a .ckpt."""
    if ckpt.endswith(".ckpt"):
        from fast_nst.optimize.quality import load_lightning_checkpoint

        net, _info, step = load_lightning_checkpoint(ckpt, device)
        label = f"{Path(ckpt).parent.parent.name}@{step}"
    else:
        from fast_nst.stylize.stylizer import Stylizer

        st = Stylizer.load(ckpt, device=str(device))
        net, label = st.net, "adain (pretrained)" if ckpt == "adain" else Path(ckpt).stem
    if getattr(net, "kind", None) != "adain":
        raise SystemExit(f"--ckpt {ckpt}: a {getattr(net, 'kind', '?')} network; this script scores AdaIN decoders")
    return label, net.model.eval()


@torch.no_grad()
def score(model, photos: torch.Tensor, painting: torch.Tensor, batch: int) -> dict[str, float]:
    objective = AdaINLoss.paper(model.encoder)
    sums = dict.fromkeys(TERMS, 0.0)
    for i in range(0, len(photos), batch):
        x = photos[i:i + batch]
        step = model.training_pass(x, painting.expand(len(x), -1, -1, -1))
        terms = objective(step.output, step.target, step.style_features)
        for k in TERMS:
            sums[k] += float(terms[k]) * len(x)
    return {k: v / len(photos) for k, v in sums.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--ckpt", nargs="+", default=["adain"], help="decoders: adain (pretrained), exports or .ckpt files")
    ap.add_argument("--photos", nargs="+", default=["assets/photos"], help="photo files or folders (held out from training)")
    ap.add_argument("--num-photos", type=int, default=8, help="photos taken evenly from each folder")
    ap.add_argument("--paintings", nargs="+", default=["assets/styles"], help="painting files or folders")
    ap.add_argument("--size", type=int, default=128, help="crop side in px (the paper trains on 256)")
    ap.add_argument("--context", type=float, default=2.0, help="short side before the centre crop, in crop sides")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)
    from fast_nst.stylize.stylizer import pick_device

    device = pick_device(args.device)
    photo_files = image_files(args.photos, "photos", args.num_photos)
    painting_files = image_files(args.paintings, "paintings")
    photos = centre_crops(photo_files, args.size, args.context).to(device)
    paintings = centre_crops(painting_files, args.size, args.context).to(device)
    rows = []
    for ckpt in args.ckpt:
        label, model = load_decoder(ckpt, device)
        for f, painting in track(list(zip(painting_files, paintings)), description=label, transient=True):
            rows.append({"decoder": label, "painting": f.stem, **score(model, photos, painting[None], args.batch)})
    print(f"{len(photo_files)} photos x {len(painting_files)} paintings, {args.size} px crops "
          f"(short side {round(args.size * args.context)} px first)")
    print(f"{'decoder':28s} {'painting':28s} " + " ".join(f"{t:>9s}" for t in TERMS))
    for label in dict.fromkeys(r["decoder"] for r in rows):
        mine = [r for r in rows if r["decoder"] == label]
        for r in mine + [{"painting": "mean", **{t: sum(r[t] for r in mine) / len(mine) for t in TERMS}}]:
            print(f"{label:28s} {r['painting']:28s} " + " ".join(f"{r[t]:9.3f}" for t in TERMS))
    if args.out:
        table = {"size": args.size, "context": args.context, "photos": [str(f) for f in photo_files],
                 "paintings": [str(f) for f in painting_files], "rows": rows}
        atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(table, indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
