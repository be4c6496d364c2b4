"""Images: decoding (EXIF rotation, modes, transparency, 16-bit, animations, size limits before any
pixel is decoded), encoding, and listing the image files of a folder. Shared by training,
stylizing and optimisation."""

from __future__ import annotations

import errno
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fast_nst.io.files import atomic_write, note_input
from fast_nst.io.paths import PROJECT_ROOT

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
# The video containers stylize.py reads and writes (fast_nst.stylize.video, through PyAV): here, beside
# the image extensions, because deciding whether input=/output= names a video is input checking.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
# The decoders PIL may use. Anything else is refused, whatever its name: some PIL plugins hand the
# file to other programs (EPS runs Ghostscript) or read formats no photo comes in. (Camera JPEGs
# with several pictures, MPO, open through the JPEG decoder; the first picture is the photo.)
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "PPM", "GIF")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
WHITE = (255, 255, 255)


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


def _existing_file(path: str | os.PathLike) -> Path:
    p = resolve_path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, expected an image file")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes); was a copy or download interrupted? Remove it")
    return p


@dataclass(frozen=True)
class PixelLimit:
    """The largest picture decoded, in stored pixels (width x height), set by a config `option`.
    `pixels=None`: no limit at all (PIL's own bomb check lifted too). `advice` ends the error:
    what else to try besides raising the option."""
    pixels: int | None
    option: str
    advice: str = ""


class ImageTooLarge(ImageError):
    """Over a PixelLimit (or PIL's decompression-bomb limit); refused before any pixel is decoded."""


# PIL's bomb check reads the module-global Image.MAX_IMAGE_PIXELS; a PixelLimit replaces it for
# one Image.open (header only, microseconds), under this lock so concurrent opens see either
# PIL's value or their own.
_PIL_GLOBALS = threading.Lock()


def _too_large(p: Path, width: int, height: int, limit: PixelLimit) -> ImageTooLarge:
    n = width * height
    return ImageTooLarge(
        f"{p}: too large to decode: {width}x{height} px = {n / 1e6:.1f} Mpx, over the limit of "
        f"{limit.pixels / 1e6:.1f} Mpx ({limit.option}={limit.pixels}); decoded it would take "
        f"{n * 3 / 2**30:.1f} GiB as 8-bit RGB before any processing, and a header claiming that "
        f"many pixels can be a decompression bomb. If the picture is genuine, raise the limit "
        f"({limit.option}={-(-n // 1_000_000) * 1_000_000}){'; ' + limit.advice if limit.advice else ''}")


def _open_lazy(p: Path, limit: PixelLimit | None = None) -> Image.Image:
    """`Image.open` (header only) with the format allow-list.

    With a `limit`, a picture over `limit.pixels` is refused with an ImageTooLarge naming the file
    and `limit.option`, before any pixel is allocated (PIL's own bomb warning, from 89 Mpx, and
    error, from 179 Mpx, give way to it). Without one, PIL's error is an ImageTooLarge too, and its
    warning is silenced (100 Mpx camera photos are real)."""
    Image.init()  # registers every plugin, so the allow-list names known formats (once; cheap after)
    with warnings.catch_warnings(), _PIL_GLOBALS:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        if limit is not None:
            Image.MAX_IMAGE_PIXELS = None  # our check below, with its own option named, instead
        try:
            im = Image.open(p, formats=PIL_FORMATS)
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(f"{p}: too large to decode safely ({e}); downscale it or remove it") from e
        except UnidentifiedImageError as e:
            raise ImageError(f"{p}: not an image in a supported format ({', '.join(PIL_FORMATS)}); "
                             "re-save it as JPEG/PNG or remove it") from e
        except Exception as e:  # PIL raises many types for bad data
            raise _decode_error(p, e) from e
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if limit is not None and limit.pixels is not None and im.width * im.height > limit.pixels:
        im.close()
        raise _too_large(p, im.width, im.height, limit)
    return im


