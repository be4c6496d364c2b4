"""Stylize a video file frame by frame with any tensor-in/tensor-out stylization.

Decoding, stylizing and encoding run in three threads joined by bounded queues, so a long clip
uses the same memory as a short one: at most `queue_size` decoded frames wait for the network,
one batch is in it, and at most `queue_size` stylized frames wait for the encoder (which keeps
its own bounded look-ahead). PyAV (FFmpeg) decodes and encodes; the output keeps the input's
resolution, frame timestamps (hence frame rate, variable ones included), rotation (the container's
display matrix) and colour tags, and its audio: packets are copied unchanged when the output
container accepts the codec, and re-encoded to the container's default audio codec otherwise.

Temporal smoothing (fast_nst.stylize.temporal) and the flicker metric are applied in frame order on the
network's output before it is quantised for the encoder.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fast_nst.io.files import disk_full_error, is_disk_full, note_input, publish
from fast_nst.stylize.temporal import Flicker, FlickerMeter, Smoother

Stylize = Callable[[torch.Tensor], torch.Tensor]
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
# Encoder per output container, first available wins; others use the container's default.
_VIDEO_CODECS = {".webm": ("libvpx-vp9",), ".avi": ("mpeg4",)}
_DEFAULT_VIDEO_CODECS = ("libx264", "h264", "mpeg4")


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file and the fix."""


_DAMAGED_HINT = ("The file is damaged, incomplete (an interrupted download or recording) or not a video: "
                 "check that it plays, e.g. `ffprobe FILE`, then re-download or re-export it")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction | None           # average frame rate (None when the container does not say)
    frames: int | None             # as the container reports it (None or 0 when unknown)
    duration_s: float | None       # the container's (the longest stream's)
    video_end_s: float | None      # where the video stream says it ends (start + duration), None when unknown
    end_s: float | None            # where the container says its longest stream ends
    rotation: int                  # display rotation, degrees counter-clockwise (as PyAV reads it)
    codec: str
    audio: tuple[str, ...]         # codec of each audio stream


@dataclass
class VideoProgress:
    frames_done: int               # stylized
    frames_total: int | None
    elapsed_s: float
    frames_decoded: int
    frames_written: int

    @property
    def fps(self) -> float:
        return self.frames_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def in_flight(self) -> int:
        """Frames decoded but not yet handed to the encoder: bounded by the queues."""
        return self.frames_decoded - self.frames_written


