#!/usr/bin/env python
"""Docs picture of a stylized video: evenly spaced frames of the source (top row) over the same
frames of the stylized video (bottom row).

    python stylize.py ckpt=starry_night input=clip.mp4 output=clip_starry.mp4
    python tools/video_strip.py clip.mp4 clip_starry.mp4 --out docs/video.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path


GAP = 4


def frames_at(path: str, count: int) -> list:
    """`count` evenly spaced frames (first to last) of a video as PIL images."""
    import av

    with av.open(path) as container:
        images = [f.to_image() for f in container.decode(video=0)]
    if not images:
        raise ValueError(f"{path}: no video frames")
    picks = [round(k * (len(images) - 1) / max(count - 1, 1)) for k in range(count)]
    return [images[i] for i in picks]


def build(source: str, stylized: str, count: int, cell: int):
    from grids import fit_box, hstack, vstack

    top, bottom = frames_at(source, count), frames_at(stylized, count)
    height = cell * top[0].height // top[0].width
    return vstack([hstack([fit_box(im, cell, height) for im in row], gap=GAP) for row in (top, bottom)], gap=GAP)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="the input video")
    ap.add_argument("stylized", help="stylize.py's output for it")
    ap.add_argument("--frames", type=int, default=4, help="frames per row (default: %(default)s)")
    ap.add_argument("--cell", type=int, default=320, help="frame width in the picture (default: %(default)s)")
    ap.add_argument("--out", default="docs/video.jpg")
    a = ap.parse_args(argv)
    from grids import write_picture

    write_picture(lambda: build(a.source, a.stylized, a.frames, a.cell), a.out, quality=88)


if __name__ == "__main__":
    main()
