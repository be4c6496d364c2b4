"""`stylize_video`: three stages joined by bounded queues.

    decode (thread)  --decoded-->  stylize (the caller's thread)  --encoded-->  encode (thread)

`_Run` is what the stages share: the two queues, the stop flag any stage sets when it fails (so
no stage waits forever on a queue), the counters and the failures. Audio packets travel through
both queues in demux order beside the frames, untouched by the stylize stage.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fast_nst.io.files import disk_full_error, is_disk_full, publish
from fast_nst.io.images import VIDEO_EXTENSIONS
from fast_nst.io.validate import refuse_overwriting_inputs
from fast_nst.stylize.temporal import Flicker, FlickerMeter, Smoother
from fast_nst.stylize.video.probe import DAMAGED_HINT, VideoError, VideoInfo, check_complete, open_input, probe_video
from fast_nst.stylize.video.streams import (add_audio_stream, add_video_stream, color_range, colorspace, format_for,
                                            pick_video_codec, with_durations)

Stylize = Callable[[torch.Tensor], torch.Tensor]
_END = object()  # the last item of a queue


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


class _Run:
    """What the three stages share."""

    def __init__(self, queue_size: int):
        self.stop = threading.Event()
        self.decoded: queue.Queue = queue.Queue(maxsize=queue_size)
        self.encoded: queue.Queue = queue.Queue(maxsize=queue_size)
        self.counters = {"decoded": 0, "written": 0}
        self.ends = {"video": 0.0, "any": 0.0}  # where the decoded video, and any stream's packets, reached (s)
        self.failures: list[BaseException] = []

    def fail(self, e: BaseException) -> None:
        self.failures.append(e)
        self.stop.set()

    def put(self, q: queue.Queue, item) -> bool:
        """Blocking put that gives up when another stage has failed (so no thread waits forever)."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _END


def _decode(run: _Run, src: Path, inp, vin, ain: list) -> None:
    """Stage 1 (a thread): demux video and audio; frames decoded to RGB arrays, audio packets as
    they are. Ends with _END on `run.decoded`, or records its failure."""
    import av

    try:
        for packet in inp.demux(vin, *ain):
            if run.stop.is_set():
                return
            if packet.stream.type == "audio":
                if packet.pts is not None and packet.time_base:
                    run.ends["any"] = max(run.ends["any"], float((packet.pts + (packet.duration or 0))
                                                                 * packet.time_base))
                if packet.dts is not None and not run.put(run.decoded, ("audio", packet)):
                    return
                continue
            for frame in packet.decode():  # the empty packet at the end flushes the decoder
                rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
                run.counters["decoded"] += 1
                if frame.pts is not None and frame.time_base:
                    run.ends["video"] = max(run.ends["video"], float((frame.pts + (frame.duration or 0))
                                                                     * frame.time_base))
                if not run.put(run.decoded, ("video", (frame.pts, frame.time_base, frame.duration, rgb))):
                    return
        run.put(run.decoded, _END)
    except av.error.FFmpegError as e:  # bad data part way through the file
        run.fail(VideoError(f"{src}: decoding failed after {run.counters['decoded']} frames "
                            f"({type(e).__name__}: {e}). {DAMAGED_HINT}"))
    except BaseException as e:  # noqa: BLE001 - handed to the main thread
        run.fail(e)


def _encode(run: _Run, out, vin, vout, audio_plan: list, plan_by_index: dict) -> None:
    """Stage 3 (a thread): stylized frames encoded with the input's timestamps, audio copied or
    re-encoded by its plan, both muxed in arrival order; the encoders flushed at _END."""
    import av

    # pts -> the input frame's duration, for its packet: encoders derive packet durations from
    # the nominal rate, so with uneven frame times the last frame's length (hence the file's
    # duration and average frame rate) would change. Entries leave as their packets come out.
    durations: dict[int, int] = {}
    try:
        while True:
            item = run.get(run.encoded)
            if item is _END:
                break
            kind, payload = item
            if kind == "video":
                pts, tb, duration, rgb = payload
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format=vout.pix_fmt, dst_colorspace=colorspace(vin), dst_color_range=color_range(vin))
                frame.pts, frame.time_base = pts, tb
                if duration:
                    durations[pts] = duration
                out.mux(with_durations(vout.encode(frame), durations))
                run.counters["written"] += 1
            else:
                plan_by_index[payload.stream.index].write(out, payload)
        if run.stop.is_set():
            return
        out.mux(with_durations(vout.encode(None), durations))
        for p in audio_plan:
            p.flush(out)
    except BaseException as e:  # noqa: BLE001
        run.fail(e)


