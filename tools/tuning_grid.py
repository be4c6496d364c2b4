#!/usr/bin/env python
"""Style weight x training steps, as pictures: one row per training run (one style weight or
recipe), one column per periodic checkpoint, every cell the same photo through that checkpoint (the
photo itself in the last row).
This is the docs' tuning table: it shows how far a budget gets at each weight, so you can
re-tune `loss.style_weight` for yours.

Train the runs with periodic checkpoints kept, e.g.

    python train.py style=starry_night loss.style_weight=5 trainer.max_steps=1200 \\
        callbacks.model_checkpoint.every_n_train_steps=300 callbacks.model_checkpoint.save_top_k=-1 \\
        callbacks.model_checkpoint.dirpath=runs/sw5

then

    python tools/tuning_grid.py --run "style 5=runs/sw5" --run "style 1.5=runs/sw1.5" \\
        --steps 300 600 1200 --photo assets/photos/chelsea_cat.jpg --out docs/tuning_grid.jpg

A run directory must hold `step<NNNNNNN>.ckpt` files (the training checkpoints' naming); a
column shows the checkpoint nearest its step (within --tolerance), labelled when it is not exact.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw



LABEL_WIDTH = 150  # pixels for the row labels on the left


def checkpoint_near(run_dir: Path, step: int, tolerance: float = 0.2) -> tuple[Path, int] | None:
    """The run's checkpoint closest to `step`, if one lies within `tolerance` of it (runs saved at
    different intervals can share a column: 250/500/1000 sit under 300/600/1200 headings)."""
    found = []
    for p in run_dir.glob("step*.ckpt"):
        digits = p.stem[len("step"):]
        if digits.isdigit():
            found.append((abs(int(digits) - step), int(digits), p))
    if not found:
        return None
    dist, at, path = min(found)
    return (path, at) if dist <= tolerance * step else None


def parse_run(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise SystemExit(f"--run {spec!r}: expected LABEL=DIRECTORY, e.g. 'style 5=runs/sw5'")
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise SystemExit(f"--run {spec!r}: {run_dir} is not a directory of training checkpoints")
    return label, run_dir


def build(runs: list[tuple[str, Path]], steps: list[int], photo_path: str, size: int, cell: int,
          device: str = "cpu", tolerance: float = 0.2) -> Image.Image:
    import torch

    from grids import fit_box, hstack, label, vstack
    from fast_nst.io.images import load_rgb, pil_to_tensor, tensor_to_pil
    from fast_nst.optimize.quality import load_for_quality

    dev = torch.device(device)
    photo = load_rgb(photo_path, max_size=size)
    x = pil_to_tensor(photo).unsqueeze(0).to(dev)
    height = round(cell * photo.height / photo.width)  # cells keep the photo's aspect
    rows = [hstack([label("", LABEL_WIDTH, 28)] + [label(f"{s} steps", cell, 28) for s in steps])]
    for row_label, run_dir in runs:
        cells = [label(row_label.replace(", ", "\n"), LABEL_WIDTH, height)]
        for s in steps:
            near = checkpoint_near(run_dir, s, tolerance)
            if near is None:  # this run stopped earlier or kept other steps: the cell says so
                cells.append(label("(no checkpoint)", cell, height))
                continue
            net, _, _ = load_for_quality(near[0], dev)
            with torch.inference_mode():
                y = net(x).clamp(0, 1)
            img = fit_box(tensor_to_pil(y[0]), cell, height)
            if near[1] != s:  # say which step this cell really shows
                ImageDraw.Draw(img).text((4, 2), f"{near[1]}", fill="white", stroke_width=2, stroke_fill="black")
            cells.append(img)
        rows.append(hstack(cells))
    rows.append(hstack([label("photo", LABEL_WIDTH, height), fit_box(photo, cell, height)]))
    return vstack(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=DIR",
                    help="a row: its label and the directory holding its step*.ckpt files (repeatable)")
    ap.add_argument("--steps", nargs="+", type=int, default=[300, 600, 1200], help="one column each")
    ap.add_argument("--photo", default="assets/photos/chelsea_cat.jpg", help="the photo every cell stylizes")
    ap.add_argument("--size", type=int, default=384, help="long side the photo is stylized at (pixels)")
    ap.add_argument("--cell", type=int, default=224, help="side of each grid cell (pixels)")
    ap.add_argument("--tolerance", type=float, default=0.2,
                    help="a column shows a checkpoint this far from its step at most (fraction)")
    ap.add_argument("--out", default="docs/tuning_grid.jpg", help="output image (written atomically)")
    args = ap.parse_args(argv)
    from fast_nst.io.images import save_image_atomic

    grid = build([parse_run(r) for r in args.run], args.steps, args.photo, args.size, args.cell,
                 tolerance=args.tolerance)
    save_image_atomic(grid, args.out)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
