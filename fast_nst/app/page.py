"""The web page (`python app.py`, options in conf/app/app.yaml): upload a photo or a short video,
pick a model and a painting, set strength and colour preservation, see the result and download it;
or stylize the browser's camera live (the Live tab).

Gradio draws the page; everything below it is plain Python that the tests call directly:
`find_models` lists the models of a folder from their metadata only (no weights loaded),
`Studio` keeps a few loaded `Stylizer`s and runs photos and videos through
`Stylizer.stylize_tensor`, the same path as stylize.py, on the runtime the `runtime` option picks
(fast_nst.stylize.runtimes). Errors a user can fix (a broken upload, a too-long clip, a missing painting)
reach the page as one message saying what to do.

The Live tab streams camera frames (Gradio streaming: the browser sends a frame every
`live_interval` seconds while none is in flight, so the network's speed sets the rate) through
`Studio.live_frame`, which answers with the stylized frame as an inline JPEG (no file per frame)
and the frames per second it is keeping up.

A model's kind decides its controls: networks that learned paintings (per-style, multi-style)
offer their paintings by name; kinds with `arbitrary_style = True` (e.g. AdaIN) take a painting
upload, or one of the bundled paintings.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from fast_nst.io.errors import ConfigError, FastNSTError, MissingPathError
from fast_nst.io.images import (ImageError, PixelLimit, is_animation, limit_size, open_image, read_header,
                             save_image_atomic)
from fast_nst.io.paintings import Painting, bundled_paintings, locate_painting
from fast_nst.io.paths import PROJECT_ROOT
from fast_nst.stylize.stylizer import Stylizer

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".onnx")
# Errors a user can act on: shown on the page as they are. Anything else is a bug: the page says
# so and the server log has the traceback.
USER_ERRORS = (FastNSTError, ImageError, ValueError, FileNotFoundError)
OUTPUT_KEEP_S = 3600  # results older than this are deleted from the server's output folder
WORKSPACE_PREFIX = "fast_nst_page_"  # the server's temporary folder: <tmp>/fast_nst_page_<pid>_*, removed on exit


class AppError(FastNSTError):
    """A problem with what the user gave the page; the message says what to do."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the models folder, from its metadata (weights are loaded on first use)."""

    path: Path
    kind: str
    styles: tuple[str, ...]            # the paintings it learned (empty for arbitrary-style kinds)
    arbitrary: bool                    # takes any painting as an image (style_image=)
    runtime: str                       # "PyTorch" or "ONNX Runtime"
    thumbnails: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    paintings: tuple[Painting, ...] = field(default=(), compare=False, hash=False)  # their records (title, file)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def label(self) -> str:
        if self.arbitrary:
            what = "any painting" + (", pretrained" if not self.path.suffix else "")
        elif len(self.styles) > 1:
            what = f"{len(self.styles)} paintings"
        else:
            what = self.kind
        onnx = ", ONNX" if self.path.suffix.lower() == ".onnx" else ""
        return f"{self.name} ({what}{onnx})"


def _kind_is_arbitrary(kind: str) -> bool:
    from fast_nst.kinds import get_kind

    return bool(getattr(get_kind(kind), "arbitrary_style", False))


def is_export_graph(path: Path) -> bool:
    """A `.onnx` written beside an export (`<name>.onnx`, `<name>_int8.onnx` next to `<name>.safetensors`):
    one of that export's runtimes (the `runtime` option), not a model of its own."""
    if path.suffix.lower() != ".onnx":
        return False
    stem = path.stem[: -len("_int8")] if path.stem.endswith("_int8") else path.stem
    return path.with_name(f"{stem}.safetensors").is_file()