def _decode_error(p: Path, e: Exception) -> ImageError:
    if "truncated" in str(e).lower():
        return ImageError(f"{p}: truncated, the file ends before the image does ({e}); was a copy "
                          "or download interrupted? Copy it again or remove it")
    return ImageError(f"{p}: cannot decode the image data ({type(e).__name__}: {e}); the file is "
                      "corrupt: re-save it as JPEG/PNG or remove it")


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding the pixels."""
    path: Path
    format: str        # PIL's name: JPEG, PNG, WEBP, ...
    mode: str          # PIL's mode before any conversion: RGB, L, LA, P, RGBA, CMYK, I;16, ...
    width: int
    height: int
    frames: int        # > 1 for animated GIF / WebP / PNG
    transparency: bool  # an alpha channel or a transparent palette entry / colour


def read_header(path: str | os.PathLike, min_size: int = 1, limit: PixelLimit | None = None) -> ImageHeader:
    """Header check, cheap enough for every file of a dataset. Raises ImageError for a missing,
    empty, unreadable or unsupported file, one over `limit` (see `_open_lazy`), or one whose short
    side is under `min_size`."""
    p = _existing_file(path)
    with _open_lazy(p, limit) as im:
        h = ImageHeader(p, im.format, im.mode, im.width, im.height, getattr(im, "n_frames", 1),
                        "A" in im.getbands() or "transparency" in im.info)
    if min(h.width, h.height) < min_size:
        raise ImageError(f"{p}: {h.width}x{h.height} px, smaller than the minimum of {min_size} px "
                         "on the short side (data.min_image_size); remove it or lower the minimum")
    return h


def open_image(path: str | os.PathLike, limit: PixelLimit | None = None) -> Image.Image:
    """Decode with EXIF orientation applied, in the file's own mode (the first frame of an
    animation). Raises ImageError with a specific message (ImageTooLarge over `limit`)."""
    p = _existing_file(path)
    im = _open_lazy(p, limit)
    note_input(p)
    try:
        with im:  # closes the file; the pixels live on in the copy returned
            im.load()
            try:
                return ImageOps.exif_transpose(im)  # a rotated copy, or a plain copy
            except Exception:  # a broken EXIF block: the pixels are fine, show them as stored
                return im.copy()
    except Exception as e:  # PIL raises many types for bad data
        raise _decode_error(p, e) from e


# Formats whose several frames are an animation (a multi-page TIFF or a camera's MPO is not)
ANIMATION_FORMATS = ("GIF", "PNG", "WEBP")
ANIMATION_SUFFIXES = (".png", ".gif", ".webp")  # what can hold one: output names for animations


@dataclass
class Animation:
    """Every frame of an animated GIF / PNG / WebP, composited as a viewer shows it, in RGB (RGBA
    when a frame has transparency), with each frame's duration in milliseconds."""
    frames: list[Image.Image]
    durations: list[int]
    loop: int  # 0 = forever


def is_animation(h: ImageHeader) -> bool:
    return h.frames > 1 and h.format in ANIMATION_FORMATS


def read_animation(path: str | os.PathLike, limit: PixelLimit | None = None) -> Animation:
    """All frames of an animation. `limit` caps the pixels of all frames together (they are all
    held to write the animated output), with the same message as a still over it."""
    p = _existing_file(path)
    im = _open_lazy(p, limit)
    note_input(p)
    with im:
        n = getattr(im, "n_frames", 1)
        if limit is not None and limit.pixels is not None and n * im.width * im.height > limit.pixels:
            total = n * im.width * im.height
            raise ImageTooLarge(
                f"{p}: an animation of {n} frames of {im.width}x{im.height} px = {total / 1e6:.1f} Mpx in all, over "
                f"the limit of {limit.pixels / 1e6:.1f} Mpx ({limit.option}={limit.pixels}); every frame is held in "
                f"memory to write the animated output. Raise the limit ({limit.option}="
                f"{-(-total // 1_000_000) * 1_000_000}), or cut the animation shorter")
        frames, durations = [], []
        try:
            for i in range(n):
                im.seek(i)
                frame = im.convert("RGBA")
                frames.append(frame if frame.getextrema()[3][0] < 255 else frame.convert("RGB"))
                durations.append(int(im.info.get("duration") or 100))
        except Exception as e:  # PIL raises many types for bad data
            raise _decode_error(p, e) from e
        return Animation(frames, durations, int(im.info.get("loop", 0) or 0))


