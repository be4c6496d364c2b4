"""The export command, `fast-nst export` (conf/export/export.yaml): an export's ONNX graphs, written beside it
(fast_nst.stylize.runtimes.write_graphs) and checked against the PyTorch network."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.stylize.runtimes import GRAPHS, SUFFIX, write_graphs


def graph_error(net, graph: Path, x: torch.Tensor) -> float:
    """Largest |graph - PyTorch| over `x`, with the network's first example style."""
    from fast_nst.stylize.onnx import OnnxNetwork

    cond = net.condition(**net.example_styles()[0])
    with torch.inference_mode():
        ref = net.stylize(x, cond)
        return float((OnnxNetwork(graph, net).stylize(x, cond) - ref).abs().max())


def graph_psnr(net, graph: Path, x: torch.Tensor) -> float:
    """PSNR in dB of the graph's picture against PyTorch's, with the first example style."""
    from fast_nst.stylize.onnx import OnnxNetwork

    cond = net.condition(**net.example_styles()[0])
    with torch.inference_mode():
        mse = float(((OnnxNetwork(graph, net).stylize(x, cond) - net.stylize(x, cond)) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


def run(cfg) -> int:
    """Returns 0, or 1 when a check failed (the graphs are written either way)."""
    from fast_nst.kinds import load_network
    from fast_nst.io.images import load_rgb, pil_to_tensor, resolve_path
    from fast_nst.stylize.stylizer import find_checkpoint

    runtimes = list(cfg.runtimes)
    bad = [r for r in runtimes if r not in GRAPHS]
    if bad or not runtimes:
        raise ConfigError(f"runtimes={runtimes}: choose among {', '.join(GRAPHS)}")
    try:
        src = find_checkpoint(cfg.ckpt)
    except MissingPathError:
        from fast_nst.kinds import pretrained_network

        pretrained = pretrained_network(str(cfg.ckpt))  # ckpt=magenta: a kind's own weights, graphs cached
        if pretrained is None:
            raise
        src, (net, info) = None, pretrained
    else:
        if src.suffix.lower() != ".safetensors":
            raise ConfigError(f"ckpt={cfg.ckpt}: export takes a .safetensors export, got {src.name}")
        net, info = load_network(src)
    if not net.graph_export:
        raise ConfigError(f"ckpt={cfg.ckpt}: {net.kind} networks are not exported to ONNX; they run with runtime=torch")
    name = src.stem if src is not None else net.kind
    out = {r: Path(cfg.output_dir) / (name + SUFFIX[r]) for r in runtimes} if cfg.output_dir else None
    if src is not None:  # the graphs are named from the export: never the export itself, checked all the same
        from fast_nst.stylize.runtimes import sibling_graph
        from fast_nst.io.validate import refuse_overwriting_inputs

        refuse_overwriting_inputs(list((out or {r: sibling_graph(src, r) for r in runtimes}).values()), inputs=[src],
                                  option="output_dir")
    t = time.perf_counter()
    written = write_graphs(src, net, info, runtimes, out=out, calibration=cfg.calibration,
                           calibration_count=cfg.calibration_photos, say=lambda m: print(m, flush=True))
    for r, p in written.items():
        print(f"wrote {p} ({p.stat().st_size / 2**20:.1f} MB)", flush=True)
    print(f"in {time.perf_counter() - t:.0f} s", flush=True)
    if not cfg.check:
        return 0
    ok = True
    if "onnx" in written:
        x = torch.rand(1, 3, 157, 211, generator=torch.Generator().manual_seed(0))
        diff = graph_error(net, written["onnx"], x)
        ok = diff <= cfg.tolerance
        print(f"check onnx at 211x157: max |ONNX Runtime - PyTorch| = {diff:.2e} "
              f"({'ok' if ok else 'TOO LARGE'}, tolerance {cfg.tolerance:g})")
    if "onnx-int8" in written:
        photo_file = resolve_path(cfg.check_photo)
        photo = pil_to_tensor(load_rgb(photo_file, cfg.check_size)).unsqueeze(0)
        psnr = graph_psnr(net, written["onnx-int8"], photo)
        q_ok = psnr >= cfg.min_psnr
        ok = ok and q_ok
        print(f"check onnx-int8 on {photo_file.name} at {photo.shape[-1]}x{photo.shape[-2]}: PSNR {psnr:.1f} dB "
              f"against PyTorch ({'ok' if q_ok else 'TOO LOW'}, minimum {cfg.min_psnr:g} dB)")
    return 0 if ok else 1
