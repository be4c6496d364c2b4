"""Training-loader throughput (images/s): PIL vs torchvision.io decoding, with 0 and 2 workers.

    python benchmarks/bench_data.py                      # the bundled photos
    python benchmarks/bench_data.py --root ~/coco/train2014 --size 256 --workers 0 2 4 --json out.json

Times decode + resize + random crop + collate only (no model), after a warm-up that absorbs
worker start-up. With 0 workers the loading runs in this process under torch's intra-op threads
(--threads; the training process has the same), which on a busy machine slows the many small
tensor ops a lot; workers run single-threaded. Other processes skew the numbers: compare rows of
one run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from fast_nst.training.data.decode import DECODERS

from fast_nst.training.data.photos import loader_throughput
from fast_nst.io.images import list_images
from fast_nst.io.files import atomic_write


def default_roots() -> list[Path]:
    return [ROOT / "assets" / "photos"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", action="append", help="image folder (repeatable); default: the bundled photos")
    ap.add_argument("--size", type=int, default=256, help="crop size (px)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--images", type=int, default=96, help="images timed per row (after warm-up)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    ap.add_argument("--threads", type=int, help="torch intra-op threads here (default: torch's)")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"{a.size} px crops, batch {a.batch}, {a.images} images per row, "
          f"torch threads in this process: {torch.get_num_threads()}")

    rows = []
    print(f"{'photos':<34} {'decoder':<12} {'workers':>7} {'images/s':>9}")
    for root in [Path(r) for r in a.root] if a.root else default_roots():
        files = list_images(root)
        for workers in a.workers:
            for dec in a.decoders:
                r = loader_throughput(files, image_size=a.size, batch_size=a.batch, num_workers=workers,
                                      decoder=dec, images=a.images)
                r.update(photos=str(root), threads=torch.get_num_threads())
                rows.append(r)
                print(f"{str(root)[-34:]:<34} {dec:<12} {workers:>7} {r['images_per_s']:>9.1f}", flush=True)
    if a.json:
        atomic_write(a.json, lambda tmp: tmp.write_text(json.dumps(rows, indent=2)))


if __name__ == "__main__":
    main()
