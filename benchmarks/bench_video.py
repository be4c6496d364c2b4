#!/usr/bin/env python
"""Video speed and flicker: stylize a clip made from a photo (a slow pan and zoom, encoded like a
phone video, with a sine audio track) and measure frames/s and flicker with and without temporal
smoothing.

    python benchmarks/bench_video.py                          # bundled photo, 640x360, 48 frames
    python benchmarks/bench_video.py --photo big.jpg --frames 96 --keep outputs/video_bench
    python benchmarks/bench_video.py --runtimes torch,onnx,onnx-int8 --no-flicker   # frames/s per runtime, one run

Flicker, two ways:
* the issue's metric: mean absolute frame-to-frame change of the output / the same of the input;
* warp error: the camera motion is known exactly, so frame t-1 can be warped onto frame t; the
  mean absolute difference that remains (over pixels seen in both) is change the motion does not
  explain. The input's own warp error (resampling and compression) is the floor.
A smoother that lowers both without lagging behind the per-frame stylization ("lag": mean
|smoothed - unsmoothed|) removes flicker rather than detail. Smoothers other than the pipeline's
are replayed offline on the same network outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch
import torch.nn.functional as F


def camera(t: int, n: int, src_w: int, src_h: int, out_w: int, out_h: int) -> tuple[float, float, float]:
    """(centre x, centre y, source pixels per output pixel) at frame t: pan left to right across
    10% of the photo while zooming in by 10%."""
    a = t / max(1, n - 1)
    scale = min(src_w / out_w, src_h / out_h) * 0.85 * (1 - 0.1 * a)
    return src_w * (0.45 + 0.1 * a), src_h * (0.5 - 0.03 * a), scale


def _grid(cam, out_w, out_h, src_w, src_h) -> torch.Tensor:
    """grid_sample grid (1, H, W, 2) mapping output pixels of a frame to the source photo."""
    cx, cy, s = cam
    u = (torch.arange(out_w) + 0.5 - out_w / 2) * s + cx
    v = (torch.arange(out_h) + 0.5 - out_h / 2) * s + cy
    gx, gy = u / src_w * 2 - 1, v / src_h * 2 - 1
    return torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1).unsqueeze(0)


def make_clip(photo: Path, path: Path, n: int, out_w: int, out_h: int, fps: int = 30, crf: int = 23) -> list:
    """Render the pan/zoom with bicubic sampling from the photo (pre-shrunk with antialiasing so
    the sampling never minifies by much, which would alias), encode H.264 + AAC."""
    import av

    from fast_nst.io.images import load_rgb, pil_to_tensor

    im = load_rgb(photo)
    target = max(out_w / im.width, out_h / im.height) / 0.85 * 1.05   # source px ~ 1.0-1.2 per output px
    if target < 1:
        im = im.resize((round(im.width * target), round(im.height * target)), resample=1)  # LANCZOS
    src = pil_to_tensor(im).unsqueeze(0)
    sw, sh = src.shape[-1], src.shape[-2]
    cams = [camera(t, n, sw, sh, out_w, out_h) for t in range(n)]
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = out_w, out_h, "yuv420p"
    v.options = {"crf": str(crf), "preset": "medium"}
    a = out.add_stream("aac", rate=48000)
    a.layout = "stereo"
    for t, cam in enumerate(cams):
        frame = F.grid_sample(src, _grid(cam, out_w, out_h, sw, sh), mode="bicubic", align_corners=False).clamp(0, 1)
        arr = frame[0].mul(255).round().byte().permute(1, 2, 0).numpy()
        vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
        vf.pts = t
        out.mux(v.encode(vf))
    out.mux(v.encode(None))
    total = int(48000 * n / fps)
    for k in range(0, total, 1024):
        tt = np.arange(k, min(k + 1024, total)) / 48000
        s = (0.2 * np.sin(2 * np.pi * 330 * tt)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([s, s]), format="fltp", layout="stereo")
        af.sample_rate, af.pts = 48000, k
        out.mux(a.encode(af))
    out.mux(a.encode(None))
    out.close()
    return [(c[0], c[1], c[2], sw, sh) for c in cams]


def warp_error(frames: list[torch.Tensor], cams: list) -> float:
    """Mean |f_t - warp(f_{t-1})| over pixels visible in both, with the exact camera motion."""
    _, h, w = frames[0].shape
    errs = []
    for t in range(1, len(frames)):
        cx0, cy0, s0, sw, sh = cams[t - 1]
        cx1, cy1, s1, _, _ = cams[t]
        # output pixel of frame t -> source point -> output pixel of frame t-1 (as a grid in [-1, 1])
        u = (torch.arange(w) + 0.5 - w / 2) * s1 + cx1
        v = (torch.arange(h) + 0.5 - h / 2) * s1 + cy1
        pu, pv = (u - cx0) / s0 + w / 2, (v - cy0) / s0 + h / 2
        gx, gy = pu / w * 2 - 1, pv / h * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1).unsqueeze(0)
        warped = F.grid_sample(frames[t - 1].unsqueeze(0), grid, mode="bilinear", align_corners=False)[0]
        valid = (grid.abs() <= 1 - 4 / w).all(-1)[0]  # a few pixels inside the border
        errs.append(float((frames[t] - warped).abs().mean(0)[valid].mean()))
    return float(np.mean(errs))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="starry_night")
    p.add_argument("--photo", default=str(ROOT / "assets" / "photos" / "picos_de_europa.jpg"))
    p.add_argument("--size", default="640x360")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--smoothing", default="motion:0.8", help="the pipeline's smoother, kind:strength (default: %(default)s)")
    p.add_argument("--offline", default="ema:0.5,ema:0.8,gated:0.8,motion:0.5,motion:0.8,motion:0.9",
                   help="smoothers replayed on the same outputs (default: %(default)s)")
    p.add_argument("--keep", default=None, help="folder to keep the clip and the stylized videos in")
    p.add_argument("--runtimes", default="torch",
                   help="runtimes timed end to end on the same clip, in turn (fast_nst.stylize.runtimes; the flicker "
                        "figures are the first one's; default: %(default)s)")
    p.add_argument("--no-flicker", action="store_true", help="frames/s only: skip the smoothing comparison")
    p.add_argument("--out", default="outputs/bench_video.json")
    args = p.parse_args(argv)

    import av

    from fast_nst.stylize.stylizer import Stylizer
    from fast_nst.stylize.temporal import FlickerMeter, make_smoother
    from fast_nst.stylize.video import stylize_video

    w, h = (int(v) for v in args.size.split("x"))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fast_nst_bench_video_"))
    work.mkdir(parents=True, exist_ok=True)
    clip = work / "clip.mp4"
    t0 = time.perf_counter()
    cams = make_clip(Path(args.photo), clip, args.frames, w, h)
    print(f"clip: {clip} ({args.frames} frames {w}x{h}, pan + zoom, crf 23) in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    runtimes = [r for r in args.runtimes.split(",") if r]
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []

    def show(pr):
        print(f"\r  {pr.frames_done}/{pr.frames_total or '?'} frames, {pr.fps:.2f} frames/s", end="", file=sys.stderr)

    fps: dict[str, float] = {}
    for i, runtime in enumerate(runtimes):
        st = Stylizer.load(args.ckpt, device="cpu", runtime=runtime)

        def stylize(x: torch.Tensor, st=st, first=i == 0) -> torch.Tensor:
            y = st.stylize_tensor(x)
            if first:
                captured.extend(zip(x.clone(), y.clone()))
            return y

        print(f"{runtime} ({st.capabilities.runtime}):", file=sys.stderr)
        report = stylize_video(clip, work / f"stylized_{runtime}.mp4", stylize, batch_size=args.batch, progress=show)
        print(file=sys.stderr)
        fps[runtime] = report.fps
        raw_report = report if i == 0 else raw_report
    inputs = [x for x, _ in captured]
    outputs = [y for _, y in captured]
    res = {"size": args.size, "frames": raw_report.frames, "batch": args.batch, "threads": torch.get_num_threads(),
           "seconds": raw_report.seconds, "fps": raw_report.fps, "fps_by_runtime": fps, "audio": raw_report.audio,
           "load_average": os.getloadavg(), "input_warp_error": warp_error(inputs, cams), "rows": []}
    if args.no_flicker:
        for runtime, f in fps.items():
            print(f"{args.frames} frames {args.size}, batch {args.batch}, {res['threads']} threads, {runtime}: "
                  f"{f:.2f} frames/s end to end ({f / fps[runtimes[0]]:.2f}x {runtimes[0]})")
        print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
        return res

    def row(name, frames, flicker):
        lag = float(np.mean([(a - b).abs().mean() for a, b in zip(frames, outputs)]))
        res["rows"].append({"smoothing": name, "input_change": flicker.input_change,
                            "output_change": flicker.output_change, "ratio": flicker.ratio,
                            "warp_error": warp_error(frames, cams), "lag": lag})

    row("none", outputs, raw_report.flicker)
    for spec in [s for s in args.offline.split(",") if s]:
        kind, strength = spec.split(":")
        sm, meter, frames = make_smoother(kind, float(strength)), FlickerMeter(), []
        for x, y in captured:
            o = sm(x, y)
            meter.update(x, o)
            frames.append(o)
        row(f"{spec} (offline)", frames, meter.result())
    # the pipeline's smoothing, on the same network outputs (replayed in order, no second network pass)
    kind, strength = args.smoothing.split(":")
    replay = iter(outputs)
    smoothed: list[torch.Tensor] = []
    sm = make_smoother(kind, float(strength))

    def cached(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([next(replay) for _ in range(x.shape[0])])

    class Recording:
        def reset(self):
            sm.reset()

        def __call__(self, content, stylized):
            out = sm(content, stylized)
            smoothed.append(out)
            return out

    rep = stylize_video(clip, work / f"stylized_{kind}{strength}.mp4", cached, batch_size=args.batch,
                        smoothing=Recording())
    row(f"{args.smoothing} (pipeline)", smoothed, rep.flicker)

    print(f"\n{args.frames} frames {args.size}, batch {args.batch}, {res['threads']} threads: "
          f"{res['fps']:.2f} frames/s end to end (decode + network + encode, {runtimes[0]}), "
          f"audio {', '.join(res['audio'])}")
    print(f"input warp error (resampling + compression floor): {res['input_warp_error']:.4f}")
    print(f"{'smoothing':>22} {'in change':>10} {'out change':>11} {'ratio':>6} {'warp err':>9} {'lag':>7}")
    for r in res["rows"]:
        print(f"{r['smoothing']:>22} {r['input_change']:10.4f} {r['output_change']:11.4f} {r['ratio']:6.2f} "
              f"{r['warp_error']:9.4f} {r['lag']:7.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}" + (f"; videos in {work}" if args.keep else ""))
    return res


if __name__ == "__main__":
    main()
