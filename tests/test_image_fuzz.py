"""Fuzzing the image loader (hypothesis): random bytes, truncated images and images with bytes
overwritten, under image names, must either load as a valid picture or raise ImageError, the
project's own error type that names the file; never another exception, a hang or a crash.

Every entry point that reads a file is tried: the header check, PIL decoding, the viewer's RGB
picture, and the training crop with both decoders (torchvision.io gets the plain stills)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fast_nst.training.data.decode import load_crop
from fast_nst.io.images import ImageError, load_rgb, open_image, read_header

# per test; ~4 s each on 2 CPU cores. FAST_NST_FUZZ_EXAMPLES=5000 for a long hunt
EXAMPLES = int(os.environ.get("FAST_NST_FUZZ_EXAMPLES", 120))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_images() -> dict[str, bytes]:
    """One small picture in every format the loader accepts, with structure worth breaking."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out = {}
    for fmt, ext, im, kw in [("JPEG", "jpg", rgb, {"quality": 90}), ("PNG", "png", rgb, {}),
                             ("PNG", "png", rgb.convert("P"), {"transparency": 0}),
                             ("GIF", "gif", rgb.convert("P"), {}), ("WEBP", "webp", rgb, {}),
                             ("BMP", "bmp", rgb, {}), ("TIFF", "tif", rgb, {}), ("PPM", "ppm", rgb, {}),
                             ("JPEG", "jpg", rgb.convert("CMYK"), {})]:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        out[f"{im.mode}.{ext}"] = buf.getvalue()
    return out


VALID = _valid_images()
NAMES = sorted(VALID)
FOLDER = Path(tempfile.mkdtemp(prefix="fast_nst_fuzz_"))


def _write(name: str, data: bytes) -> Path:
    path = FOLDER / name
    path.write_bytes(data)
    return path


def _every_reader_gives_a_picture_or_image_error(path: Path) -> None:
    readers = [lambda: read_header(path, 8), lambda: open_image(path), lambda: load_rgb(path)]
    readers += [lambda d=d: load_crop(path, 16, 1, d, min_size=8) for d in ("pil", "torchvision")]
    for read in readers:
        try:
            out = read()
        except ImageError as e:
            assert str(path) in str(e)
            continue
        if isinstance(out, torch.Tensor):
            assert out.shape == (3, 16, 16) and torch.isfinite(out).all()
            assert 0 <= out.min() and out.max() <= 1
        elif isinstance(out, Image.Image):
            assert out.width > 0 and out.height > 0


@FUZZ
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".jpg", ".png", ".gif", ".webp", ".tif"]))
def test_random_bytes(data, ext):
    _every_reader_gives_a_picture_or_image_error(_write(f"random{ext}", data))


@FUZZ
@given(name=st.sampled_from(NAMES), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_images(name, cut):
    data = VALID[name]
    _every_reader_gives_a_picture_or_image_error(_write(f"cut_{name}", data[: int(len(data) * cut)]))


@FUZZ
@given(name=st.sampled_from(NAMES),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_images_with_bytes_overwritten(name, edits):
    """Mostly in the header, where the sizes, tables and chunk lengths live."""
    data = bytearray(VALID[name])
    for where, value in edits:
        data[int(where ** 3 * len(data))] = value  # cubed: biased towards the start of the file
    _every_reader_gives_a_picture_or_image_error(_write(f"edited_{name}", bytes(data)))


@pytest.mark.parametrize("name", NAMES)
def test_the_unbroken_images_load(name):
    """The fuzz starts from pictures that do load (else it proves nothing)."""
    path = _write(f"whole_{name}", VALID[name])
    for decoder in ("pil", "torchvision"):
        assert load_crop(path, 16, 1, decoder).shape == (3, 16, 16)
