#!/usr/bin/env python
"""Docs picture for ONNX Runtime: one photo through the PyTorch export and its ONNX Runtime
copies (from `python -m fast_nst export`, fp32 and int8), side by side, each captioned with its
PSNR against PyTorch.

    python -m fast_nst export ckpt=starry_night
    python tools/onnx_picture.py --ckpt starry_night --onnx checkpoints/starry_night.onnx checkpoints/starry_night_int8.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path



def build(ckpt: str, onnx: list[str], photo: str, size: int, width: int):
    import torch

    from fast_nst import Stylizer
    from grids import caption, fit_box, hstack
    from fast_nst.io.images import load_rgb, pil_to_tensor, tensor_to_pil

    x = pil_to_tensor(load_rgb(photo, max_size=size)).unsqueeze(0)
    height = width * x.shape[-2] // x.shape[-1]
    ref = Stylizer.load(ckpt, device="cpu").stylize_tensor(x)
    panels = [caption(fit_box(tensor_to_pil(ref[0]), width, height), "PyTorch (.safetensors)")]
    for path in onnx:
        y = Stylizer.load(path).stylize_tensor(x)
        mse, worst = float(((y - ref) ** 2).mean()), float((y - ref).abs().max())
        # an fp32 graph matches to rounding (PSNR would be a meaningless 100+ dB): say how close
        close = f"{10 * torch.log10(torch.tensor(1 / mse)):.1f} dB" if worst > 1e-3 else f"max |diff| {worst:.0e}"
        panels.append(caption(fit_box(tensor_to_pil(y[0]), width, height), f"ONNX Runtime {Path(path).stem}: {close}"))
    return hstack(panels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="starry_night", help="the .safetensors export (default: %(default)s)")
    ap.add_argument("--onnx", nargs="+", required=True, help="its .onnx copies")
    ap.add_argument("--photo", default="assets/photos/chelsea_cat.jpg", help="default: %(default)s")
    ap.add_argument("--size", type=int, default=512, help="long side stylized (default: %(default)s)")
    ap.add_argument("--width", type=int, default=320, help="panel width (default: %(default)s)")
    ap.add_argument("--out", default="docs/onnx.jpg")
    a = ap.parse_args(argv)
    from grids import write_picture

    write_picture(lambda: build(a.ckpt, a.onnx, a.photo, a.size, a.width), a.out, quality=90)


if __name__ == "__main__":
    main()
