"""One photo to one training crop: the header checked first, then decoded with PIL or with
torchvision.io (libjpeg-turbo / libpng straight into a uint8 tensor, then an antialiased tensor
resize), resized and cropped. An unusable file raises the ImageError that names it and says why
(`scan_images` checks every header of a folder up front, the cheap part of the same test).

`decoder` in conf/data/*.yaml picks the decoder; `python benchmarks/bench_data.py` measures both.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import torch
from PIL import Image

from fast_nst.io.images import (WHITE, ImageError, ImageHeader, PixelLimit, load_rgb, pil_to_tensor,
                                read_header)

DECODERS = ("pil", "torchvision")

def resize_crop(im: Image.Image, size: int, rng: random.Random | None, scale: float = 1.0) -> Image.Image:
    """Scale the short side to `size` x `scale`, then crop size x size (random with `rng`, else centred)."""
    w, h, x, y = _crop_box(im.width, im.height, size, rng, scale)
    im = im.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
    return im.crop((x, y, x + size, y + size))


def _crop_box(w: int, h: int, size: int, rng: random.Random | None, scale: float = 1.0) -> tuple[int, int, int, int]:
    """Scaled (w, h) with the short side = size x scale, and the crop's top-left (random with `rng`)."""
    short = max(size, round(size * scale))
    s = short / min(w, h)
    w, h = max(short, round(w * s)), max(short, round(h * s))
    x = rng.randint(0, w - size) if rng else (w - size) // 2
    y = rng.randint(0, h - size) if rng else (h - size) // 2
    return w, h, x, y


def _tv_decode(path: Path) -> torch.Tensor:
    """torchvision.io decode to a (3, H, W) uint8 tensor, EXIF rotation applied; raises on bad data."""
    from torchvision.io import ImageReadMode, decode_image

    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 flags its image codecs as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        x = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    if x.dtype != torch.uint8 or x.dim() != 3:
        raise ValueError(f"{path}: {x.dtype} image of shape {tuple(x.shape)}")
    return x


def _torchvision_reads(h: ImageHeader) -> bool:
    """Plain JPEG and WebP stills, which torchvision.io decodes to the same pixels as PIL.

    Not PNG: torchvision 0.29's PNG decoder crashes the process (SIGSEGV, not an exception) on a
    PNG whose compressed data is damaged, about a third of the damaged PNGs in our fuzzing, and a
    crash in a DataLoader worker ends the run (JPEG and WebP: none in 1500 damaged files each).
    Not alpha or animations either: its RGB mode drops alpha (showing whatever colour hides under
    transparent pixels) and decodes every frame. Those, palettes, 16-bit and the other formats go
    through PIL."""
    return (h.format in ("JPEG", "WEBP") and h.mode in ("RGB", "L", "CMYK")
            and not h.transparency and h.frames == 1)


def tv_resize_crop(x: torch.Tensor, size: int, rng: random.Random | None, scale: float = 1.0) -> torch.Tensor:
    """`resize_crop` for a (3, H, W) uint8 tensor: antialiased bilinear resize, then the crop."""
    w, h, cx, cy = _crop_box(x.shape[-1], x.shape[-2], size, rng, scale)
    if (h, w) != tuple(x.shape[-2:]):
        x = torch.nn.functional.interpolate(x[None], size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False)[0]
    return x[:, cy:cy + size, cx:cx + size]


def pixel_limit(max_pixels: int | None) -> PixelLimit | None:
    """data.max_image_pixels as the PixelLimit of a training photo (None: PIL's own bomb check)."""
    if max_pixels is None:
        return None
    return PixelLimit(max_pixels, "data.max_image_pixels", "or downscale the photo: training crops are "
                      "data.image_size px, so a smaller copy trains the same")


def load_crop(path: Path, size: int, seed: int | None, decoder: str = "pil",
              min_size: int = 1, max_pixels: int | None = None, scale: float = 1.0) -> torch.Tensor:
    """One training/validation crop as float (3, size, size) in [0, 1]; ImageError if unusable.
    `scale`: the short side is resized to size x scale before cropping (data.photo_scale).

    The header is checked first (readable, a supported format, not a decompression bomb, short
    side >= `min_size`, at most `max_pixels` pixels), so no decoder ever allocates a bomb's pixels. The picture is the one a
    viewer shows: EXIF rotation applied, transparency over white, 16-bit scaled by 65535, CMYK and
    palettes in RGB, the first frame of an animation. With decoder="torchvision", plain 8-bit
    JPEG/WebP stills go through torchvision.io and everything else, or anything it fails on,
    through PIL.
    """
    header = read_header(path, min_size, pixel_limit(max_pixels))
    if decoder == "torchvision" and _torchvision_reads(header):
        try:
            x = tv_resize_crop(_tv_decode(header.path), size, random.Random(seed) if seed is not None else None,
                               scale)
            return x.float().div_(255.0)
        except (RuntimeError, ValueError, OSError):
            pass  # PIL either reads it or raises the ImageError that names the problem
    rng = random.Random(seed) if seed is not None else None
    return pil_to_tensor(resize_crop(load_rgb(header.path, background=WHITE, limit=pixel_limit(max_pixels)),
                                     size, rng, scale))


def scan_images(files: list[Path], min_size: int = 1,
                max_pixels: int | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Header check of every file (`read_header`: PIL reads only the header, about a millisecond
    a file). Returns (usable files, [(unusable file, reason)]). A truncated file passes: only
    decoding finds it, and the loader then skips it."""
    good, bad = [], []
    for p in files:
        try:
            read_header(p, min_size, pixel_limit(max_pixels))
            good.append(p)
        except ImageError as e:
            bad.append((p, str(e)))
    return good, bad
