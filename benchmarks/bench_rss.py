#!/usr/bin/env python
"""Memory over a long folder: stylize N photos one after another (the path `stylize.py input=DIR`
takes: decode, Stylizer, atomic JPEG write) and print the process's resident memory every
`--every` images. Flat RSS after the first images means nothing accumulates per image.

    python benchmarks/bench_rss.py --photos ../shared/data/photos --count 1000 --max-size 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path



def rss_mb() -> float:
    """Current resident set size (Linux /proc; the high-water mark is VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="starry_night")
    ap.add_argument("--photos", required=True, help="a folder of photos (cycled through if fewer than --count)")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--max-size", type=int, default=256, help="long side the photos are stylized at (default: %(default)s)")
    ap.add_argument("--every", type=int, default=100, help="print RSS every this many images (default: %(default)s)")
    a = ap.parse_args(argv)

    from fast_nst import Stylizer
    from fast_nst.io.images import list_images, load_rgb, save_image_atomic

    files = list_images(a.photos)
    if not files:
        sys.exit(f"--photos {a.photos}: no images found")
    st = Stylizer.load(a.ckpt, device="cpu")
    samples = {0: rss_mb()}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fast_nst_bench_rss_") as out:
        for k in range(1, a.count + 1):
            f = files[(k - 1) % len(files)]
            save_image_atomic(st(load_rgb(f, max_size=a.max_size)), Path(out) / f"{k:05d}.jpg", quality=90)
            if k % a.every == 0 or k == a.count:
                samples[k] = rss_mb()
                print(f"{k:6d} images  RSS {samples[k]:7.1f} MB  ({time.perf_counter() - start:.0f} s)", flush=True)
    first = samples.get(a.every, samples[0])
    result = {"images": a.count, "rss_mb": samples, "peak_mb": peak_mb(),
              "growth_after_first_mb": samples[a.count] - first}
    print(f"RSS after {a.every} images {first:.1f} MB, after {a.count} {samples[a.count]:.1f} MB "
          f"(growth {result['growth_after_first_mb']:+.1f} MB); peak {result['peak_mb']:.1f} MB")
    return result


if __name__ == "__main__":
    main()
