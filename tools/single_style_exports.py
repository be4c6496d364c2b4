#!/usr/bin/env python
"""Write each painting of a multi-style (cin) export as a per-style export of its own: the shared
weights, and that painting's conditional-norm row as a plain instance norm (kinds/cin.py
`single_style`). The result computes exactly what the multi-style network does with style=NAME,
exports to an ONNX graph with no style input, and carries the parent's objective and model card
(marked as derived from it).

    python tools/single_style_exports.py --ckpt six_paintings_compact --suffix _compact
    # -> checkpoints/starry_night_compact.safetensors, checkpoints/the_scream_compact.safetensors, ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def single_style_exports(ckpt: str, out_dir: str | Path, suffix: str, styles: list[str] | None = None) -> list[Path]:
    import torch

    from fast_nst.io.export import export_network

    from fast_nst.kinds import load_network
    from fast_nst.stylize.stylizer import find_checkpoint

    src = find_checkpoint(ckpt)
    net, info = load_network(src)
    if info.kind != "cin":
        raise ValueError(f"{src} is a {info.kind} network; this writes the paintings of a multi-style (cin) export")
    written = []
    for name in styles or info.style_names:
        one = net.single_style(name)
        x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # the promise of the file: exactly the parent's painting
            if not torch.equal(one.eval()(x), net.eval()(x, net.condition(style=name))):
                raise RuntimeError(f"{name}: the per-style network differs from {src}'s row")
        card = {"derived_from": {"export": src.name, "painting": name, "index": info.style_names.index(name),
                                 "how": "shared weights + this painting's conditional-norm row as instance norm"},
                **{k: v for k, v in info.model_card.items() if k != "quality"}}
        quality = (info.model_card.get("quality") or {}).get(name)
        if quality:
            card["quality"] = quality
        path = export_network(one, Path(out_dir) / f"{name}{suffix}.safetensors", loss=info.loss,
                              loss_net=info.loss_net, vgg_weights=info.vgg_weights, model_card=card)
        print(f"wrote {path} ({name} of {src.name})")
        written.append(path)
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a multi-style export (a name in checkpoints/ or a file)")
    ap.add_argument("--styles", nargs="*", default=None, help="paintings to write (default: all)")
    ap.add_argument("--suffix", default="", help="file name = painting name + suffix (e.g. _compact)")
    ap.add_argument("--out-dir", default="checkpoints")
    a = ap.parse_args(argv)
    try:
        single_style_exports(a.ckpt, a.out_dir, a.suffix, a.styles)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
