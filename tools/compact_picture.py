#!/usr/bin/env python
"""Docs picture for the compact networks: one photo through each teacher and its distilled
compact student, side by side with the painting, each student captioned with its PSNR against
its teacher and both with their weight counts.

    python tools/compact_picture.py                     # the six zoo paintings: <name> vs <name>_compact
    python tools/compact_picture.py --pairs starry_night=starry_night_compact six_paintings=six_paintings_compact@udnie

A pair is TEACHER=STUDENT (exports: names in checkpoints/ or files), with @STYLE to pick one
painting of multi-style networks (default: the student's first painting).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


ZOO = ("starry_night", "the_scream", "great_wave", "composition_vii", "udnie", "shipwreck_of_the_minotaur")


def _weights(st) -> str:
    n = sum(p.numel() for p in st.net.parameters())
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def build(pairs: list[str], photo: str, size: int, width: int):
    import torch

    from fast_nst import Stylizer
    from grids import caption, fit_box, hstack, vstack
    from fast_nst.io.images import load_rgb, pil_to_tensor, tensor_to_pil
    from fast_nst.kinds.base import painting_tensor
    from fast_nst.io.paintings import locate_painting  # noqa: F401  (painting_tensor finds the file)

    x = pil_to_tensor(load_rgb(photo, max_size=size)).unsqueeze(0)
    height = width * x.shape[-2] // x.shape[-1]
    rows = []
    for pair in pairs:
        teacher_name, _, student_spec = pair.partition("=")
        if not student_spec:
            raise ValueError(f"--pairs {pair}: give TEACHER=STUDENT[@STYLE]")
        student_name, _, style = student_spec.partition("@")
        student = Stylizer.load(student_name, device="cpu")
        teacher = Stylizer.load(teacher_name, device="cpu")
        style = style or student.net.style_names[0]
        pick = {"style": style} if len(student.net.style_names) > 1 else {}
        t_pick = {"style": style} if len(teacher.net.style_names) > 1 else {}
        y_t = teacher.stylize_tensor(x, **t_pick)
        y_s = student.stylize_tensor(x, **pick)
        psnr = 10 * math.log10(1 / max(float(((y_s - y_t) ** 2).mean()), 1e-12))
        painting = next(p for p in student.net.styles if p.name == style)
        art = tensor_to_pil(painting_tensor(painting, 512)[0])
        rows.append(hstack([
            caption(fit_box(art, width, height), style),
            caption(fit_box(tensor_to_pil(y_t[0]), width, height), f"teacher {Path(teacher_name).stem} ({_weights(teacher)} weights)"),
            caption(fit_box(tensor_to_pil(y_s[0]), width, height),
                    f"compact ({_weights(student)}): {psnr:.1f} dB to teacher"),
        ]))
    return vstack(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=[f"{n}={n}_compact" for n in ZOO],
                    help="TEACHER=STUDENT[@STYLE] (default: the six zoo paintings and their compact versions)")
    ap.add_argument("--photo", default="assets/photos/chelsea_cat.jpg", help="default: %(default)s")
    ap.add_argument("--size", type=int, default=512, help="long side stylized (default: %(default)s)")
    ap.add_argument("--width", type=int, default=300, help="panel width (default: %(default)s)")
    ap.add_argument("--out", default="docs/compact.jpg")
    a = ap.parse_args(argv)
    from grids import write_picture

    write_picture(lambda: build(a.pairs, a.photo, a.size, a.width), a.out, quality=88)


if __name__ == "__main__":
    main()
