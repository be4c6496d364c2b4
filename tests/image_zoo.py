"""A zoo of odd and broken image files, written by the tests themselves (nothing binary is
committed). Training-side tests (test_bad_images.py) and stylize-side tests use the same zoo.

Every specimen is a file (or folder) plus what a loader must make of it:

* `usable=False`: the loader must refuse it with an ImageError whose message names the file and
  contains `reason` (a word of the explanation);
* `usable=True`: `truth` is the picture a viewer shows (EXIF rotation applied, transparency over
  white, 16-bit at full scale 65535, CMYK in RGB, the first frame of an animation) as an 8-bit RGB
  PIL image, and a loader's pixels must match it up to JPEG error (`tolerance`, 0..255 levels).

Pictures are four flat quadrants of distinct colours, so orientation, channel order and colour
conversion errors all show, and resizing or cropping changes little inside each quadrant.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# top-left, top-right, bottom-left, bottom-right
QUADRANTS = ((220, 30, 30), (30, 200, 40), (40, 60, 210), (240, 220, 60))
WHITE = (255, 255, 255)


@dataclass
class Specimen:
    name: str                 # the file or folder name in the zoo
    kind: str                 # what it exercises, in words
    usable: bool
    truth: Image.Image | None = None   # usable: the RGB picture a viewer shows
    tolerance: float = 6.0    # usable: mean absolute error allowed per quadrant, in 0..255 levels
    reason: str = ""          # unusable: a word the error message must contain
    path: Path = field(default=Path())


def quadrants(width: int, height: int, colours=QUADRANTS, mode: str = "RGB") -> Image.Image:
    """Four flat blocks; `colours` are tuples in `mode`'s bands."""
    im = Image.new(mode, (width, height))
    w2, h2 = width // 2, height // 2
    for (x0, y0, x1, y1), c in zip(((0, 0, w2, h2), (w2, 0, width, h2), (0, h2, w2, height),
                                    (w2, h2, width, height)), colours):
        im.paste(c, (x0, y0, x1, y1))
    return im