def read_model_entry(path: Path) -> ModelEntry:
    """The entry of one model file; raises ValueError (or a FastNSTError) when it is not one."""
    if path.suffix.lower() == ".onnx":
        from fast_nst.stylize.onnx import read_onnx_info

        info = read_onnx_info(path)
        if info is None:  # a bare graph: one unnamed painting
            return ModelEntry(path, "onnx", (path.stem,), False, "ONNX Runtime")
        arbitrary = _kind_is_arbitrary(info.kind)
        return ModelEntry(path, info.kind, () if arbitrary else tuple(info.style_names), arbitrary, "ONNX Runtime",
                          dict(info.thumbnails), () if arbitrary else tuple(info.styles))
    from fast_nst.io.export import read_export

    info = read_export(path)
    arbitrary = _kind_is_arbitrary(info.kind)
    return ModelEntry(path, info.kind, () if arbitrary else tuple(info.style_names), arbitrary, "PyTorch",
                      dict(info.thumbnails), () if arbitrary else tuple(info.styles))


def pretrained_entry(kind: str) -> ModelEntry:
    """The entry of a kind's own pretrained weights (`Stylizer.load(kind)`, fetched on first use)."""
    from fast_nst.kinds import pretrained_kinds

    if kind not in pretrained_kinds():
        raise ConfigError(f"pretrained={kind}: no kind of that name ships weights; choose among "
                          f"{', '.join(pretrained_kinds()) or 'none'}")
    arbitrary = _kind_is_arbitrary(kind)
    return ModelEntry(Path(kind), kind, (), arbitrary, "PyTorch")


def find_models(models_dir: str | os.PathLike, pretrained: list[str] | tuple[str, ...] = ()
                ) -> tuple[list[ModelEntry], list[str]]:
    """(models, problems): the `pretrained` kinds' own networks first (no file: Stylizer.load(kind)),
    then every readable *.safetensors / *.onnx of `models_dir` (sorted by name), and one line per
    file that is not a usable model (shown on the page, so a broken file is noticed rather than
    silently missing)."""
    d = Path(models_dir).expanduser()
    if not d.is_absolute() and not d.is_dir() and (PROJECT_ROOT / d).is_dir():
        d = PROJECT_ROOT / d  # `python app.py` from another folder still finds the project's checkpoints/
    if not d.is_dir():
        raise MissingPathError(f"models_dir={models_dir}: no such folder. Point it at a folder of exported "
                               "models (.safetensors from train.py, .onnx from tools/export_onnx.py)")
    models, problems = [pretrained_entry(k) for k in pretrained], []
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in MODEL_SUFFIXES)
    for p in [f for f in files if not is_export_graph(f)]:
        try:
            models.append(read_model_entry(p))
        except Exception as e:  # noqa: BLE001 - one bad file must not hide the others
            problems.append(f"{p.name}: skipped ({type(e).__name__}: {e})")
            log.warning("models_dir: %s", problems[-1])
    if not models:
        raise ConfigError(f"models_dir={d}: no usable model (*.safetensors, *.onnx) in it"
                          + (f"; {'; '.join(problems)}" if problems else "")
                          + ". Train one with: python train.py style=starry_night")
    return models, problems


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
def page_message(text: str, hide: list[str | os.PathLike] = ()) -> str:
    """`text` with the server's folders left out of every path under them (uploads live in
    temporary folders; a visitor knows the file by its name)."""
    for root in sorted({str(Path(h)) for h in hide if h}, key=len, reverse=True):
        text = re.sub(re.escape(root.rstrip("/")) + r"/(?:[^/\s:;,'\"()]+/)*", "", text)
    return text


def _as_page_error(e: Exception, hide: list[str | os.PathLike] = ()):
    import gradio as gr

    if isinstance(e, USER_ERRORS):
        return gr.Error(page_message(str(e), hide), duration=None)
    log.exception("stylization failed")
    return gr.Error(f"Something went wrong inside fast_nst ({type(e).__name__}: {e}); the server log has the "
                    "details. Please report it.", duration=None)