@dataclass
class VideoReport:
    info: VideoInfo
    output: Path
    frames: int
    seconds: float
    audio: list[str] = field(default_factory=list)   # per audio stream: "copied <codec>" / "re-encoded <a> -> <b>"
    flicker: Flicker | None = None
    max_in_flight: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _open_input(path: Path):
    import av

    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    note_input(path)
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises FFmpeg errors of many kinds for bad data
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e}). {_DAMAGED_HINT}") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rate, length, rotation and audio of a video file (decodes only its first frame, for
    the rotation, which FFmpeg attaches to decoded frames)."""
    path = Path(path)
    with _open_input(path) as c:
        vs = c.streams.video[0]
        rotation = 0
        try:
            first = next(c.decode(vs), None)
            rotation = int(first.rotation) if first is not None else 0
        except Exception as e:
            raise VideoError(f"{path}: cannot decode its first video frame ({type(e).__name__}: {e}). "
                             f"{_DAMAGED_HINT}") from e
        duration = float(c.duration / 1_000_000) if c.duration else None
        video_end = float(((vs.start_time or 0) + vs.duration) * vs.time_base) if vs.duration else None
        return VideoInfo(width=vs.codec_context.width, height=vs.codec_context.height,
                         fps=vs.average_rate or vs.guessed_rate, frames=vs.frames or None, duration_s=duration,
                         video_end_s=video_end,
                         end_s=float(((c.start_time or 0) + c.duration) / 1_000_000) if c.duration else None,
                         rotation=rotation, codec=vs.codec_context.name,
                         audio=tuple(a.codec_context.name for a in c.streams.audio))


def check_complete(src: Path, info: VideoInfo, frames: int, video_end_s: float, end_s: float) -> None:
    """VideoError unless the decoded video reached what the container declared: its frame count,
    the video stream's end and the file's duration (the longest stream). An MP4 whose index sits
    at the front (faststart, as phones and browsers write them) but whose data was cut short
    decodes without an error, just fewer frames; this is how it is caught. A frame or 1% of
    them, and two frame intervals or 1% of the time, are allowed for edit lists and rounding."""
    interval = float(1 / info.fps) if info.fps else 0.05
    problems = []
    if info.frames and info.frames - frames > max(1, info.frames // 100):
        problems.append(f"{frames} of the {info.frames} frames")
    for declared, got in ((info.video_end_s, video_end_s), (info.end_s, end_s)):
        if declared and got and declared - got > max(2 * interval, 0.01 * declared):
            problems.append(f"{got:.2f} s of {declared:.2f} s")
            break
    if problems:
        raise VideoError(f"{src}: truncated: it decoded to {' and '.join(problems)} that its header declares, so "
                         f"the rest of the file is missing. {_DAMAGED_HINT}")


def _pick_video_codec(suffix: str, container) -> str:
    """The first encoder of our list that this FFmpeg has and the container accepts."""
    import av

    for name in _VIDEO_CODECS.get(suffix, _DEFAULT_VIDEO_CODECS):
        try:
            if av.Codec(name, "w").canonical_name in container.supported_codecs:
                return name
        except Exception:  # noqa: BLE001 - not built into this FFmpeg
            continue
    return container.default_video_codec


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when another thread has failed (so no thread waits forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


def stylize_video(src: str | os.PathLike, dst: str | os.PathLike, stylize: Stylize, *, batch_size: int = 4,
                  smoothing: Smoother | None = None, measure_flicker: bool = True, codec: str | None = None,
                  crf: int = 18, preset: str = "medium", queue_size: int = 8,
                  progress: Callable[[VideoProgress], None] | None = None) -> VideoReport:
    """Stylize every frame of `src` into `dst` (container from its extension).

    `stylize`: (B, 3, H, W) float in [0, 1] -> same shape in [0, 1] (e.g. `Stylizer.stylize_tensor`,
    `OnnxStylizer`, or one wrapped by fast_nst.stylize.color for colour and strength). Frames go through it
    `batch_size` at a time. `smoothing`: a fast_nst.stylize.temporal smoother (None: off). `codec`: video
    encoder (default: libx264 for mp4/mov/mkv, libvpx-vp9 for webm), `crf`/`preset` its quality
    and speed. `progress(VideoProgress)` is called after every batch. The file is written under a
    temporary name in `dst`'s folder and renamed when complete.
    """
    import av

    src, dst = Path(src), Path(dst)
    if batch_size < 1 or queue_size < 1:
        raise ValueError(f"batch_size and queue_size must be >= 1, got {batch_size}, {queue_size}")
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoError(f"{dst}: unknown video extension {dst.suffix!r}; use one of {', '.join(VIDEO_EXTENSIONS)}")
    from fast_nst.io.validate import refuse_overwriting_inputs

    refuse_overwriting_inputs([dst], inputs=[src])
    info = probe_video(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=f".partial{dst.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)

    inp = _open_input(src)
    out = None
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=queue_size)
    encoded: queue.Queue = queue.Queue(maxsize=queue_size)
    counters = {"decoded": 0, "written": 0}
    ends = {"video": 0.0, "any": 0.0}  # where the decoded video, and any stream's packets, reached (s)
    failures: list[BaseException] = []
    report = VideoReport(info=info, output=dst, frames=0, seconds=0.0)
    try:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = list(inp.streams.audio)
        try:
            out = av.open(str(tmp), "w", format=_format_for(dst))
        except Exception as e:
            raise VideoError(f"{dst}: cannot write this container ({type(e).__name__}: {e})") from e
        vout = _add_video_stream(out, vin, info, codec or _pick_video_codec(dst.suffix.lower(), out), crf, preset)
        audio_plan = [_add_audio_stream(out, a) for a in ain]
        report.audio = [p.describe() for p in audio_plan]
        plan_by_index = {a.index: p for a, p in zip(ain, audio_plan)}

        def reader() -> None:
            try:
                for packet in inp.demux(vin, *ain):
                    if stop.is_set():
                        return
                    if packet.stream.type == "audio":
                        if packet.pts is not None and packet.time_base:
                            ends["any"] = max(ends["any"], float((packet.pts + (packet.duration or 0))
                                                                 * packet.time_base))
                        if packet.dts is not None and not _put(decoded, ("audio", packet), stop):
                            return
                        continue
                    for frame in packet.decode():  # the empty packet at the end flushes the decoder
                        rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
                        counters["decoded"] += 1
                        if frame.pts is not None and frame.time_base:
                            ends["video"] = max(ends["video"], float((frame.pts + (frame.duration or 0))
                                                                     * frame.time_base))
                        if not _put(decoded, ("video", (frame.pts, frame.time_base, frame.duration, rgb)), stop):
                            return
                _put(decoded, _END, stop)
            except av.error.FFmpegError as e:  # bad data part way through the file
                failures.append(VideoError(f"{src}: decoding failed after {counters['decoded']} frames "
                                           f"({type(e).__name__}: {e}). {_DAMAGED_HINT}"))
                stop.set()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                failures.append(e)
                stop.set()

        # pts -> the input frame's duration, for its packet: encoders derive packet durations from
        # the nominal rate, so with uneven frame times the last frame's length (hence the file's
        # duration and average frame rate) would change. Entries leave as their packets come out.
        durations: dict[int, int] = {}

        def writer() -> None:
            try:
                while True:
                    item = _get(encoded, stop)
                    if item is _END:
                        break
                    kind, payload = item
                    if kind == "video":
                        pts, tb, duration, rgb = payload
                        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                            format=vout.pix_fmt, dst_colorspace=_colorspace(vin), dst_color_range=_color_range(vin))
                        frame.pts, frame.time_base = pts, tb
                        if duration:
                            durations[pts] = duration
                        out.mux(_with_durations(vout.encode(frame), durations))
                        counters["written"] += 1
                    else:
                        plan_by_index[payload.stream.index].write(out, payload)
                if stop.is_set():
                    return
                out.mux(_with_durations(vout.encode(None), durations))
                for p in audio_plan:
                    p.flush(out)
            except BaseException as e:  # noqa: BLE001
                failures.append(e)
                stop.set()

        threads = [threading.Thread(target=reader, name="video-decode", daemon=True),
                   threading.Thread(target=writer, name="video-encode", daemon=True)]
        for t in threads:
            t.start()
        meter = FlickerMeter() if measure_flicker else None
        if smoothing is not None:
            smoothing.reset()
        start = time.perf_counter()
        pending: list = []   # items of the current batch, in demux order
        n_frames = 0

        def run_batch() -> bool:
            nonlocal n_frames
            idx = [i for i, (kind, _) in enumerate(pending) if kind == "video"]
            if idx:
                frames = [pending[i][1][3] for i in idx]
                x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255)
                y = stylize(x)
                if tuple(y.shape) != tuple(x.shape):
                    raise ValueError(f"the stylization returned {tuple(y.shape)} for frames {tuple(x.shape)}; "
                                     "it must keep the batch's shape")
                y = y.detach().float().cpu()
                for k, i in enumerate(idx):
                    yk = smoothing(x[k], y[k]) if smoothing is not None else y[k]
                    if meter is not None:
                        meter.update(x[k], yk)
                    rgb = yk.clamp(0, 1).mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
                    pts, tb, duration, _ = pending[i][1]
                    pending[i] = ("video", (pts, tb, duration, rgb))
                n_frames += len(idx)
            for item in pending:
                if not _put(encoded, item, stop):
                    return False
            pending.clear()
            if idx and progress is not None:
                p = VideoProgress(n_frames, info.frames, time.perf_counter() - start, counters["decoded"],
                                  counters["written"])
                report.max_in_flight = max(report.max_in_flight, p.in_flight)
                progress(p)
            return True

        try:
            while True:
                item = _get(decoded, stop)
                if item is _END:
                    break
                pending.append(item)
                if sum(kind == "video" for kind, _ in pending) >= batch_size and not run_batch():
                    break
                report.max_in_flight = max(report.max_in_flight, counters["decoded"] - counters["written"])
            if not stop.is_set():
                run_batch()
                _put(encoded, _END, stop)
        except BaseException:
            # the stylization (or Ctrl-C) failed in this thread: stop the decoder and encoder before the
            # containers close under them (PyAV on a closed container crashes the process)
            stop.set()
            raise
        finally:
            for t in threads:
                t.join()
        if failures:
            raise failures[0]
        if n_frames == 0:
            raise VideoError(f"{src}: no video frames could be decoded. {_DAMAGED_HINT}")
        check_complete(src, info, counters["decoded"], ends["video"], max(ends.values()))
        out.close()
        out = None
        publish(tmp, dst)
        report.frames, report.seconds = n_frames, time.perf_counter() - start
        report.flicker = meter.result() if meter is not None else None
        return report
    except BaseException as e:
        stop.set()
        if is_disk_full(e):
            raise disk_full_error(dst) from e
        raise
    finally:
        inp.close()
        if out is not None:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the first error matters, this one is a consequence
                pass
        tmp.unlink(missing_ok=True)


def _with_durations(packets, durations: dict[int, int]):
    for packet in packets:
        d = durations.pop(packet.pts, None)
        if d:
            packet.duration = d
    return packets


def _format_for(dst: Path) -> str | None:
    """Container format by extension (the temporary name ends in .partial<ext>, which FFmpeg
    would guess too, but say it explicitly)."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}.get(
        dst.suffix.lower())


