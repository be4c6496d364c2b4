"""`stylize.py`: files, folders and globs in, stylized images out, with per-file errors."""

from __future__ import annotations

import glob
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fast_nst.io.images import (ImageError, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, PixelLimit, _broken_link, is_animation, limit_size,
                             list_images, open_image, read_animation, read_header, save_animation_atomic,
                             save_image_atomic)
from fast_nst.io.errors import ConfigError, DiskFullError, MissingPathError
from fast_nst.stylize.runtimes import RUNTIMES
from fast_nst.stylize.stylizer import Stylizer
from fast_nst.io.validate import output_names_a_file, refuse_overwriting_inputs, validate_stylize

console = Console(stderr=True)


def collect_inputs(spec: str, problems: list[tuple[Path, str]] | None = None) -> tuple[list[Path], Path | None]:
    """Returns (files, base folder for relative output names). Inputs that cannot be listed
    (broken or looping links, unreadable folders) are appended to `problems` as (path, reason)."""
    problems = [] if problems is None else problems
    p = Path(spec).expanduser()
    if p.is_dir():
        return list_images(p, problems=problems), p
    if p.is_file():
        return [p], None
    if any(c in spec for c in "*?["):
        matched = [Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
        for f in matched:
            if f.is_symlink() and not f.exists():
                problems.append((f, _broken_link(f)))
        return sorted(f for f in matched if f.is_file()), None
    if p.is_symlink():
        raise MissingPathError(f"input={spec}: {_broken_link(p)}")
    raise MissingPathError(f"input={spec}: no such file or folder")


def plan_outputs(files: list[Path], base: Path | None, output: str | None, style: str) -> list[Path]:
    if output and len(files) == 1 and base is None and Path(output).suffix.lower() in IMAGE_EXTENSIONS:
        return [Path(output)]
    out_dir = Path(output) if output else Path("stylized") / style
    if output_names_a_file(out_dir):
        raise ConfigError(f"output={output} names one file but input has {len(files)} images; give a folder instead"
                          if out_dir.suffix.lower() in IMAGE_EXTENSIONS else
                          f"output={output} names a video, but the input is images; give an image file or a folder")
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


def _plain(v):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v


def style_runs(cfg, stylizer: Stylizer) -> list[tuple[str, dict]]:
    """(output label, style arguments) per output set: one, or one per painting for style=all.
    Each choice is checked here, before any image is read."""
    weights, images = _plain(cfg.style_weights), _plain(cfg.style_image)
    if cfg.style == "all":
        if weights is not None or images is not None:
            raise ConfigError("style=all writes each painting on its own; drop style_weights/style_image")
        runs = [(name, {"style": name}) for name in stylizer.styles]
    else:
        if weights is not None and isinstance(weights, dict):
            label = "+".join(f"{k}{float(v):g}" for k, v in weights.items() if float(v))
        elif images is not None:
            label = "+".join(Path(str(p)).stem for p in (images if isinstance(images, list) else [images]))
        else:
            label = cfg.style or (stylizer.styles[0] if len(stylizer.styles) == 1 else stylizer.name)
        runs = [(label, {"style": cfg.style, "style_weights": weights, "style_image": images})]
    for _, kw in runs:
        stylizer.condition(**kw)  # raises StyleChoiceError naming the choices
    return runs


def is_video(spec: str) -> bool:
    return Path(spec).suffix.lower() in VIDEO_EXTENSIONS and not any(c in spec for c in "*?[")


def video_output(src: Path, output: str | None, style: str) -> Path:
    """output= a video file, or a folder (src's name in it); null = stylized/<style>/<src name>."""
    if output and Path(output).suffix.lower() in VIDEO_EXTENSIONS:
        return Path(output)
    if output and Path(output).suffix and not Path(output).is_dir():
        raise ConfigError(f"output={output}: not a video extension ({', '.join(VIDEO_EXTENSIONS)}) nor a folder")
    return (Path(output) if output else Path("stylized") / style) / src.name


def run_video(cfg, stylizer: Stylizer, style: dict) -> int:
    """One video in, one stylized video out (fast_nst.stylize.video on the Stylizer's tensor path).
    Returns 1 when the video could not be read or written, with the reason printed."""
    from rich.progress import TaskProgressColumn

    from fast_nst.stylize.temporal import make_smoother
    from fast_nst.stylize.video import VideoError, stylize_video

    src = Path(str(cfg.input)).expanduser()
    dst = video_output(src, cfg.output, stylizer.style_name)
    refuse_overwriting_inputs([dst], inputs=[src], given=None if cfg.output is None else str(cfg.output))
    if not cfg.overwrite and dst.exists():
        console.print(f"{dst} exists; skipped (overwrite=false)")
        return 0
    if cfg.max_size:
        console.print(f"[yellow]note[/] max_size={cfg.max_size} is for images; video frames keep the source's size")
    smoother = make_smoother(cfg.temporal, cfg.temporal_strength)
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TextColumn("{task.fields[fps]:.2f} frames/s"), TimeRemainingColumn())
    console.print(f"[bold]{stylizer.style_name}[/] on {stylizer.device} ({stylizer.capabilities.runtime}): {src}"
                  + (f", temporal smoothing {cfg.temporal} {cfg.temporal_strength}" if smoother else ""))
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("stylizing", total=None, fps=0.0)

            def update(p) -> None:
                progress.update(task, completed=p.frames_done, total=p.frames_total or None, fps=p.fps)

            def stylize_frames(x):
                return stylizer.stylize_tensor(x, strength=cfg.strength, **style)

            report = stylize_video(src, dst, stylize_frames, batch_size=max(1, cfg.batch_size),
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
    validate_stylize(cfg, RUNTIMES)
    stylizer = Stylizer.load(cfg.ckpt, device=cfg.device, runtime=cfg.runtime, half=cfg.half,
                             channels_last=cfg.channels_last, preserve_color=cfg.preserve_color, tile=cfg.tile,
                             tile_overlap=cfg.tile_overlap, tile_stats=cfg.tile_stats,
                             tile_stats_size=cfg.tile_stats_size, style_size=cfg.style_size)
    if stylizer.runtime_note:
        console.print(f"[yellow]note[/] {stylizer.runtime_note}", soft_wrap=True)
    runs = style_runs(cfg, stylizer)
    if is_video(str(cfg.input)):
        if len(runs) != 1:
            raise ConfigError("a video is stylized with one painting at a time; pick style=NAME")
        return run_video(cfg, stylizer, runs[0][1])
    problems: list[tuple[Path, str]] = []
    files, base = collect_inputs(str(cfg.input), problems)
    for _, reason in problems:  # each counted as a failed input
        console.print(f"[red]skip[/] {reason}", soft_wrap=True)
    if not files:
        raise MissingPathError(f"input={cfg.input}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})"
                               + (f"; {len(problems)} entries skipped, named above" if problems else ""))
    plans = []  # (label, style arguments, output option, output files): all planned before any is written
    for label, style in runs:
        output = cfg.output
        if len(runs) > 1 and output:
            single_file = len(files) == 1 and base is None and Path(output).suffix.lower() in IMAGE_EXTENSIONS
            output = (str(Path(output).with_name(f"{Path(output).stem}_{label}{Path(output).suffix}"))
                      if single_file else str(Path(output) / label))
        plans.append((label, style, output, plan_outputs(files, base, output, label)))
    glob_spec = str(cfg.input) if base is None and any(c in str(cfg.input) for c in "*?[") else None
    refuse_overwriting_inputs([o for *_, outs in plans for o in outs], inputs=files,
                              folders=[base] if base is not None else [], patterns=[glob_spec] if glob_spec else [],
                              given=None if cfg.output is None else str(cfg.output))
    return len(problems) + sum(_stylize_files(cfg, stylizer, files, base, outs, output, label, style)
                               for label, style, output, outs in plans)


def _stylize_files(cfg, stylizer: Stylizer, files: list[Path], base: Path | None, outs: list[Path],
                   output: str | None, label: str, style: dict) -> int:
    todo = [(f, o) for f, o in zip(files, outs) if cfg.overwrite or not o.exists()]
    console.print(f"[bold]{stylizer.name}[/] ({stylizer.kind}) as [bold]{label}[/]"
                  + (f" at strength {cfg.strength:g}" if cfg.strength != 1 else "")
                  + f" on {stylizer.device} ({stylizer.capabilities.runtime}): {len(todo)} image(s)"
                  + (f" ({len(files) - len(todo)} already done)" if len(todo) < len(files) else ""))
    failed: list[str] = []
    written = 0
    limit = PixelLimit(cfg.max_pixels, "max_pixels",
                       "with tile=512 stylizing it keeps memory bounded, or max_size= downscales it after decoding")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=len(todo) < 2) as progress:
        task = progress.add_task("stylizing", total=len(todo))
        for i in range(0, len(todo), max(1, cfg.batch_size)):
            chunk = todo[i: i + max(1, cfg.batch_size)]
            by_size: dict[tuple, list] = defaultdict(list)
            for f, o in chunk:
                try:
                    if is_animation(read_header(f, limit=limit)):
                        frames = _stylize_animation(cfg, stylizer, f, o, limit, style)
                        written += 1
                        if len(todo) == 1:
                            console.print(f"wrote {o} (an animated PNG of {frames} frames)" if o.suffix.lower() ==
                                          ".png" else f"wrote {o} ({frames} frames)")
                        progress.advance(task)
                        continue
                    im = limit_size(open_image(f, limit), cfg.max_size)
                    by_size[im.size].append((im, o))
                except ImageError as e:
                    failed.append(str(e))
                    console.print(f"[red]skip[/] {e}")
                    progress.advance(task)
                except DiskFullError as e:  # every later write would fail the same way: stop here
                    raise _disk_full(e, written, len(todo)) from e
                except (RuntimeError, OSError) as e:  # an animation the network failed on
                    failed.append(f"{f}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
                    console.print(f"[red]failed[/] {failed[-1]}")
                    progress.advance(task)
            for group in by_size.values():
                try:
                    results = stylizer.stylize_batch([im for im, _ in group], strength=cfg.strength, **style)
                except RuntimeError as e:  # e.g. out of memory: these inputs fail, the others go on
                    results = [e] * len(group)
                for res, (_, o) in zip(results, group):
                    try:
                        if isinstance(res, Exception):
                            raise res
                        save_image_atomic(res, o, **({"quality": cfg.quality} if o.suffix.lower() in (".jpg", ".jpeg") else {}))
                        written += 1
                        if len(todo) == 1:
                            console.print(f"wrote {o} ({res.width}x{res.height})")
                    except DiskFullError as e:
                        raise _disk_full(e, written, len(todo)) from e
                    except (RuntimeError, OSError) as e:
                        reason = f"{o}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
                        failed.append(reason)
                        console.print(f"[red]failed[/] {reason}")
                    progress.advance(task)
    done = len(todo) - len(failed)
    if len(todo) > 1:
        console.print(f"wrote {done} image(s) to {outs[0].parent if base is None else Path(output or Path('stylized') / label)}")
    if failed:
        console.print(f"[red]{len(failed)} input(s) failed[/]: " + "; ".join(failed[:5]))
    return len(failed)


def _disk_full(e: DiskFullError, written: int, total: int) -> DiskFullError:
    """The disk-full error of a folder run, with how far it got and how to go on from there."""
    return DiskFullError(f"{e} ({written} of {total} outputs were written before it; with overwrite=false the "
                         "next run skips them)")


def _stylize_animation(cfg, stylizer: Stylizer, src: Path, dst: Path, limit: PixelLimit, style: dict) -> int:
    """Every frame of an animated GIF / PNG / WebP, stylized `batch_size` at a time, written as an
    animation with the same frame durations (an animated PNG, since outputs of those inputs are
    .png). Returns the number of frames."""
    from fast_nst.io.images import ANIMATION_SUFFIXES

    if dst.suffix.lower() not in ANIMATION_SUFFIXES:
        raise ImageError(f"{src}: an animation, and {dst.suffix} holds one picture; give an output name ending in "
                         ".png (an animated PNG), .gif or .webp")
    anim = read_animation(src, limit)
    anim.frames = [limit_size(f, cfg.max_size) for f in anim.frames]
    n, step = len(anim.frames), max(1, cfg.batch_size)
    anim.frames = [out for k in range(0, n, step)
                   for out in stylizer.stylize_batch(anim.frames[k:k + step], strength=cfg.strength, **style)]
    save_animation_atomic(anim, dst)
    return n
