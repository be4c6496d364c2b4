"""Video stylization (fast_nst.stylize.video) and flicker (fast_nst.stylize.temporal) on clips made here with PyAV:
a moving colour pattern, a 440 Hz sine audio track, a rotation tag and uneven frame times."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from conftest import ROOT
from fast_nst.kinds import load_network
from fast_nst.stylize.temporal import (CompensatedSmoother, ExponentialSmoother, FlickerMeter, GatedSmoother,
                               estimate_affine, make_smoother)
from fast_nst.stylize.video import VideoError, probe_video, stylize_video

MODEL = ROOT / "checkpoints" / "starry_night.safetensors"
TB = Fraction(1, 30000)


def make_clip(path, n=30, w=96, h=64, rotation=90, audio=True, jitter=True):
    """H.264 + AAC. Frame i is shown at i * 1001 (+ 0/250/500 with jitter) in 1/30000 s, so the
    timestamps are uneven and only survive if they are copied, not re-derived from a rate."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=Fraction(30000, 1001))
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    v.time_base = v.codec_context.time_base = TB
    if rotation:
        v.set_display_rotation(rotation)
    a = None
    if audio:
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
    yy, xx = np.mgrid[0:h, 0:w]
    pts = []
    for i in range(n):
        img = np.stack([(xx * 4 + i * 3) % 256, (yy * 5 + 40) % 256, ((xx + yy + i * 2) * 3) % 256], -1)
        frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        frame.pts, frame.time_base = i * 1001 + (i % 3) * 250 * jitter, TB
        pts.append(frame.pts)
        out.mux(v.encode(frame))
    out.mux(v.encode(None))
    if audio:
        sr, total = 44100, int(44100 * n * 1001 / 30000)
        for k in range(0, total, 1024):
            t = np.arange(k, min(k + 1024, total)) / sr
            af = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts = sr, k
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out.close()
    return pts


