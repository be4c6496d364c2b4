"""`Studio`: what the page does with an upload (a photo, a video, a camera frame), through
`Stylizer.stylize_tensor`, the same path as stylize.py, on the runtime the `runtime` option picks.
It keeps a few loaded `Stylizer`s. Errors a user can fix are `AppError`s that say what to do."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from fast_nst.io.errors import FastNSTError
from fast_nst.io.images import (ImageError, PixelLimit, is_animation, limit_size, open_image, read_header,
                             save_image_atomic)
from fast_nst.io.paintings import bundled_paintings, locate_painting
from fast_nst.stylize.stylizer import Stylizer
from fast_nst.app.models import ModelEntry, find_models

log = logging.getLogger(__name__)

# Errors a user can act on: shown on the page as they are. Anything else is a bug: the page says
# so and the server log has the traceback.
USER_ERRORS = (FastNSTError, ImageError, ValueError, FileNotFoundError)
OUTPUT_KEEP_S = 3600  # results older than this are deleted from the server's output folder
WORKSPACE_PREFIX = "fast_nst_page_"  # the server's temporary folder: <tmp>/fast_nst_page_<pid>_*, removed on exit


class AppError(FastNSTError):
    """A problem with what the user gave the page; the message says what to do."""

class FrameClock:
    """Frames per second over the last `window` seconds (the Live tab's counter)."""

    def __init__(self, window: float = 2.0):
        self.window, self.times = window, deque()

    def tick(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        self.times.append(now)
        while len(self.times) > 2 and now - self.times[0] > self.window:
            self.times.popleft()
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


@dataclass
class Result:
    path: Path        # the stylized photo or video, ready to download
    message: str      # what was done, with notes (downscaled, timings), as Markdown
    seconds: float


class Studio:
    """The page's logic without the page: loads models on demand (a few kept in memory), checks
    uploads against the limits and stylizes through `Stylizer.stylize_tensor`."""

    def __init__(self, models_dir: str | os.PathLike = "checkpoints", *, pretrained: list[str] | tuple[str, ...] = (),
                 device: str = "auto", runtime: str = "auto", max_size: int | None = 1024,
                 max_pixels: int | None = 89478485, video_max_seconds: float = 10, video_max_size: int = 720,
                 batch_size: int = 4, cached_models: int = 3, quality: int = 95,
                 live_size: tuple[int, int] = (320, 240), output_dir: str | os.PathLike | None = None):
        from fast_nst.stylize.runtimes import check_runtime

        self.models, self.problems = find_models(models_dir, pretrained)
        self.by_path = {str(m.path): m for m in self.models}
        self.device, self.max_size, self.quality = device, max_size, quality
        self.runtime = check_runtime(runtime)
        self.live_size = (int(live_size[0]), int(live_size[1]))
        # uploads over this many pixels are refused from their header, before decoding, as stylize.py does
        self.limit = PixelLimit(max_pixels, "max_pixels", "or downscale the picture before uploading it; "
                                "stylize.py ... tile=512 stylizes huge photos with bounded memory")
        self.video_max_seconds, self.video_max_size = video_max_seconds, video_max_size
        self.batch_size, self.cached_models = max(1, int(batch_size)), max(1, int(cached_models))
        self._stylizers: OrderedDict[tuple[str, bool], Stylizer] = OrderedDict()
        self._lock = threading.Lock()  # the page may run requests in threads; one load at a time
        if output_dir is None:  # a folder of its own, removed with the Studio (or at exit)
            output_dir = tempfile.mkdtemp(prefix=WORKSPACE_PREFIX + f"{os.getpid()}_")
            weakref.finalize(self, shutil.rmtree, output_dir, True)
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._counter = 0

    # ------------------------------------------------------------------ models
    def model(self, key: str | None) -> ModelEntry:
        if not key:
            raise AppError("pick a model first")
        if key not in self.by_path:
            raise AppError(f"model {key!r} is not in the list (was the models folder changed? reload the page)")
        return self.by_path[key]

    def stylizer(self, entry: ModelEntry, preserve_color: bool) -> Stylizer:
        """A loaded Stylizer, kept in a small LRU (preserve_color is a Stylizer setting, so it is
        part of the key; the network is 7 MB, loading it twice costs little)."""
        key = (str(entry.path), bool(preserve_color))
        with self._lock:
            if key in self._stylizers:
                self._stylizers.move_to_end(key)
                return self._stylizers[key]
            # the runtime option chooses how an export runs; a graph file on its own is what it is
            runtime = self.runtime if entry.path.suffix.lower() != ".onnx" else None
            # ONNX Runtime's idle threads sleep rather than spin: the page shares the CPU with the
            # browser and with other requests (see OMP_WAIT_POLICY in app.py for PyTorch's)
            s = Stylizer.load(entry.path, device=self.device, runtime=runtime, session={"spinning": False},
                              preserve_color=bool(preserve_color))
            if s.runtime_note:
                log.info("%s", s.runtime_note)
            self._stylizers[key] = s
            while len(self._stylizers) > self.cached_models:
                self._stylizers.popitem(last=False)
            return s

    def painting_choices(self, entry: ModelEntry) -> list[tuple[str, str]]:
        """(label, value) choices of the painting menu: the model's own paintings, or for an
        arbitrary-style model the bundled paintings (value: the file)."""
        if entry.arbitrary:
            return [(name.replace("_", " "), str(p)) for name, p in bundled_paintings().items()]
        return [(name.replace("_", " "), name) for name in entry.styles]

    def painting_preview(self, entry: ModelEntry, choice: str | None) -> tuple[Image.Image | None, str]:
        """(a small picture, a caption) of the chosen painting: the export's thumbnail, else the
        painting's file when it is on this machine (the bundled ones are)."""
        if entry.arbitrary:
            p = Path(choice) if choice else None
            return (limit_size(open_image(p), 256) if p and p.is_file() else None,
                    p.stem.replace("_", " ") if p else "Painting")
        if not entry.styles:
            return None, "Painting"
        choice = choice if choice in entry.styles else entry.styles[0]
        record = next((p for p in entry.paintings if p.name == choice), None)
        caption = ", ".join(x for x in (record.title, record.credit) if x) if record else ""
        caption = caption or choice.replace("_", " ")
        b64 = entry.thumbnails.get(choice)
        if b64:
            from fast_nst.io.paintings import thumbnail_image

            return thumbnail_image(b64), caption
        try:
            return (limit_size(open_image(locate_painting(record)), 256) if record else None), caption
        except (FileNotFoundError, ImageError):
            return None, caption  # a preview is optional: the network holds what it learned

    def style_args(self, entry: ModelEntry, painting: str | None, painting_upload: str | None) -> dict[str, Any]:
        """The Stylizer style arguments for the page's painting menu and upload."""
        if entry.arbitrary:
            chosen = painting_upload or painting
            if not chosen:
                raise AppError(f"{entry.name} takes any painting: upload one, or pick one of the bundled paintings")
            if painting_upload:
                read_header(painting_upload, limit=self.limit)  # the photo's checks, before any decoding
            return {"style_image": str(chosen)}
        if painting_upload:
            raise AppError(f"{entry.name} learned its paintings ({', '.join(entry.styles)}) and cannot take an "
                           "uploaded one; pick one from the menu, or a model of an arbitrary-style kind (AdaIN)")
        if len(entry.styles) > 1:
            if painting not in entry.styles:
                raise AppError(f"pick one of {entry.name}'s paintings: {', '.join(entry.styles)}")
            return {"style": painting}
        return {}  # a per-style network: its only painting

    # ------------------------------------------------------------------ outputs
    def _output_path(self, src: Path, entry: ModelEntry, suffix: str) -> Path:
        self._counter += 1  # unique per request: the page may still show (and serve) an older one
        # Gradio serves its own copy of every result, so ours are only needed briefly: drop the
        # ones older than an hour, so a page left running does not fill the disk.
        cutoff = time.time() - OUTPUT_KEEP_S
        for old in self.output_dir.iterdir():
            try:
                if old.is_file() and old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.stem)[:60] or "upload"
        return self.output_dir / f"{self._counter:04d}_{stem}_{entry.name}{suffix}"

    # ------------------------------------------------------------------ photos
    def stylize_photo(self, photo: str | os.PathLike | None, model: str | None, painting: str | None = None,
                      painting_upload: str | None = None, strength: float = 1.0,
                      preserve_color: bool = False) -> Result:
        if not photo:
            raise AppError("upload a photo first (JPEG, PNG, WebP, ...)")
        entry = self.model(model)
        style = self.style_args(entry, painting, painting_upload)
        src = Path(photo)
        # the header first: over max_pixels is refused before a pixel is decoded (ImageError names
        # the file and what is wrong with it)
        header = read_header(src, limit=self.limit)
        image = open_image(src, self.limit)
        notes = []
        if is_animation(header):
            notes.append(f"An animation of {header.frames} frames: this page stylizes its first frame. For every frame "
                         f"(an animated PNG): `python stylize.py ckpt={entry.path} input=ANIMATION`")
        if self.max_size and max(image.size) > self.max_size:
            w, h = image.size
            image = limit_size(image, self.max_size)
            tile = "" if entry.path.suffix.lower() == ".onnx" else " tile=512"  # tiles need PyTorch's norm layers
            notes.append(f"Downscaled from {w}x{h} to {image.width}x{image.height} (this page's limit, "
                         f"max_size={self.max_size}). For the full size: `python stylize.py ckpt={entry.path} "
                         f"input=PHOTO{tile}`")
        t0 = time.perf_counter()
        stylizer = self.stylizer(entry, preserve_color)
        t1 = time.perf_counter()
        out = stylizer(image, strength=float(strength), **style)  # Stylizer.stylize_tensor underneath
        seconds = time.perf_counter() - t1
        if t1 - t0 > 0.05:
            notes.append(f"Loading the model took {t1 - t0:.1f} s (once; it stays loaded).")
        jpeg = src.suffix.lower() in (".jpg", ".jpeg") and out.mode == "RGB"
        dst = self._output_path(src, entry, ".jpg" if jpeg else ".png")
        save_image_atomic(out, dst, **({"quality": self.quality} if jpeg else {}))
        what = Path(painting_upload or painting).stem if entry.arbitrary else (painting or entry.styles[0])
        msg = (f"**Done:** {out.width}x{out.height} in {seconds:.2f} s with **{entry.name}**"
               + (f" ({what})" if what != entry.name else "")
               + f": strength {float(strength):g}{', colours kept' if preserve_color else ''}; "
               f"{stylizer.capabilities.runtime} on {stylizer.device.type}.")
        return Result(dst, "\n\n".join([msg, *notes]), seconds)

    # ------------------------------------------------------------------ live camera
    def live_frame(self, frame, model: str | None, painting: str | None = None, painting_upload: str | None = None,
                   strength: float = 1.0, preserve_color: bool = False, clock: FrameClock | None = None):
        """One camera frame (H, W, 3 uint8, as the browser sent it) -> (the stylized frame as
        uint8, a status line with the frames per second `clock` counts). Frames larger than
        `live_size` are downscaled to fit it first."""
        import numpy as np
        import torch

        if frame is None:
            return None, "Waiting for the camera..."
        entry = self.model(model)
        style = self.style_args(entry, painting, painting_upload)
        stylizer = self.stylizer(entry, preserve_color)
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8)[..., :3])
        w, h = self.live_size
        if image.width > w or image.height > h:
            image.thumbnail((w, h), Image.BILINEAR)
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float().div_(255)
        t0 = time.perf_counter()
        y = stylizer.stylize_tensor(x, strength=float(strength), **style)
        ms = 1000 * (time.perf_counter() - t0)
        out = y[0].mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()
        fps = (clock or FrameClock()).tick()
        status = (f"**{fps:.1f} frames/s** ({image.width}x{image.height}, network {ms:.0f} ms, "
                  f"{stylizer.capabilities.runtime} on {stylizer.device.type})")
        return out, status

    # ------------------------------------------------------------------ videos
    def check_video(self, src: Path):
        from fast_nst.stylize.video import probe_video

        info = probe_video(src)  # VideoError: damaged or not a video, says what to do
        cli = "`python stylize.py ckpt=MODEL input=CLIP output=OUT.mp4` (any length and size)"
        if info.duration_s is not None and info.duration_s > self.video_max_seconds:
            raise AppError(f"this clip is {info.duration_s:.1f} s long; the page takes clips up to "
                           f"{self.video_max_seconds:g} s (video_max_seconds). Trim it, or use {cli}")
        if max(info.width, info.height) > self.video_max_size:
            raise AppError(f"this clip is {info.width}x{info.height}; the page takes clips up to "
                           f"{self.video_max_size} px on the long side (video_max_size). Scale it down, or use {cli}")
        return info

    def stylize_video(self, video: str | os.PathLike | None, model: str | None, painting: str | None = None,
                      painting_upload: str | None = None, strength: float = 1.0, preserve_color: bool = False,
                      progress: Callable[[int, int | None], None] | None = None) -> Result:
        from fast_nst.stylize.video import stylize_video

        if not video:
            raise AppError("upload a video first (.mp4, .mov, .webm, ...)")
        entry = self.model(model)
        style = self.style_args(entry, painting, painting_upload)
        src = Path(video)
        info = self.check_video(src)
        stylizer = self.stylizer(entry, preserve_color)
        strength = float(strength)

        def frames(x):  # the tensor path, as stylize.py's video mode uses it
            return stylizer.stylize_tensor(x, strength=strength, **style)

        dst = self._output_path(src, entry, ".mp4")  # H.264 in MP4: every browser plays it
        report = stylize_video(src, dst, frames, batch_size=self.batch_size, preset="veryfast",
                               progress=(lambda p: progress(p.frames_done, p.frames_total)) if progress else None)
        audio = "; audio " + ", ".join(report.audio) if report.audio else "; no audio"
        msg = (f"**Done:** {report.frames} frames of {info.width}x{info.height} in {report.seconds:.1f} s "
               f"({report.fps:.2f} frames/s) with **{entry.name}**{audio}.")
        return Result(dst, msg, report.seconds)


# ---------------------------------------------------------------------- the page (Gradio)
