#!/usr/bin/env python
"""Time and peak memory of tiled stylization of a huge photo (fast_nst.stylize.tiling).

    python benchmarks/bench_tiling.py                                   # bundled photo resized to 6000x4000
    python benchmarks/bench_tiling.py --image big.jpg --size 0 --stats sweep --out big_starry.jpg

Peak memory is the process's peak RSS (VmHWM), reset after the photo is loaded, so it counts what
stylizing adds to the input tensor plus that tensor itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="starry_night")
    p.add_argument("--image", default=str(ROOT / "assets" / "photos" / "picos_de_europa.jpg"))
    p.add_argument("--size", default="6000x4000", help="WxH to resize (and centre-crop) the photo to; 0 keeps it")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--stats", default="thumbnail", help="thumbnail | sweep | tile")
    p.add_argument("--stats-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write the result here (JPEG/PNG)")
    args = p.parse_args(argv)

    import torch
    from PIL import Image, ImageOps

    from fast_nst.kinds import load_network
    from fast_nst.io.images import load_rgb, pil_to_tensor, save_image_atomic, tensor_to_pil
    from fast_nst.stylize.stylizer import find_checkpoint
    from fast_nst.stylize.tiling import stylize_tiled

    if args.threads:
        torch.set_num_threads(args.threads)
    net, _ = load_network(find_checkpoint(args.ckpt))
    im = load_rgb(args.image)
    if args.size != "0":
        w, h = (int(v) for v in args.size.lower().split("x"))
        im = ImageOps.fit(im, (w, h), Image.LANCZOS)
    x = pil_to_tensor(im).unsqueeze(0)
    del im
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: peak from here on
        f.write("5")
    base = _rss_mb("VmRSS")
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            now = time.perf_counter()
            stages[stage] = now - last[0]
            last[0] = now
            print(f"  {stage}: {total} tiles, {stages[stage]:.0f} s", file=sys.stderr, flush=True)

    t = time.perf_counter()
    y = stylize_tiled(net, x, tile=args.tile, overlap=args.overlap, stats=args.stats, stats_size=args.stats_size,
                      progress=progress)
    seconds = time.perf_counter() - t
    peak = _rss_mb("VmHWM")
    res = {"size": f"{x.shape[-1]}x{x.shape[-2]}", "tile": args.tile, "overlap": args.overlap, "stats": args.stats,
           "stats_size": args.stats_size, "seconds": seconds, "stages_s": stages, "rss_before_mb": base,
           "peak_rss_mb": peak, "threads": torch.get_num_threads()}
    print(f"{res['size']} in {args.tile} px tiles (overlap {args.overlap}, stats {args.stats}): {seconds:.0f} s, "
          f"peak RSS {peak:.0f} MB (input tensor and process before stylizing: {base:.0f} MB), "
          f"{torch.get_num_threads()} threads")
    if args.out:
        save_image_atomic(tensor_to_pil(y), args.out)
        print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
