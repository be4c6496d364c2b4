#!/usr/bin/env python
"""Export a fast_nst `.safetensors` network to ONNX (any height and width, metadata kept) and check
it against PyTorch with ONNX Runtime.

    python tools/export_onnx.py ckpt=starry_night                      # -> checkpoints/starry_night.onnx
    python tools/export_onnx.py ckpt=checkpoints/udnie.safetensors output=udnie.onnx check=false

    python tools/export_onnx.py ckpt=starry_night int8=true            # + checkpoints/starry_night_int8.onnx

Options (key=value): ckpt (a file or a name in checkpoints/), output (default: the ckpt's path with
.onnx), check (default true: run both on an odd-sized random image and report the largest
difference; exit 1 above `tolerance`, default 1e-4), int8 (default false: also write
`<output>_int8.onnx`, convolutions quantized to int8, calibrated on `calibration_photos` photos of
the folder `calibration` at 256 px; the check then reports its PSNR against PyTorch on a real photo
and fails below `min_psnr` dB).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULTS = {"ckpt": None, "output": None, "check": True, "tolerance": 1e-4, "int8": False,
            "calibration": str(ROOT / "assets" / "photos"), "calibration_photos": 8, "min_psnr": 35.0}
CHECK_PHOTO = ROOT / "assets" / "photos" / "chelsea_cat.jpg"


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

    from fast_nst.io.errors import ConfigError
    from fast_nst.io.export import load_network
    from fast_nst.stylize.onnx import OnnxStylizer, export_metadata_strings, export_onnx
    from fast_nst.stylize.stylizer import find_checkpoint
    from fast_nst.io.validate import refuse_overwriting_inputs

    try:
        src = find_checkpoint(cfg.ckpt)
        net, meta = load_network(src)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if len(meta.styles) > 1 or net.kind != "johnson":
        raise SystemExit(f"error: {src} is a {net.kind} network with {len(meta.styles)} paintings; ONNX export "
                         "takes per-style (johnson) networks, whose graph needs no style input")
    out = Path(cfg.output) if cfg.output else src.with_suffix(".onnx")
    try:  # output=the .safetensors itself (or its int8 copy's name) would replace it
        refuse_overwriting_inputs([out, out.with_name(f"{out.stem}_int8.onnx")] if cfg.int8 else [out], inputs=[src])
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    t = time.perf_counter()
    export_onnx(net, out, metadata=export_metadata_strings(meta))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, {time.perf_counter() - t:.0f} s) from {src}")
    ok = True
    if cfg.check:
        x = torch.rand(1, 3, 157, 211, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ref = net(x)
        diff = float((OnnxStylizer(out)(x) - ref).abs().max())
        ok = diff <= cfg.tolerance
        print(f"check at 157x211: max |ONNX Runtime - PyTorch| = {diff:.2e} ({'ok' if ok else 'TOO LARGE'}, "
              f"tolerance {cfg.tolerance:g})")
    if cfg.int8:
        from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
        from fast_nst.stylize.onnx import quantize_int8

        photos = list_images(cfg.calibration)[: cfg.calibration_photos]
        if not photos:
            raise SystemExit(f"error: calibration={cfg.calibration}: no photos to calibrate int8 on")
        q_out = out.with_name(f"{out.stem}_int8.onnx")
        t = time.perf_counter()
        quantize_int8(out, q_out, [pil_to_tensor(load_rgb(p, 256)).unsqueeze(0) for p in photos])
        print(f"wrote {q_out} ({q_out.stat().st_size / 2**20:.1f} MB, {time.perf_counter() - t:.0f} s, "
              f"calibrated on {len(photos)} photos)")
        if cfg.check:
            photo = pil_to_tensor(load_rgb(CHECK_PHOTO, 512)).unsqueeze(0)
            with torch.inference_mode():
                ref = net(photo)
            mse = float(((OnnxStylizer(q_out)(photo) - ref) ** 2).mean())
            psnr = 10 * math.log10(1 / max(mse, 1e-12))
            q_ok = psnr >= cfg.min_psnr
            ok = ok and q_ok
            print(f"check int8 on {CHECK_PHOTO.name} at {photo.shape[-1]}x{photo.shape[-2]}: PSNR {psnr:.1f} dB "
                  f"against PyTorch ({'ok' if q_ok else 'TOO LOW'}, minimum {cfg.min_psnr:g} dB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