def save_animation_atomic(anim: Animation, path: str | os.PathLike) -> Path:
    """An animated PNG (or GIF / WebP, by `path`'s suffix) of `anim`'s frames and durations."""
    path = Path(path)
    fmt = {".png": "PNG", ".gif": "GIF", ".webp": "WEBP"}.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: an animation needs a format that holds one ({', '.join(ANIMATION_SUFFIXES)}); "
                         "give an output name ending in .png")
    first, rest = anim.frames[0], anim.frames[1:]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return atomic_write(path, lambda tmp: first.save(tmp, format=fmt, save_all=True, append_images=rest,
                                                     duration=anim.durations, loop=anim.loop, **extra))


def to_rgb(im: Image.Image, background: tuple[int, int, int] | None = None) -> Image.Image:
    """Any mode (grayscale, palette, CMYK, 16-bit, with alpha) as 8-bit RGB.

    16-bit images are scaled by 65535 (full scale), never by their own maximum, so a dark photo
    stays dark. Transparency: with `background` the picture is composited over that colour (what
    a viewer shows); without, alpha is dropped and the stored colours kept (the Stylizer puts the
    alpha back on its output).
    """
    if im.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(np.rint(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr)  # mode L
    if background is not None and ("A" in im.getbands() or "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", im.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def load_rgb(path: str | os.PathLike, max_size: int | None = None,
             background: tuple[int, int, int] = WHITE, limit: PixelLimit | None = None) -> Image.Image:
    """The picture as a viewer shows it: EXIF-rotated, transparency over `background`, RGB.
    Any failure, decoding or converting, is an ImageError naming the file."""
    im = open_image(path, limit)
    try:
        im = to_rgb(im, background)
    except Exception as e:
        raise ImageError(f"{resolve_path(path)}: cannot convert mode {im.mode} to RGB "
                         f"({type(e).__name__}: {e}); re-save it as an 8-bit JPEG/PNG") from e
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


def list_images(root: str | os.PathLike, recursive: bool = True,
                problems: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Image files below `root`, sorted so every run sees the same order. Links to files and
    folders are followed. What cannot be listed is appended to `problems` as (path, reason), so
    callers count and report it instead of missing it silently: broken links (whose name could be
    an image or a folder), link loops and folders that cannot be read or that a link already
    brought in."""
    root = resolve_path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if root.is_file():
        return [root]
    problems = [] if problems is None else problems
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()

    def unreadable(e: OSError) -> None:
        problems.append((Path(e.filename or root), f"{e.filename}: cannot read this folder ({e.strerror}); "
                                                   "its images are skipped: check its permissions"))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError as e:
            unreadable(e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # a link back up (a loop) or a second link to it
            problems.append((Path(folder), f"{folder}: a link to a folder already searched (a symbolic link "
                                           "loop, or a second link to it); skipped"))
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if _followable(Path(folder) / d, problems))
        for name in sorted(files):
            p = Path(folder) / name
            if name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS + ("",):
                continue
            if p.is_file():
                if p.suffix:
                    found.append(p)
            elif p.is_symlink():
                problems.append((p, _broken_link(p)))
        if not recursive:
            dirs[:] = []
    return sorted(found)


def _followable(d: Path, problems: list[tuple[Path, str]]) -> bool:
    """A folder os.walk may enter; a link to one that is gone or loops is a problem instead."""
    if d.is_symlink() and not d.exists():
        problems.append((d, _broken_link(d)))
        return False
    return True


def _broken_link(p: Path) -> str:
    try:
        target = os.readlink(p)
    except OSError:
        target = "?"
    try:
        p.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{p}: a symbolic link loop (-> {target}); skipped: point the link at a file or remove it"
    return f"{p}: a broken symbolic link (-> {target}, which does not exist); skipped: fix or remove the link"
