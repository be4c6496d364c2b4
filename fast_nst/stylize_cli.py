"""`stylize.py`: files, folders and globs in, stylized images out, with per-file errors."""

from __future__ import annotations

import glob
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fast_nst.images import ImageError, IMAGE_EXTENSIONS, limit_size, list_images, open_image, save_image_atomic
from fast_nst.stylizer import Stylizer

console = Console(stderr=True)


def collect_inputs(spec: str) -> tuple[list[Path], Path | None]:
    """Returns (files, base folder for relative output names)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return list_images(p), p
    if p.is_file():
        return [p], None
    if any(c in spec for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(p), recursive=True)
                       if Path(f).suffix.lower() in IMAGE_EXTENSIONS and Path(f).is_file())
        return files, None
    raise FileNotFoundError(f"input={spec}: no such file or folder")


def plan_outputs(files: list[Path], base: Path | None, output: str | None, style: str) -> list[Path]:
    if output and len(files) == 1 and base is None and Path(output).suffix.lower() in IMAGE_EXTENSIONS:
        return [Path(output)]
    out_dir = Path(output) if output else Path("stylized") / style
    if out_dir.suffix.lower() in IMAGE_EXTENSIONS:
        raise ValueError(f"output={output} names one file but input has {len(files)} images; "
                         "give a folder instead")
    outs, seen = [], set()
    for f in files:
        rel = f.relative_to(base) if base else Path(f.name)
        # JPEG in, JPEG out; everything else becomes PNG so alpha and exact pixels survive.
        suffix = f.suffix.lower() if f.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
        o = out_dir / rel.with_suffix(suffix)
        if o in seen:  # a.jpg and a.png from a glob: keep both
            o = o.with_name(f"{o.stem}_{f.suffix.lstrip('.')}{o.suffix}")
        seen.add(o)
        outs.append(o)
    return outs


def is_video(spec: str) -> bool:
    from fast_nst.video import VIDEO_EXTENSIONS

    return Path(spec).suffix.lower() in VIDEO_EXTENSIONS and not any(c in spec for c in "*?[")


def video_output(src: Path, output: str | None, style: str) -> Path:
    """output= a video file, or a folder (src's name in it); null = stylized/<style>/<src name>."""
    from fast_nst.video import VIDEO_EXTENSIONS

    if output and Path(output).suffix.lower() in VIDEO_EXTENSIONS:
        return Path(output)
    if output and Path(output).suffix and not Path(output).is_dir():
        raise ValueError(f"output={output}: not a video extension ({', '.join(VIDEO_EXTENSIONS)}) nor a folder")
    return (Path(output) if output else Path("stylized") / style) / src.name


def run_video(cfg, stylizer: Stylizer) -> int:
    """One video in, one stylized video out (fast_nst.video on the Stylizer's tensor path).
    Returns 1 when the video could not be read or written, with the reason printed."""
    from rich.progress import TaskProgressColumn

    from fast_nst.temporal import make_smoother
    from fast_nst.video import VideoError, stylize_video

    src = Path(str(cfg.input)).expanduser()
    dst = video_output(src, cfg.output, stylizer.style_name)
    if not cfg.overwrite and dst.exists():
        console.print(f"{dst} exists; skipped (overwrite=false)")
        return 0
    if cfg.max_size:
        console.print(f"[yellow]note[/] max_size={cfg.max_size} is for images; video frames keep the source's size")
    smoother = make_smoother(cfg.temporal, cfg.temporal_strength)
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TextColumn("{task.fields[fps]:.2f} frames/s"), TimeRemainingColumn())
    console.print(f"[bold]{stylizer.style_name}[/] on {stylizer.device}: {src}"
                  + (f", temporal smoothing {cfg.temporal} {cfg.temporal_strength}" if smoother else ""))
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("stylizing", total=None, fps=0.0)

            def update(p) -> None:
                progress.update(task, completed=p.frames_done, total=p.frames_total or None, fps=p.fps)

            report = stylize_video(src, dst, stylizer.stylize_tensor, batch_size=max(1, cfg.batch_size),
                                   smoothing=smoother, crf=cfg.crf, preset=cfg.preset, progress=update)
    except VideoError as e:
        console.print(f"[red]error[/] {e}", soft_wrap=True)  # unwrapped: paths stay copyable
        return 1
    info = report.info
    console.print(f"wrote {dst} ({info.width}x{info.height}, {report.frames} frames, "
                  f"{float(info.fps or 0):.3g} fps{', audio ' + ', '.join(report.audio) if report.audio else ', no audio'})"
                  f" at {report.fps:.2f} frames/s", soft_wrap=True)
    if report.flicker is not None and report.flicker.pairs:
        console.print(str(report.flicker))
    return 0


def run(cfg) -> int:
    """Returns the number of inputs that failed."""
    stylizer = Stylizer.load(cfg.ckpt, device=cfg.device, half=cfg.half,
                             channels_last=cfg.get("channels_last", True),
                             preserve_color=cfg.preserve_color, strength=cfg.strength, tile=cfg.tile,
                             tile_overlap=cfg.tile_overlap, tile_stats=cfg.tile_stats,
                             tile_stats_size=cfg.tile_stats_size)
    if is_video(str(cfg.input)):
        return run_video(cfg, stylizer)
    files, base = collect_inputs(str(cfg.input))
    if not files:
        raise FileNotFoundError(f"input={cfg.input}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    outs = plan_outputs(files, base, cfg.output, stylizer.style_name)
    todo = [(f, o) for f, o in zip(files, outs) if cfg.overwrite or not o.exists()]
    console.print(f"[bold]{stylizer.style_name}[/] on {stylizer.device}: {len(todo)} image(s)"
                  + (f" ({len(files) - len(todo)} already done)" if len(todo) < len(files) else ""))
    failed: list[str] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=len(todo) < 2) as progress:
        task = progress.add_task("stylizing", total=len(todo))
        for i in range(0, len(todo), max(1, cfg.batch_size)):
            chunk = todo[i: i + max(1, cfg.batch_size)]
            by_size: dict[tuple, list] = defaultdict(list)
            for f, o in chunk:
                try:
                    im = limit_size(open_image(f), cfg.max_size)
                    by_size[im.size].append((im, o))
                except ImageError as e:
                    failed.append(str(e))
                    console.print(f"[red]skip[/] {e}")
                    progress.advance(task)
            for group in by_size.values():
                results = stylizer.stylize_batch([im for im, _ in group])
                for res, (_, o) in zip(results, group):
                    save_image_atomic(res, o, **({"quality": cfg.quality} if o.suffix.lower() in (".jpg", ".jpeg") else {}))
                    if len(todo) == 1:
                        console.print(f"wrote {o} ({res.width}x{res.height})")
                    progress.advance(task)
    done = len(todo) - len(failed)
    if len(todo) > 1:
        console.print(f"wrote {done} image(s) to {outs[0].parent if base is None else Path(cfg.output or Path('stylized') / stylizer.style_name)}")
    if failed:
        console.print(f"[red]{len(failed)} input(s) failed[/]: " + "; ".join(failed[:5]))
    return len(failed)
