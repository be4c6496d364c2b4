"""Reading a video's header (`probe_video`), and checking after decoding that the whole file was
there (`check_complete`): what stylize_video needs to know before and after the frames."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fast_nst.io.files import note_input


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file and the fix."""


DAMAGED_HINT = ("The file is damaged, incomplete (an interrupted download or recording) or not a video: "
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


def open_input(path: Path):
    import av

    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    note_input(path)
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises FFmpeg errors of many kinds for bad data
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e}). {DAMAGED_HINT}") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rate, length, rotation and audio of a video file (decodes only its first frame, for
    the rotation, which FFmpeg attaches to decoded frames)."""
    path = Path(path)
    with open_input(path) as c:
        vs = c.streams.video[0]
        rotation = 0
        try:
            first = next(c.decode(vs), None)
            rotation = int(first.rotation) if first is not None else 0
        except Exception as e:
            raise VideoError(f"{path}: cannot decode its first video frame ({type(e).__name__}: {e}). "
                             f"{DAMAGED_HINT}") from e
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
                         f"the rest of the file is missing. {DAMAGED_HINT}")