def _colorspace(vin):
    cc = vin.codec_context
    return cc.colorspace if getattr(cc, "colorspace", 2) not in (None, 2) else None  # 2 = unspecified


def _color_range(vin):
    cc = vin.codec_context
    return cc.color_range if getattr(cc, "color_range", 0) else None


def _add_video_stream(out, vin, info: VideoInfo, codec: str, crf: int, preset: str):
    w, h = info.width, info.height
    stream = out.add_stream(codec, rate=info.fps or Fraction(30, 1))
    stream.width, stream.height = w, h
    # 4:2:0 needs even sides; odd ones keep full chroma instead of losing a row or column
    stream.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
    stream.time_base = vin.time_base  # frames keep the input's timestamps exactly
    stream.codec_context.time_base = vin.time_base
    options = {}
    if codec in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset}
    elif codec == "libvpx-vp9":
        options = {"crf": str(crf + 13), "b": "0", "row-mt": "1"}  # vp9's crf scale is ~13 above x264's
    stream.options = options
    cc, ic = stream.codec_context, vin.codec_context
    for attr in ("colorspace", "color_range", "color_primaries", "color_trc"):
        v = getattr(ic, attr, None)
        if v:
            try:
                setattr(cc, attr, v)
            except (AttributeError, ValueError):
                pass
    if info.rotation:
        stream.set_display_rotation(info.rotation)
    return stream


