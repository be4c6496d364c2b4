"""Throughput of stylize-dataset against stylize.py on one folder, in one run: prints a table of
images/s and the ratios, and the machine's load average before and after each command.

    python benchmarks/bench_dataset.py --photos /work/shared/data/photos/bsds500/train   # ~200 photos
    python benchmarks/bench_dataset.py --photos DIR --cluster     # also a two-node Ray cluster on loopback

Every command runs as a user would run it (a subprocess, from start-up to exit) at max_size=256,
JPEG out, with Magenta's network (`ckpt=magenta`; stylize.py with one painting, the job drawing
from the bundled paintings). Two rates per command: `wall` (images / the whole command, start-up,
Ray and model loading included) and `steady` (the middle 80 % of the images, by the time each
output was written, / the time between them: the rate a long job converges to).

--cluster starts two Ray nodes on this machine, loopback only, each its own `ray start --block`
process (a head and one joining it by address), runs the same job against them with
ray_address=, and stops exactly those processes (by session id) afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def steady_rate(out: Path) -> tuple[int, float]:
    """(images written, images/s between the 10th and the 90th percentile of the write times).
    The middle 80 % leaves out the start (one actor may write its first batch while another is
    still loading the network) and the tail (the last batches, with idle actors), which on a short
    job decide a first-to-last rate: on 200 photos two actors measured 0.9x one that way and 1.8x
    this way (2026-12-02)."""
    times = sorted(p.stat().st_mtime for p in out.rglob("*.jpg"))
    n = len(times)
    if n < 10:
        return n, float("nan")
    lo, hi = n // 10, n * 9 // 10
    return n, (hi - lo) / max(1e-9, times[hi] - times[lo])


def run(label: str, cmd: list[str], out: Path, env: dict, log_dir: Path) -> dict:
    before = load()
    start = time.perf_counter()
    with open(log_dir / f"{label.replace(' ', '_')}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    n, steady = steady_rate(out)
    row = dict(label=label, rc=rc, images=n, wall_s=wall, wall_rate=n / wall, steady=steady,
               load_before=before, load_after=load())
    print(f"  {label}: rc={rc}, {n} images, {wall:.1f} s, {n / wall:.2f} images/s wall, "
          f"{steady:.2f} images/s steady (load {before} -> {row['load_after']})", flush=True)
    return row


def io_cpu_ms(photos: Path, size: int) -> float:
    """CPU milliseconds (process time, so other jobs' load matters less) per photo to decode it,
    downscale it to `size` and encode the JPEG: the per-image work a GPU does not take over."""
    import io

    from fast_nst.io.images import limit_size, load_rgb

    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:200]
    start = time.process_time()
    for f in files:
        limit_size(load_rgb(f), size).save(io.BytesIO(), format="JPEG", quality=95)
    return 1000 * (time.process_time() - start) / max(1, len(files))


def net_cpu_ms(photos: Path, size: int, n: int = 20) -> float:
    """CPU milliseconds (process time, one torch thread) of Magenta's network per photo at `size`:
    with io_cpu_ms, what one image costs a core of this CPU when no other job competes for it."""
    import torch

    from fast_nst.io.images import limit_size, load_rgb, pil_to_tensor
    from fast_nst.stylize.stylizer import Stylizer

    torch.set_num_threads(1)
    stylizer = Stylizer.load("magenta", device="cpu")
    painting = str(ROOT / "assets" / "styles" / "udnie.jpg")
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    xs = [pil_to_tensor(limit_size(load_rgb(f), size)).unsqueeze(0) for f in files]
    stylizer.stylize_tensor(xs[0], style_image=painting)  # the painting's embedding, once
    start = time.process_time()
    for x in xs:
        stylizer.stylize_tensor(x, style_image=painting)
    return 1000 * (time.process_time() - start) / len(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="a folder of photos (~200)")
    ap.add_argument("--paintings", default=str(ROOT / "assets" / "styles"))
    ap.add_argument("--size", type=int, default=256, help="max_size of every command")
    ap.add_argument("--cluster", action="store_true", help="also run on a two-node cluster on loopback")
    ap.add_argument("--port", type=int, default=6390, help="the cluster head's GCS port")
    ap.add_argument("--keep", default=None, help="keep the outputs in this folder (default: a temporary one)")
    args = ap.parse_args()

    photos = Path(args.photos).resolve()
    n_photos = sum(1 for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_dataset_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="1")
    py = sys.executable
    common = [f"input={photos}", f"max_size={args.size}", "ckpt=magenta"]  # JPEG in, JPEG out
    job = [py, "-m", "fast_nst.dataset", *common, f"paintings={args.paintings}", "threads=1", "format=jpg"]
    print(f"{n_photos} photos from {photos} at max_size={args.size}; {os.cpu_count()} CPUs; "
          f"load average {load()}; outputs and logs in {work}", flush=True)
    baseline = [py, "stylize.py", *common, f"style_image={Path(args.paintings) / 'udnie.jpg'}"]
    rows = [run("stylize.py", [*baseline, f"output={work / 'stylize_py'}"], work / "stylize_py", env, work),
            run("stylize.py 1 thread", [*baseline, f"output={work / 'stylize_py1'}"], work / "stylize_py1",
                dict(env, OMP_NUM_THREADS="1"), work),
            run("1 actor", [*job, f"output={work / 'actors1'}", "actors=1", "num_cpus=2"], work / "actors1", env, work),
            run("2 actors", [*job, f"output={work / 'actors2'}", "actors=2", "num_cpus=3"], work / "actors2", env, work)]
    if args.cluster:
        from fast_nst.dataset.local_cluster import local_cluster

        print(f"  starting a 2-node Ray cluster on 127.0.0.1:{args.port} (load {load()})", flush=True)
        with local_cluster(nodes=2, cpus_per_node=2, port=args.port, log_dir=work) as address:
            rows.append(run("2 nodes x 1 actor", [*job, f"output={work / 'cluster'}", "actors=2",
                                                 f"ray_address={address}"], work / "cluster",
                            dict(env, RAY_AUTH_MODE="token"), work))
        import csv

        with open(work / "cluster" / "manifest.csv", newline="") as f:
            nodes = {r["worker"].split("@")[-1] for r in csv.DictReader(f) if r["status"] == "ok"}
        print(f"  cluster: images written by {len(nodes)} Ray node(s): {', '.join(sorted(nodes))}")

    base = rows[0]
    print(f"\n| command | images | wall s | images/s (wall) | images/s (steady) | steady vs stylize.py | load before -> after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        r["steady"] = r["steady"] if r["images"] > 1 else float("nan")
        print(f"| {r['label']} | {r['images']} | {r['wall_s']:.1f} | {r['wall_rate']:.2f} | {r['steady']:.2f} | "
              f"{r['steady'] / base['steady']:.2f}x | {r['load_before']} -> {r['load_after']} |")
    one = next(r for r in rows if r["label"] == "1 actor")
    two = next(r for r in rows if r["label"] == "2 actors")
    if one["images"] and two["images"]:
        print(f"\n2 actors / 1 actor: {two['steady'] / one['steady']:.2f}x steady, "
              f"{two['wall_rate'] / one['wall_rate']:.2f}x wall")
    best = max(rows[2:], key=lambda r: r["steady"] if r["images"] else 0)
    print(f"CPU cost per million images at the best steady rate ({best['label']}, {best['steady']:.2f} images/s on "
          f"{os.cpu_count()} cores): {1e6 / best['steady'] / 3600:.1f} machine-hours, "
          f"{1e6 / best['steady'] / 3600 * os.cpu_count():.1f} core-hours")
    io_ms, net_ms = io_cpu_ms(photos, args.size), net_cpu_ms(photos, args.size)
    print(f"decode + downscale to {args.size} + JPEG encode: {io_ms:.1f} CPU-ms per photo (one thread; the part "
          f"of the work that stays on the CPU next to a GPU); Magenta's network: {net_ms:.1f} CPU-ms per photo "
          f"(one thread) -> {1000 / (io_ms + net_ms):.2f} images/s per idle core, "
          f"{1e6 * (io_ms + net_ms) / 1000 / 3600:.1f} core-hours per million images")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if any(r["rc"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