def quadrant_means(rgb: np.ndarray) -> np.ndarray:
    """(4, 3) mean colours of the inner half of each quadrant of an (H, W, 3) array."""
    h, w = rgb.shape[:2]
    out = []
    for qy in (0, 1):
        for qx in (0, 1):
            y0, x0 = qy * h // 2, qx * w // 2
            block = rgb[y0 + h // 8: y0 + h // 2 - h // 8, x0 + w // 8: x0 + w // 2 - w // 8]
            out.append(block.reshape(-1, 3).astype(np.float64).mean(0))
    return np.array(out)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None = None) -> bytes:
    """A PNG written by hand: for what PIL cannot write (16-bit RGB) or would refuse (a header
    that claims more pixels than the data holds). `rows`: filter byte + pixels per row."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def make_zoo(folder: Path, size: int = 64) -> list[Specimen]:
    """Write every specimen into `folder` (created). `size`: the training crop the tests use;
    pictures are a little larger (except the deliberately small ones)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    W, H = size * 2, size * 3 // 2   # 4:3 pictures
    zoo: list[Specimen] = []

    def add(spec: Specimen, write) -> None:
        spec.path = folder / spec.name
        write(spec.path)
        zoo.append(spec)

    base = quadrants(W, H)

    # -- unusable --------------------------------------------------------------------------
    add(Specimen("zero_bytes.jpg", "an empty file", False, reason="empty"),
        lambda p: p.write_bytes(b""))
    jpeg = _jpeg_bytes(base)
    # noise, so that pixel data, not tables, make up most of the file: the cut leaves the header
    # whole and only decoding finds the damage
    noisy = _jpeg_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)))
    add(Specimen("truncated.jpg", "a JPEG missing its second half (header intact)", False,
                 reason="truncated"), lambda p: p.write_bytes(noisy[: len(noisy) // 2]))
    rng = np.random.default_rng(0)
    add(Specimen("random_bytes.jpg", "4 KB of random bytes named .jpg", False, reason="not an image"),
        lambda p: p.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    add(Specimen("notes.png", "a text file named .png", False, reason="not an image"),
        lambda p: p.write_text("shopping list: eggs, milk, a better dataset\n" * 20))
    add(Specimen("bomb.png", "a PNG header claiming 100000 x 100000 px (a decompression bomb)",
                 False, reason="too large"),
        lambda p: p.write_bytes(raw_png(100_000, 100_000, 8, 2)))
    add(Specimen("one_pixel.png", "1 x 1 px", False, reason="smaller than the minimum"),
        lambda p: Image.new("RGB", (1, 1), QUADRANTS[0]).save(p))
    add(Specimen("truncated.png", "a PNG cut in the middle of its pixel data", False, reason="truncated"),
        lambda p: p.write_bytes(_png_bytes(base)[: len(_png_bytes(base)) // 2]))
    add(Specimen("vector.jpg", "a PostScript file named .jpg (a format PIL would hand to Ghostscript)",
                 False, reason="not an image"),
        lambda p: p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\nshowpage\n"))

    # -- usable: odd but real pictures -------------------------------------------------------
    add(Specimen("png_named.jpg", "a PNG named .jpg", True, truth=base, tolerance=1),
        lambda p: p.write_bytes(_png_bytes(base)))
    grey = quadrants(W, H, (30, 90, 160, 230), mode="L")
    add(Specimen("grey_L.png", "8-bit grayscale", True, truth=grey.convert("RGB"), tolerance=1),
        lambda p: grey.save(p))
    # LA: one quadrant fully transparent (white when shown), one half transparent
    la = quadrants(W, H, ((30, 255), (90, 0), (160, 128), (230, 255)), mode="LA")
    la_truth = quadrants(W, H, ((30,) * 3, WHITE, (round(160 * 128 / 255 + 255 * 127 / 255),) * 3, (230,) * 3))
    add(Specimen("grey_alpha_LA.png", "grayscale + alpha (transparent and half-transparent parts)",
                 True, truth=la_truth, tolerance=2), lambda p: la.save(p))
    # palette with a transparent entry (index 1; hidden colour magenta, shown white)
    pal = quadrants(W, H, (0, 1, 2, 3), mode="P")
    pal.putpalette([220, 30, 30, 255, 0, 255, 40, 60, 210, 240, 220, 60] + [0] * (768 - 12))
    pal_truth = quadrants(W, H, (QUADRANTS[0], WHITE, QUADRANTS[2], QUADRANTS[3]))
    add(Specimen("palette_transparent.png", "palette image with a transparent entry", True,
                 truth=pal_truth, tolerance=1), lambda p: pal.save(p, transparency=1))
    rgba = quadrants(W, H, ((220, 30, 30, 255), (0, 0, 0, 0), (40, 60, 210, 255), (240, 220, 60, 255)),
                     mode="RGBA")
    rgba_truth = quadrants(W, H, (QUADRANTS[0], WHITE, QUADRANTS[2], QUADRANTS[3]))
    add(Specimen("rgba.png", "RGBA with a fully transparent quadrant hiding black", True,
                 truth=rgba_truth, tolerance=1), lambda p: rgba.save(p))
    add(Specimen("cmyk.jpg", "a CMYK JPEG", True, truth=base, tolerance=8),
        lambda p: base.convert("CMYK").save(p, quality=95))
    # 16-bit: dark levels that scaling by the image's own maximum would brighten 2x
    levels16 = (2048, 4096, 8192, 16384)
    g16 = np.zeros((H, W), np.uint16)
    g16[: H // 2, : W // 2], g16[: H // 2, W // 2:] = levels16[0], levels16[1]
    g16[H // 2:, : W // 2], g16[H // 2:, W // 2:] = levels16[2], levels16[3]
    g16_truth = quadrants(W, H, tuple((round(v * 255 / 65535),) * 3 for v in levels16))
    add(Specimen("grey16.png", "16-bit grayscale PNG, all levels below a quarter of full scale",
                 True, truth=g16_truth, tolerance=1), lambda p: Image.fromarray(g16).save(p))
    rgb16 = np.zeros((H, W, 3), np.uint16)
    for (qy, qx), c in zip(((0, 0), (0, 1), (1, 0), (1, 1)), QUADRANTS):
        rgb16[qy * H // 2:(qy + 1) * H // 2, qx * W // 2:(qx + 1) * W // 2] = [v * 257 for v in c]
    rows16 = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(H))
    add(Specimen("rgb16.png", "16-bit RGB PNG", True, truth=base, tolerance=1),
        lambda p: p.write_bytes(raw_png(W, H, 16, 2, rows16)))
    small = quadrants(size * 3 // 4, size * 9 // 16)
    add(Specimen("smaller_than_crop.png", f"{small.width} x {small.height} px, under the {size} px crop",
                 True, truth=small, tolerance=1), lambda p: small.save(p))
    # stored rotated; EXIF orientation 6 says "rotate 90 degrees clockwise to show"
    stored = base.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    add(Specimen("exif_rotated.jpg", "EXIF orientation 6 (stored sideways)", True, truth=base, tolerance=8),
        lambda p: p.write_bytes(_jpeg_bytes(stored, exif=exif)))
    # an EXIF block that ends early and names orientation 9 (there are 8): the pixels stand as stored
    bad_exif = b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x09\0\0\0"
    app1 = b"\xff\xe1" + struct.pack(">H", len(bad_exif) + 2) + bad_exif
    add(Specimen("broken_exif.jpg", "a truncated EXIF block with an invalid orientation", True, truth=base,
                 tolerance=8), lambda p: p.write_bytes(jpeg[:2] + app1 + jpeg[2:]))
    frames = [quadrants(W, H, QUADRANTS[i:] + QUADRANTS[:i]) for i in range(3)]
    add(Specimen("animated.gif", "animated GIF, 3 frames (the first is used)", True, truth=frames[0],
                 tolerance=3),
        lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0))
    add(Specimen("lossless.webp", "WebP (lossless)", True, truth=base, tolerance=1),
        lambda p: base.save(p, lossless=True))
    add(Specimen("UPPER_CASE.JPG", "upper-case extension", True, truth=base, tolerance=8),
        lambda p: p.write_bytes(jpeg))
    add(Specimen("bitmap.bmp", "BMP (not a torchvision format)", True, truth=base, tolerance=1),
        lambda p: base.save(p))

    # -- a folder named like an image: not a file, searched like any folder --------------------
    def folder_like_image(p: Path) -> None:
        p.mkdir()
        (p / "inside.jpg").write_bytes(jpeg)

    add(Specimen("folder.jpg", "a directory named like an image (holding inside.jpg)", False,
                 reason="directory"), folder_like_image)
    return zoo


def _png_bytes(im: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def by_name(zoo: list[Specimen]) -> dict[str, Specimen]:
    return {s.name: s for s in zoo}