def _frames(path):
    with av.open(str(path)) as c:
        return [(f.pts, f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def _audio_packets(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def _audio_samples(path):
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().mean(0) for f in c.decode(audio=0)]), c.streams.audio[0].sample_rate


@pytest.fixture(scope="module")
def net():
    return load_network(MODEL)[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return path, make_clip(path)


def _stylize_with(net):
    def run(x):
        with torch.inference_mode():
            return net(x)
    return run


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_keeps_size_timing_rotation_and_copies_the_audio(net, clip, tmp_path, suffix):
    src, pts = clip
    dst = tmp_path / f"out{suffix}"
    seen = []
    report = stylize_video(src, dst, _stylize_with(net), batch_size=4, progress=seen.append)
    info_in, info_out = probe_video(src), probe_video(dst)
    assert (info_out.width, info_out.height, info_out.rotation) == (96, 64, 90)
    if suffix == ".mp4":  # the same container reports the same average rate (Matroska estimates its
        assert info_out.fps == info_in.fps  # own from a few timestamps; the per-frame check below covers it)
    frames_in, frames_out = _frames(src), _frames(dst)
    assert report.frames == len(frames_out) == len(frames_in) == 30
    # every frame at its own (uneven) time
    t_in = [float(p * tb) for p, tb, _ in frames_in]
    t_out = [float(p * tb) for p, tb, _ in frames_out]
    offset = t_out[0] - t_in[0]  # Matroska shifts the whole file by the AAC encoder delay
    assert max(abs(a + offset - b) for a, b in zip(t_in, t_out)) < 1e-3
    assert [float(p * TB) for p in pts] == pytest.approx(t_in, abs=1e-6)
    # the audio packets are the input's, byte for byte
    assert report.audio == ["copied aac"] and _audio_packets(dst) == _audio_packets(src)
    # and the pictures were stylized
    diff = np.mean([np.abs(a[2].astype(float) - b[2].astype(float)).mean() for a, b in zip(frames_in, frames_out)])
    assert diff > 10, diff
    assert seen and seen[-1].frames_done == 30 and seen[-1].fps > 0
    assert not list(tmp_path.glob(".*partial*"))
    assert info_in.audio == info_out.audio == ("aac",)


def test_identity_round_trip_keeps_the_colours(clip, tmp_path):
    """RGB <-> YUV both ways with the same conversion: what comes back is the input, up to the
    encoder's loss (measured 2.6 grey levels on this sharp synthetic pattern at crf 18)."""
    src, _ = clip
    stylize_video(src, tmp_path / "same.mp4", lambda x: x)
    err = np.mean([np.abs(a[2].astype(float) - b[2].astype(float)).mean()
                   for a, b in zip(_frames(src), _frames(tmp_path / "same.mp4"))])
    assert err < 4, err


def test_webm_reencodes_audio_the_container_cannot_hold(clip, tmp_path):
    src, _ = clip
    report = stylize_video(src, tmp_path / "out.webm", lambda x: 1 - x)
    assert report.audio == ["re-encoded aac -> opus"]
    info = probe_video(tmp_path / "out.webm")
    assert info.codec == "vp9" and info.audio == ("opus",) and info.rotation == 90
    (a, sr_a), (b, sr_b) = _audio_samples(src), _audio_samples(tmp_path / "out.webm")
    assert abs(len(a) / sr_a - len(b) / sr_b) < 0.05  # same length within 50 ms (codec padding)
    spectrum = np.abs(np.fft.rfft(b[sr_b // 10: sr_b // 10 + 8192]))
    assert abs(np.argmax(spectrum) * sr_b / 8192 - 440) < 10  # still the 440 Hz tone


def test_long_clip_streams_in_bounded_batches(tmp_path):
    src = tmp_path / "long.mp4"
    make_clip(src, n=150, w=32, h=32, audio=True)
    batches = []

    def record(x):
        batches.append(x.shape[0])
        return x

    report = stylize_video(src, tmp_path / "long_out.mp4", record, batch_size=2, queue_size=4)
    assert report.frames == 150 and sum(batches) == 150 and max(batches) == 2
    # decoded-but-not-encoded frames stay bounded by the queues (4 + batch 2 + 4 + the ones in hand),
    # not by the clip's length
    assert 0 < report.max_in_flight <= 12, report.max_in_flight


def test_failures_leave_no_file_and_say_why(clip, tmp_path):
    src, _ = clip
    dst = tmp_path / "x.mp4"

    def broken(x):
        raise RuntimeError("network exploded")

    with pytest.raises(RuntimeError, match="network exploded"):
        stylize_video(src, dst, broken)
    with pytest.raises(ValueError, match="must keep the batch's shape"):
        stylize_video(src, dst, lambda x: x[..., :-1])
    assert not dst.exists() and not list(tmp_path.glob(".*partial*"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="junk.mp4: cannot open as a video"):
        stylize_video(tmp_path / "junk.mp4", dst, lambda x: x)
    with pytest.raises(VideoError, match="unknown video extension"):
        stylize_video(src, tmp_path / "x.gif", lambda x: x)
    with pytest.raises(VideoError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")


# --------------------------------------------------------------------------------- flicker
def _still_scene_with_flicker(n=20, seed=0):
    """A still photo-like frame; the 'stylization' adds fresh texture noise every frame."""
    g = torch.Generator().manual_seed(seed)
    content = torch.rand(3, 32, 48, generator=g) * 0.5 + 0.25
    return [(content, (content + 0.1 * torch.randn(3, 32, 48, generator=g)).clamp(0, 1)) for _ in range(n)]


def _measure(frames, smoother=None):
    meter = FlickerMeter()
    outs = []
    for x, y in frames:
        o = smoother(x, y) if smoother else y
        meter.update(x, o)
        outs.append(o)
    return meter.result(), outs


def test_flicker_meter_and_smoothing_on_a_still_scene():
    frames = _still_scene_with_flicker()
    raw, _ = _measure(frames)
    assert raw.input_change == 0 and raw.output_change > 0.05 and raw.ratio == float("inf")
    ema, _ = _measure(frames, ExponentialSmoother(0.8))
    gated, _ = _measure(frames, GatedSmoother(0.8))
    # on a still input both smoothers cut the output's change by ~3x (0.8 blend)
    assert ema.output_change < raw.output_change / 2.5 and gated.output_change < raw.output_change / 2.5


def test_gated_smoothing_leaves_no_trail_where_the_input_moves():
    """A bright square moves 4 px per frame: the plain blend drags a trail behind it, the gated one
    follows the new frame where the input changed."""
    frames = []
    for t in range(12):
        x = torch.full((3, 32, 64), 0.2)
        x[:, 8:24, 4 * t: 4 * t + 12] = 0.9
        frames.append((x, x.clone()))  # a perfectly stable 'stylization': any change is a trail
    _, ema = _measure(frames, ExponentialSmoother(0.8))
    _, gated = _measure(frames, GatedSmoother(0.8))
    trail = lambda outs: float(np.mean([(o - y).abs().mean() for o, (_, y) in zip(outs, frames)]))  # noqa: E731
    assert trail(ema) > 0.02 and trail(gated) < trail(ema) / 5, (trail(ema), trail(gated))


def test_motion_compensated_smoothing_follows_a_camera_pan():
    """The camera pans 3 px per frame over a textured scene and the 'stylization' flickers in
    brightness. The motion is found (estimate_affine), so the compensated smoother keeps smoothing
    the flicker where the gated one, seeing every pixel change, has to let it through."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    scene = F.avg_pool2d(torch.rand(1, 3, 96, 160, generator=g), 5, stride=1, padding=2)  # smooth texture
    shift = 2 * 3 / 128                                    # 3 px in affine_grid units (2 units per width)
    frames = []
    for t in range(8):
        theta = torch.tensor([[1.0, 0.0, shift * t], [0.0, 1.0, 0.0]])
        grid = F.affine_grid(theta.unsqueeze(0), [1, 3, 64, 128], align_corners=False)
        x = F.grid_sample(scene[..., 16:80, 16:144], grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[0]
        frames.append((x, (1 - x + (0.1 if t % 2 else 0.0)).clamp(0, 1)))  # flicker: +0.1 every other frame
    found = estimate_affine(frames[0][0], frames[1][0])
    assert abs(float(found[0, 2]) - shift) < 0.2 * shift and float((found[:, :2] - torch.eye(2)).abs().max()) < 0.02
    inner = (slice(None), slice(8, -8), slice(16, -16))    # away from the borders the pan uncovers
    def flicker(outs):
        return float(np.mean([(a - b)[inner].mean().abs() for a, b in zip(outs[2:], outs[1:-1])]))
    _, gated = _measure(frames, GatedSmoother(0.8))
    _, moved = _measure(frames, CompensatedSmoother(0.8))
    assert flicker(moved) < 0.5 * flicker(gated), (flicker(moved), flicker(gated))


def test_smoothing_through_the_video_pipeline(clip, tmp_path):
    src, _ = clip
    g = torch.Generator().manual_seed(0)
    noisy = lambda x: (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)  # noqa: E731 - flickering 'network'
    plain = stylize_video(src, tmp_path / "a.mp4", noisy).flicker
    smooth = stylize_video(src, tmp_path / "b.mp4", noisy, smoothing=ExponentialSmoother(0.7)).flicker
    assert plain.input_change == pytest.approx(smooth.input_change)
    assert smooth.output_change < 0.7 * plain.output_change, (plain, smooth)
    assert make_smoother("none") is None and isinstance(make_smoother("gated", 0.5), GatedSmoother)
    with pytest.raises(ValueError, match="none, ema, gated or motion"):
        make_smoother("optical-flow")


# ------------------------------------------------------------------------------ stylize.py
def test_stylize_py_writes_a_stylized_video_with_the_sources_rate_and_audio(tmp_path):
    """The documented entry point, end to end: `python stylize.py ckpt=... input=clip.mp4 output=...`."""
    from conftest import run_script

    src, dst = tmp_path / "clip.mp4", tmp_path / "out" / "clip_starry.mp4"
    make_clip(src, n=8, w=64, h=48, rotation=0, jitter=False)
    r = run_script("stylize.py", f"ckpt={MODEL}", f"input={src}", f"output={dst}", "device=cpu", "batch_size=3",
                   "temporal=ema", "temporal_strength=0.5")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {dst}" in r.stderr and "frame-to-frame change" in r.stderr
    info_in, info_out = probe_video(src), probe_video(dst)
    assert (info_out.width, info_out.height) == (64, 48) and info_out.fps == info_in.fps == Fraction(30000, 1001)
    assert info_out.audio == ("aac",)
    frames_in, frames_out = _frames(src), _frames(dst)
    assert len(frames_out) == len(frames_in) == 8
    diff = np.mean([np.abs(a[2].astype(float) - b[2].astype(float)).mean() for a, b in zip(frames_in, frames_out)])
    assert diff > 10, diff
    assert not list(dst.parent.glob(".*partial*"))


def test_stylize_cli_explains_a_corrupt_video(clip, tmp_path, capsys):
    """A truncated download (MP4 whose index never got written) and a non-video: exit status 1,
    the file named, what to do said, and no output left behind."""
    from conftest import compose
    from fast_nst.stylize.command import run

    src, _ = clip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"\x00" * 5000)
    for bad in (cut, junk):
        cfg = compose("stylize", [f"ckpt={MODEL}", f"input={bad}", f"output={tmp_path / 'o.mp4'}", "device=cpu"])
        assert run(cfg) == 1
        err = capsys.readouterr().err
        assert bad.name in err and "cannot open as a video" in err and "re-download or re-export" in err, err
        assert not (tmp_path / "o.mp4").exists() and not list(tmp_path.glob(".*partial*"))


def test_video_strip_picture(clip, tmp_path):
    """tools/video_strip.py (the README's video picture): source frames over stylized frames."""
    from PIL import Image

    from conftest import run_script

    src, _ = clip
    out = tmp_path / "strip.jpg"
    r = run_script("tools/video_strip.py", str(src), str(src), "--frames", "3", "--cell", "64", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    im = Image.open(out)
    probe = probe_video(src)
    assert im.width == 3 * 64 + 2 * 4 and im.height == 2 * (64 * probe.height // probe.width) + 4
    bad = run_script("tools/video_strip.py", str(tmp_path / "none.mp4"), str(src), "--out", str(out))
    assert bad.returncode == 2 and "none.mp4" in bad.stderr
