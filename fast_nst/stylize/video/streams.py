"""The output container's streams: which encoder for which container, the video stream that keeps
the input's size, timestamps, rotation and colour tags, and per audio stream a plan that copies
its packets or re-encodes them when the container does not take the codec."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from fast_nst.stylize.video.probe import VideoInfo

# Encoder per output container, first available wins; others use the container's default.
VIDEO_CODECS = {".webm": ("libvpx-vp9",), ".avi": ("mpeg4",)}
DEFAULT_VIDEO_CODECS = ("libx264", "h264", "mpeg4")


def pick_video_codec(suffix: str, container) -> str:
    """The first encoder of our list that this FFmpeg has and the container accepts."""
    import av

    for name in VIDEO_CODECS.get(suffix, DEFAULT_VIDEO_CODECS):
        try:
            if av.Codec(name, "w").canonical_name in container.supported_codecs:
                return name
        except Exception:  # noqa: BLE001 - not built into this FFmpeg
            continue
    return container.default_video_codec


def with_durations(packets, durations: dict[int, int]):
    for packet in packets:
        d = durations.pop(packet.pts, None)
        if d:
            packet.duration = d
    return packets


def format_for(dst: Path) -> str | None:
    """Container format by extension (the temporary name ends in .partial<ext>, which FFmpeg
    would guess too, but say it explicitly)."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}.get(
        dst.suffix.lower())


def colorspace(vin):
    cc = vin.codec_context
    return cc.colorspace if getattr(cc, "colorspace", 2) not in (None, 2) else None  # 2 = unspecified


def color_range(vin):
    cc = vin.codec_context
    return cc.color_range if getattr(cc, "color_range", 0) else None


def add_video_stream(out, vin, info: VideoInfo, codec: str, crf: int, preset: str):
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


def add_audio_stream(out, ain):
    if ain.codec_context.name in out.supported_codecs:
        return _AudioCopy(out, ain)
    return _AudioTranscode(out, ain)
