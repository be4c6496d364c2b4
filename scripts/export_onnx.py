#!/usr/bin/env python
"""Export a fast_nst `.safetensors` network to ONNX (any height and width, metadata kept) and check
it against PyTorch with ONNX Runtime.

    python scripts/export_onnx.py ckpt=starry_night                      # -> checkpoints/starry_night.onnx
    python scripts/export_onnx.py ckpt=checkpoints/udnie.safetensors output=udnie.onnx check=false

Options (key=value): ckpt (a file or a name in checkpoints/), output (default: the ckpt's path with
.onnx), check (default true: run both on an odd-sized random image and report the largest
difference; exit 1 above `tolerance`, default 1e-4).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {"ckpt": None, "output": None, "check": True, "tolerance": 1e-4}


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"arguments are key=value (e.g. ckpt=starry_night); got {bad}")
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(argv))
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    if not cfg.ckpt:
        raise SystemExit("ckpt= is required (an exported .safetensors file or a name in checkpoints/)")

    import torch

    from fast_nst.export import load_network
    from fast_nst.onnx_export import OnnxStylizer, export_metadata_strings, export_onnx
    from fast_nst.stylizer import find_checkpoint

    try:
        src = find_checkpoint(cfg.ckpt)
        net, meta = load_network(src)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    out = Path(cfg.output) if cfg.output else src.with_suffix(".onnx")
    t = time.perf_counter()
    export_onnx(net, out, metadata=export_metadata_strings(meta))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, {time.perf_counter() - t:.0f} s) from {src}")
    if cfg.check:
        x = torch.rand(1, 3, 157, 211, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ref = net(x)
        diff = float((OnnxStylizer(out)(x) - ref).abs().max())
        ok = diff <= cfg.tolerance
        print(f"check at 157x211: max |ONNX Runtime - PyTorch| = {diff:.2e} ({'ok' if ok else 'TOO LARGE'}, "
              f"tolerance {cfg.tolerance:g})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