def _stylize(run: _Run, stylize: Stylize, info: VideoInfo, report: VideoReport, batch_size: int,
             smoothing: Smoother | None, meter: FlickerMeter | None,
             progress: Callable[[VideoProgress], None] | None) -> int:
    """Stage 2 (the caller's thread, where the network runs): frames `batch_size` at a time through
    `stylize`, then smoothing and the flicker meter in frame order, quantised for the encoder.
    Returns the number of frames stylized."""
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
            if not run.put(run.encoded, item):
                return False
        pending.clear()
        if idx and progress is not None:
            p = VideoProgress(n_frames, info.frames, time.perf_counter() - start, run.counters["decoded"],
                              run.counters["written"])
            report.max_in_flight = max(report.max_in_flight, p.in_flight)
            progress(p)
        return True

    while True:
        item = run.get(run.decoded)
        if item is _END:
            break
        pending.append(item)
        if sum(kind == "video" for kind, _ in pending) >= batch_size and not run_batch():
            break
        report.max_in_flight = max(report.max_in_flight, run.counters["decoded"] - run.counters["written"])
    if not run.stop.is_set():
        run_batch()
        run.put(run.encoded, _END)
    return n_frames


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
    refuse_overwriting_inputs([dst], inputs=[src])
    info = probe_video(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=f".partial{dst.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)

    inp = open_input(src)
    out = None
    run = _Run(queue_size)
    report = VideoReport(info=info, output=dst, frames=0, seconds=0.0)
    try:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = list(inp.streams.audio)
        try:
            out = av.open(str(tmp), "w", format=format_for(dst))
        except Exception as e:
            raise VideoError(f"{dst}: cannot write this container ({type(e).__name__}: {e})") from e
        vout = add_video_stream(out, vin, info, codec or pick_video_codec(dst.suffix.lower(), out), crf, preset)
        audio_plan = [add_audio_stream(out, a) for a in ain]
        report.audio = [p.describe() for p in audio_plan]
        plan_by_index = {a.index: p for a, p in zip(ain, audio_plan)}

        threads = [threading.Thread(target=_decode, args=(run, src, inp, vin, ain), name="video-decode", daemon=True),
                   threading.Thread(target=_encode, args=(run, out, vin, vout, audio_plan, plan_by_index),
                                    name="video-encode", daemon=True)]
        for t in threads:
            t.start()
        meter = FlickerMeter() if measure_flicker else None
        if smoothing is not None:
            smoothing.reset()
        start = time.perf_counter()
        try:
            n_frames = _stylize(run, stylize, info, report, batch_size, smoothing, meter, progress)
        except BaseException:
            # the stylization (or Ctrl-C) failed in this thread: stop the decoder and encoder before the
            # containers close under them (PyAV on a closed container crashes the process)
            run.stop.set()
            raise
        finally:
            for t in threads:
                t.join()
        if run.failures:
            raise run.failures[0]
        if n_frames == 0:
            raise VideoError(f"{src}: no video frames could be decoded. {DAMAGED_HINT}")
        check_complete(src, info, run.counters["decoded"], run.ends["video"], max(run.ends.values()))
        out.close()
        out = None
        publish(tmp, dst)
        report.frames, report.seconds = n_frames, time.perf_counter() - start
        report.flicker = meter.result() if meter is not None else None
        return report
    except BaseException as e:
        run.stop.set()
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