class _AudioCopy:
    def __init__(self, out, ain):
        self.stream = out.add_stream_from_template(ain)
        self.name = ain.codec_context.name

    def describe(self) -> str:
        return f"copied {self.name}"

    def write(self, out, packet) -> None:
        packet.stream = self.stream
        out.mux(packet)

    def flush(self, out) -> None:
        pass


class _AudioTranscode:
    """For containers that do not accept the input's audio codec (e.g. AAC into WebM)."""

    def __init__(self, out, ain):
        import av

        self.src_name = ain.codec_context.name
        self.decoder = ain.codec_context
        self.name = out.default_audio_codec
        rate = ain.codec_context.sample_rate or 48000
        if self.name in ("libopus", "opus"):
            rate = 48000  # Opus encodes at 48 kHz only
        self.stream = out.add_stream(self.name, rate=rate)
        self.stream.layout = ain.codec_context.layout.name if ain.codec_context.layout else "stereo"
        cc = self.stream.codec_context
        self.resampler = av.AudioResampler(format=cc.format or None, layout=self.stream.layout, rate=rate,
                                           frame_size=cc.frame_size or None)

    def describe(self) -> str:
        return f"re-encoded {self.src_name} -> {self.name}"

    def write(self, out, packet) -> None:
        for frame in self.decoder.decode(packet):
            frame.pts = None  # let the resampler and encoder count samples
            for f in self.resampler.resample(frame):
                out.mux(self.stream.encode(f))

    def flush(self, out) -> None:
        for frame in self.decoder.decode(None):
            frame.pts = None
            for f in self.resampler.resample(frame):
                out.mux(self.stream.encode(f))
        for f in self.resampler.resample(None):
            out.mux(self.stream.encode(f))
        out.mux(self.stream.encode(None))


def _add_audio_stream(out, ain):
    if ain.codec_context.name in out.supported_codecs:
        return _AudioCopy(out, ain)
    return _AudioTranscode(out, ain)