def inline_jpeg(frame, quality: int = 85) -> str:
    """An <img> holding `frame` (H, W, 3 uint8) as an inline JPEG: the Live tab's output, sent in
    the stream's own message instead of as a file the browser would fetch separately."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality)
    return (f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}" '
            'alt="stylized camera frame" style="max-width:100%">')


def uploaded_image(**kwargs):
    """A gr.Image upload that hands the handler the uploaded file as it came. Gradio's own
    preprocessing opens it with PIL, and for any mode but RGB decodes and re-saves the whole
    picture (a 12000 px PNG: 1.9 GB) before the page's header check (max_pixels) could refuse it,
    and answers a non-image with its generic "Could not preprocess" naming server paths; the
    Studio checks and decodes the file itself, with its own messages. (The method is replaced on
    the instance: a subclass would make Gradio write a .pyi file into this package.)"""
    import types

    import gradio as gr

    component = gr.Image(**kwargs)
    gradio_preprocess = component.preprocess

    def preprocess(self, payload):
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return gradio_preprocess(payload)  # a pasted picture arrives inline: Gradio stores it
        return str(payload.path)

    component.preprocess = types.MethodType(preprocess, component)
    return component


def build_page(studio: Studio, default_model: str | None = None, hide: list[str | os.PathLike] = (), *,
               live_interval: float = 0.03, live_seconds: float = 600):
    """The Gradio Blocks of the page, wired to `studio`. `hide`: server folders left out of the
    paths in messages (`page_message`). `live_interval`: seconds between camera frames the browser
    offers; `live_seconds`: how long one Live session may stream."""
    import gradio as gr

    hide = [*hide, studio.output_dir, tempfile.gettempdir()]

    choices = [(m.label, str(m.path)) for m in studio.models]
    first = next((str(m.path) for m in studio.models if default_model in (m.name, str(m.path))), choices[0][1])

    def preview(model_key, painting):
        try:
            image, caption = studio.painting_preview(studio.model(model_key), painting)
        except Exception:  # noqa: BLE001 - a preview is decoration
            image, caption = None, "Painting"
        return gr.Image(value=image, label=caption)

    def model_controls(model_key):
        entry = studio.model(model_key)
        paintings = studio.painting_choices(entry)
        value = paintings[0][1] if paintings else None
        return (gr.Dropdown(choices=paintings, value=value, visible=len(paintings) > 1 or entry.arbitrary,
                            label="Painting (bundled)" if entry.arbitrary else "Painting"),
                gr.Image(value=None, visible=entry.arbitrary),
                preview(model_key, value))

    def run_photo(photo, model_key, painting, upload, strength, keep_colors):
        try:
            r = studio.stylize_photo(photo, model_key, painting, upload, strength, keep_colors)
        except Exception as e:  # noqa: BLE001 - shown on the page
            raise _as_page_error(e, hide) from e
        return str(r.path), str(r.path), r.message

    def run_video(video, model_key, painting, upload, strength, keep_colors, progress=gr.Progress()):
        def report(done, total):
            progress((done, total) if total else done, desc="frames", unit="frames")

        try:
            r = studio.stylize_video(video, model_key, painting, upload, strength, keep_colors, progress=report)
        except Exception as e:  # noqa: BLE001 - shown on the page
            raise _as_page_error(e, hide) from e
        return str(r.path), r.message

    def run_live(frame, model_key, painting, upload, strength, keep_colors, clock):
        try:
            out, status = studio.live_frame(frame, model_key, painting, upload, strength, keep_colors, clock)
        except Exception as e:  # noqa: BLE001 - shown under the picture; the stream goes on
            if not isinstance(e, USER_ERRORS):
                log.exception("live stylization failed")
            return gr.skip(), f"**Not stylized:** {page_message(str(e), hide)}", clock
        return (inline_jpeg(out) if out is not None else gr.skip()), status, clock

    limits = (f"Photos larger than {studio.max_size} px are downscaled first; " if studio.max_size else "") + (
        f"videos up to {studio.video_max_seconds:g} s and {studio.video_max_size} px. "
        "`python stylize.py` has no such limits.")
    # delete_cache: Gradio's copies of uploads and results older than an hour go, checked every 10 min
    with gr.Blocks(title="fast_nst", analytics_enabled=False, delete_cache=(600, OUTPUT_KEEP_S)) as page:
        gr.Markdown("## fast_nst: fast neural style transfer\nUpload a photo or a short video, pick a model "
                    f"and a painting, press **Stylize**. {limits}")
        if studio.problems:
            gr.Markdown("**Skipped model files:** " + "; ".join(studio.problems))
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                model = gr.Dropdown(choices=choices, value=first, label="Model", elem_id="model")
                painting = gr.Dropdown(label="Painting", elem_id="painting")
                painting_upload = uploaded_image(type="filepath", label="Your painting (any image)", sources=["upload"],
                                           visible=False, height=180, elem_id="painting_upload")
                painting_view = gr.Image(label="Painting", interactive=False, height=180, buttons=[],
                                         elem_id="painting_view")
                strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength (0 = the photo, 1 = full style)",
                                     elem_id="strength")
                keep_colors = gr.Checkbox(value=False, label="Keep the photo's colours (preserve_color)",
                                          elem_id="preserve_color")
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Photo", id="photo_tab"):
                        with gr.Row():
                            photo = uploaded_image(type="filepath", label="Photo", sources=["upload", "clipboard"],
                                             height=420, elem_id="photo")
                            photo_out = gr.Image(type="filepath", label="Stylized", interactive=False, height=420,
                                                 buttons=["download", "fullscreen"], elem_id="result")
                        photo_btn = gr.Button("Stylize", variant="primary", elem_id="stylize_photo")
                        photo_file = gr.File(label="Download", interactive=False, elem_id="download")
                    with gr.Tab("Video", id="video_tab"):
                        with gr.Row():
                            video = gr.Video(label="Video", sources=["upload"], height=360, elem_id="video")
                            video_out = gr.Video(label="Stylized", interactive=False, height=360,
                                                 elem_id="video_result")
                        video_btn = gr.Button("Stylize video", variant="primary", elem_id="stylize_video")
                    with gr.Tab("Live", id="live_tab"):
                        w, h = studio.live_size
                        gr.Markdown(f"Your camera, stylized as it streams ({w}x{h}): allow the camera, press "
                                    "**Record**; change the model, painting or strength at any time.")
                        with gr.Row():
                            camera = gr.Image(sources=["webcam"], streaming=True, label="Camera", height=h + 60,
                                              elem_id="camera", webcam_options=gr.WebcamOptions(
                                                  mirror=True, constraints={"video": {"width": {"ideal": w},
                                                                                      "height": {"ideal": h}}}))
                            live_out = gr.HTML(elem_id="live_result", min_height=h)
                        live_status = gr.Markdown(elem_id="live_status")
                status = gr.Markdown(elem_id="status")

        model.change(model_controls, model, [painting, painting_upload, painting_view])
        painting.change(preview, [model, painting], painting_view)
        page.load(model_controls, model, [painting, painting_upload, painting_view])
        common = [model, painting, painting_upload, strength, keep_colors]
        photo_btn.click(run_photo, [photo, *common], [photo_out, photo_file, status])
        video_btn.click(run_video, [video, *common], [video_out, status])
        clock = gr.State(FrameClock())  # one per visitor: frames per second of their stream
        # one frame in flight per stream; the network sets the pace (live_interval only caps it)
        camera.stream(run_live, [camera, *common, clock], [live_out, live_status, clock], stream_every=live_interval,
                      time_limit=live_seconds, concurrency_limit=None, show_progress="hidden")
    return page


def remove_stale_workspaces(tmp: str | os.PathLike | None = None) -> list[Path]:
    """Remove the temporary folders of servers that are gone (killed without a chance to clean
    up): <tmp>/fast_nst_page_<pid>_* of this user whose process no longer runs. Returns them."""
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{WORKSPACE_PREFIX}*_*"):
        pid = d.name[len(WORKSPACE_PREFIX):].split("_", 1)[0]
        try:
            if not pid.isdigit() or not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # still running: not ours to remove
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except OSError:  # PermissionError: another user's process of that pid is running
            continue
    return removed


class Workspace:
    """The server's temporary folder, <tmp>/fast_nst_page_<pid>_*: Gradio's uploads and cache
    (GRADIO_TEMP_DIR, unless the user set it) and the results. Removed when the server stops: on
    Ctrl-C, on SIGTERM (turned into the same shutdown) or on an error; a server killed outright
    leaves it to the next start (`remove_stale_workspaces`)."""

    def __enter__(self) -> "Workspace":
        remove_stale_workspaces()
        self.path = Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}_"))
        self._gradio_env = os.environ.get("GRADIO_TEMP_DIR")
        if self._gradio_env is None:
            os.environ["GRADIO_TEMP_DIR"] = str(self.path / "gradio")
        self._sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.signal(signal.SIGTERM, self._stop)
        return self

    @staticmethod
    def _stop(signum, frame) -> None:
        raise KeyboardInterrupt  # Gradio's launch() closes the server on it and returns

    def __exit__(self, *exc) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        if self._gradio_env is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        shutil.rmtree(self.path, ignore_errors=True)


def serve(cfg) -> None:
    """`python app.py`: build the page from conf/app/app.yaml's options and serve it until Ctrl-C
    or SIGTERM; its temporary files go with it (`Workspace`)."""
    for key in ("max_size", "max_pixels", "video_max_seconds", "video_max_size", "max_upload_mb", "live_interval",
                "live_seconds"):
        v = cfg.get(key)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{key}={v}: must be a positive number"
                              + (" or null" if key in ("max_size", "max_pixels") else ""))
    size = list(cfg.live_size) if cfg.get("live_size") is not None else []
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ConfigError(f"live_size={cfg.get('live_size')}: give [width, height] in pixels, e.g. [320, 240]")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    with Workspace() as work:
        try:  # imported inside the workspace, so Gradio's temporary folder is the workspace's
            import gradio as gr
        except ImportError as e:
            raise ConfigError("the web page needs Gradio: pip install -e '.[app]' (or pip install gradio)") from e
        studio = Studio(cfg.models_dir, pretrained=list(cfg.get("pretrained") or ()), device=cfg.device,
                        runtime=cfg.runtime, max_size=cfg.max_size, max_pixels=cfg.max_pixels,
                        video_max_seconds=cfg.video_max_seconds, video_max_size=cfg.video_max_size,
                        batch_size=cfg.batch_size, cached_models=cfg.cached_models, quality=cfg.quality,
                        live_size=tuple(size), output_dir=work.path / "results")
        print(f"fast_nst app: {len(studio.models)} models from {cfg.models_dir}: "
              f"{', '.join(m.name for m in studio.models)} (runtime={cfg.runtime})", flush=True)
        page = build_page(studio, cfg.get("model"), hide=[work.path], live_interval=cfg.live_interval,
                          live_seconds=cfg.live_seconds)
        # One stylization at a time: the network already uses every core, a second one would only
        # slow both down. Others wait in the queue and the page shows their place.
        page.queue(default_concurrency_limit=1)
        # System fonts: the default theme fetches web fonts from the internet.
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])
        try:
            page.launch(server_name=cfg.host, server_port=cfg.port, max_file_size=f"{cfg.max_upload_mb}mb",
                        inbrowser=False, show_error=True, theme=theme, allowed_paths=[str(studio.output_dir)],
                        footer_links=[], ssr_mode=False)
        finally:
            page.close()
