"""Picture grids for the docs and logs: rows and columns of images with white gaps and captions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

GAP = 6  # white pixels between cells


def fit_height(im: Image.Image, height: int) -> Image.Image:
    return im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)


def fit_box(im: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to fit inside width x height and centre it on white (cells of one column line up)."""
    s = min(width / im.width, height / im.height)
    small = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    cell = Image.new("RGB", (width, height), "white")
    cell.paste(small, ((width - small.width) // 2, (height - small.height) // 2))
    return cell


def hstack(images: list[Image.Image], gap: int = GAP) -> Image.Image:
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1),
                            max(i.height for i in images)), "white")
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def vstack(images: list[Image.Image], gap: int = GAP) -> Image.Image:
    out = Image.new("RGB", (max(i.width for i in images),
                            sum(i.height for i in images) + gap * (len(images) - 1)), "white")
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 scales its built-in font
    except TypeError:
        return ImageFont.load_default()


def caption(im: Image.Image, text: str, size: int = 14) -> Image.Image:
    """`im` with a line of text on white underneath (centred)."""
    font = _font(size)
    bar = Image.new("RGB", (im.width, size + 8), "white")
    draw = ImageDraw.Draw(bar)
    w = draw.textlength(text, font=font)
    draw.text((max(0, (im.width - w) / 2), 3), text, fill="black", font=font)
    return vstack([im, bar], gap=0)


def label(text: str, width: int, height: int, size: int = 14) -> Image.Image:
    """A white width x height box with `text` centred in it: row and column headings."""
    font = _font(size)
    box = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(box)
    lines = text.split("\n")
    y = (height - len(lines) * (size + 4)) / 2
    for line in lines:
        w = draw.textlength(line, font=font)
        draw.text((max(0, (width - w) / 2), y), line, fill="black", font=font)
        y += size + 4
    return box


def write_picture(build: Callable[[], Image.Image], out: str | Path, quality: int = 90) -> Image.Image:
    """What every docs-picture script ends with: build the picture, write it atomically as
    JPEG/PNG, print where it went; a missing or unreadable input (ImageError is a ValueError, PyAV
    raises OSErrors) is one line on stderr and exit code 2, the scripts' convention."""
    from fast_nst.io.images import save_image_atomic

    try:
        picture = build()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    save_image_atomic(picture, Path(out), quality=quality)
    print(f"wrote {out} ({picture.width}x{picture.height})")
    return picture
