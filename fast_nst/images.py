"""Image I/O shared by training, stylizing and optimisation: one place for EXIF, modes and paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ImageError(ValueError):
    """A file that cannot be used as an image; the message names the file and the fix."""


def resolve_path(path: str | os.PathLike) -> Path:
    """A relative path means the caller's working directory first, then the project root, so the
    configs can name bundled files (`assets/...`) and still run from any directory."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    alt = PROJECT_ROOT / p
    return alt if alt.exists() else p


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open as RGB with EXIF orientation applied. Raises ImageError with a specific message."""
    p = resolve_path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, expected an image file")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except Exception as e:  # PIL raises many types for bad data
        raise ImageError(f"{p}: cannot read as an image ({type(e).__name__}: {e}); "
                         "re-save it as JPEG/PNG or remove it") from e
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Flatten any mode (grayscale, palette, RGBA, 16-bit) to RGB; alpha is handled by callers."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32)
        arr = arr / max(arr.max(), 1.0) * 255.0
        im = Image.fromarray(arr.astype(np.uint8))
    return im.convert("RGB")


def load_rgb(path: str | os.PathLike, max_size: int | None = None) -> Image.Image:
    im = to_rgb(open_image(path))
    return limit_size(im, max_size)


def limit_size(im: Image.Image, max_size: int | None) -> Image.Image:
    if max_size and max(im.size) > max_size:
        s = max_size / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    return im


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL -> float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(to_rgb(im), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) in [0, 1] -> RGB PIL."""
    if t.dim() == 4:
        t = t[0]
    arr = t.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a temporary file in `path`'s folder, then rename it over `path`: a crash
    or Ctrl-C never leaves a half-written image, export or report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_image_atomic(im: Image.Image, path: str | os.PathLike, **kwargs) -> Path:
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension {path.suffix!r}; use .jpg or .png")
    if fmt == "JPEG":
        kwargs.setdefault("quality", 95)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
    return atomic_write(path, lambda tmp: im.save(tmp, format=fmt, **kwargs))


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files below `root`, sorted so every run sees the same order."""
    root = resolve_path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if root.is_file():
        return [root]
    it = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not p.name.startswith("."))
