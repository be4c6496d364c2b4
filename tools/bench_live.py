#!/usr/bin/env python
"""Frames per second of the web page's Live tab, counted where they arrive: in headless Chromium's
page (its synthetic camera, --use-fake-device-for-media-stream), for each network, runtime and
camera size, in one run.

    python tools/bench_live.py                                        # zoo starry_night + a width-0.25 net
    python tools/bench_live.py --ckpt starry_night --sizes 320x240,640x360 --runtimes onnx-int8,torch --seconds 20

Each (network, runtime, size) starts `python app.py` (its defaults, with live_size and runtime
set), opens the Live tab, waits for the first stylized frame (model loading), warms up for a few
seconds and counts frames for `--seconds` (tools/app_driver.py, live_in_browser). The browser runs
on the same machine and CPU as the server, as it would for someone trying the page locally.
`--width-net W` adds an untrained johnson network of width W, exported with its graphs, for
timing only. Needs Playwright and Chromium (see tests/test_app.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def models_folder(args, d: Path) -> list[str]:
    """Copy/make the networks into `d`, with their ONNX graphs beside them; their names."""
    import torch

    from fast_nst.io.export import export_network, read_export

    from fast_nst.kinds import load_network
    from fast_nst.kinds import get_kind
    from fast_nst.stylize.runtimes import write_graphs
    from fast_nst.stylize.stylizer import find_checkpoint

    names = []
    for ckpt in args.ckpt:
        src = find_checkpoint(ckpt)
        dst = d / src.name
        shutil.copy(src, dst)
        names.append(dst.stem)
    for w in args.width_net:
        torch.manual_seed(0)
        net = get_kind("johnson")([], width=w, norm="instance", upsample="transpose", num_res_blocks=5,
                                  tanh_scale=1.0).eval()
        names.append(f"johnson_w{w:g}")
        export_network(net, d / f"{names[-1]}.safetensors", thumbnail_size=0)
    for name in names:
        src = d / f"{name}.safetensors"
        net, _ = load_network(src)
        write_graphs(src, net, read_export(src), say=lambda m: print(f"  {name}: {m}", file=sys.stderr))
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", nargs="*", default=["starry_night"])
    ap.add_argument("--width-net", nargs="*", type=float, default=[0.25])
    ap.add_argument("--sizes", default="320x240,640x360")
    ap.add_argument("--runtimes", default="onnx-int8,onnx,torch")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    a = ap.parse_args(argv)
    from app_driver import find_chromium, live_in_browser, running_app
    from fast_nst.io.files import atomic_write

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or FAST_NST_CHROMIUM=/path/to/chrome)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fast_nst_bench_live_") as tmp:
        d = Path(tmp)
        names = models_folder(a, d)
        for name in names:
            for size in a.sizes.split(","):
                w, h = (int(v) for v in size.split("x"))
                for runtime in a.runtimes.split(","):
                    before = os.getloadavg()[0]
                    with running_app(f"models_dir={d}", f"model={name}", "device=cpu", f"runtime={runtime}",
                                     f"live_size=[{w},{h}]", timeout=600) as url:
                        r = live_in_browser(url, chromium=chromium, seconds=a.seconds, warmup_s=a.warmup,
                                            timeout_s=600)
                    row = {"network": name, "size": size, "runtime": runtime, "fps": r.fps, "frames": r.frames,
                           "status": r.status.replace("\n", " "), "load_before": before,
                           "load_after": os.getloadavg()[0]}
                    rows.append(row)
                    print(f"{name:24s} {size:>8s} {runtime:10s} {r.fps:6.2f} frames/s in the browser "
                          f"({r.frames} frames in {a.seconds:g} s; page: {row['status']}; "
                          f"load {row['load_before']:.1f} -> {row['load_after']:.1f})", flush=True)
    if a.out:
        atomic_write(a.out, lambda p: p.write_text(json.dumps(rows, indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
