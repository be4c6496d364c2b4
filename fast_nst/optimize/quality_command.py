"""The quality command: equivalent L-BFGS iterations of one forward pass (Johnson et al. 2016,
sec. 4.1 and Fig. 5): `fast-nst quality ckpt=starry_night photos=DIR` (options:
conf/optimize/quality.yaml).

Time to quality: time_to_quality.recipe='"train arguments"' trains that recipe (`fast-nst train`)
for time_to_quality.minutes, checkpointing every time_to_quality.every minutes, then measures
every checkpoint: equivalent L-BFGS iterations vs minutes of training."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def run(cfg: DictConfig) -> None:
    from rich.console import Console

    from fast_nst.io.errors import ConfigError, MissingPathError
    from fast_nst.io.images import resolve_path
    from fast_nst.optimize.quality import QUALITY_INITS, pick_photos, write_json
    from fast_nst.stylize.stylizer import find_checkpoint, pick_device
    from fast_nst.io.validate import validate_quality

    console = Console(stderr=True, soft_wrap=True)
    inits = tuple(str(i) for i in cfg.init) if isinstance(cfg.init, ListConfig) else (str(cfg.init),)
    validate_quality(cfg, inits, QUALITY_INITS)
    try:
        photos = pick_photos(resolve_path(cfg.photos), cfg.num_photos)
    except FileNotFoundError as e:  # the folder holds no images
        raise ConfigError(str(e)) from e
    ttq = cfg.get("time_to_quality") or {}
    timeline = None
    if ttq.get("recipe"):
        if not cfg.output:
            cfg.output = str(Path("outputs") / "time_to_quality" / time.strftime("%Y-%m-%d_%H-%M-%S"))
        timeline = train_for_time(ttq, Path(cfg.output), console)
        ckpts = [Path(cfg.output) / "minutes" / row["ckpt"] for row in timeline]
    else:
        try:
            ckpts = checkpoints_to_evaluate(str(cfg.ckpt), find_checkpoint)
        except FileNotFoundError as e:
            raise MissingPathError(str(e)) from e
        timeline = read_timeline(Path(str(cfg.ckpt)).expanduser())
    device = pick_device(cfg.device)
    over_training = []
    for ckpt in ckpts:
        report = evaluate_one(cfg, ckpt, photos, inits, device, console, per_checkpoint=len(ckpts) > 1)
        if len(ckpts) > 1 or timeline is not None:
            noise = report["summary"]["init"].get(inits[0], {})
            when = next((row for row in timeline or [] if row["ckpt"] == ckpt.name), {})
            over_training.append({**when, "ckpt": str(ckpt), "global_step": report["global_step"],
                                  "style": report["style"],
                                  "feedforward_loss": report["summary"]["feedforward_terms"]["loss"],
                                  "init": inits[0], **{k: noise.get(k) for k in
                                  ("median_equivalent_iterations", "reached", "per_photo_equivalent_iterations")}})
    if over_training:
        out_dir = Path(cfg.output) if cfg.output else Path("outputs") / "quality" / str(report["style"])
        table = {"size": cfg.size, "iterations": cfg.iterations, "photos": [str(p) for p in photos],
                 "checkpoints": over_training}
        if timeline is not None:
            table["recipe"] = recipe_overrides(ttq.recipe)
            name = "time_to_quality.json"
            print(f"\ntime to quality (median equivalent L-BFGS iterations from {inits[0]}, {len(photos)} photos, "
                  f"{cfg.size} px; minutes on the {over_training[0].get('clock', '?')} clock):")
            print(f"  {'minutes':>7}  {'step':>6}  {'equiv. iters':>12}  {'wall s':>8}  {'CPU s':>8}  {'load':>5}  network loss")
            for row in over_training:
                load = (row.get("load_average") or [None])[0]
                print(f"  {_fmt(row.get('minutes')):>7}  {row['global_step'] if row['global_step'] is not None else '?':>6}  "
                      f"{_fmt(row['median_equivalent_iterations']):>12}  {_fmt(row.get('wall_seconds')):>8}  "
                      f"{_fmt(row.get('cpu_seconds')):>8}  {_fmt(load):>5}  {_fmt(row['feedforward_loss'])}")
        else:
            name = "over_training.json"
            print(f"\nover training (median equivalent L-BFGS iterations from {inits[0]}, {len(photos)} photos):")
            for row in over_training:
                print(f"  step {row['global_step'] if row['global_step'] is not None else '?':>7}  "
                      f"{_fmt(row['median_equivalent_iterations']):>6}  network loss {_fmt(row['feedforward_loss'])}")
        write_json(table, out_dir / name)
        console.print(f"wrote {out_dir / name}")


def recipe_overrides(recipe) -> list[str]:
    """time_to_quality.recipe as `fast-nst train` arguments: a string of them ("experiment=x style.image=y")
    or a list."""
    import shlex

    return [str(r) for r in recipe] if isinstance(recipe, ListConfig) else shlex.split(str(recipe))


def read_timeline(folder: Path) -> list[dict] | None:
    """A time-budget checkpoint folder's timeline.json (fast_nst/training/time_budget.py), or None."""
    f = folder / "timeline.json"
    return json.loads(f.read_text()) if folder.is_dir() and f.is_file() else None


def train_for_time(ttq, out: Path, console) -> list[dict]:
    """Run `fast-nst train` on the recipe with a time budget (fast_nst/training/time_budget.py): its
    checkpoints land in <out>/minutes, its export in <out>/export, its run folder in <out>/run.
    Returns the timeline."""
    from fast_nst.io.errors import ConfigError

    recipe = recipe_overrides(ttq.recipe)
    budget = [f"callbacks.time_budget.minutes={ttq.minutes}", f"callbacks.time_budget.every={ttq.every}",
              f"callbacks.time_budget.clock={ttq.clock}", f"callbacks.time_budget.cpu_scale={ttq.cpu_scale}",
              f"callbacks.time_budget.dirpath={out / 'minutes'}", f"export.dir={out / 'export'}",
              f"hydra.run.dir={out / 'run'}"]
    if not any(r.split("=", 1)[0].lstrip("+~") == "logger" for r in recipe):
        budget.append("logger=csv")
    env = dict(os.environ)
    if ttq.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(ttq.threads)
    cmd = [sys.executable, "-m", "fast_nst", "train", *recipe, *budget]
    console.print(f"time to quality: training for {ttq.minutes} min ({ttq.clock} clock), a checkpoint every "
                  f"{ttq.every} min:\n  {' '.join(cmd[1:])}", markup=False)
    if subprocess.run(cmd, env=env).returncode != 0:
        raise ConfigError(f"time_to_quality: the training run failed (its output is above; run folder {out / 'run'})")
    timeline = read_timeline(out / "minutes")
    if not timeline:
        raise ConfigError(f"time_to_quality: the run left no checkpoints in {out / 'minutes'} (did it end, at "
                          "trainer.max_steps, before the first time_to_quality.every minutes?)")
    return timeline


def checkpoints_to_evaluate(ckpt: str, find_checkpoint) -> list[Path]:
    """ckpt= as a list of files: a folder means its periodic training checkpoints in step order
    (last.ckpt is a copy of one of them and is left out)."""
    path = Path(ckpt).expanduser()
    if path.is_dir():
        found = sorted((f for f in path.glob("*.ckpt") if f.name != "last.ckpt"),
                       key=lambda f: (len(f.stem), f.stem))
        if not found:
            raise FileNotFoundError(f"ckpt={ckpt}: a folder without training checkpoints (*.ckpt)")
        return found
    file = path if path.suffix == ".ckpt" else find_checkpoint(ckpt)
    if not Path(file).is_file():
        raise FileNotFoundError(f"ckpt={ckpt}: no such file")
    return [Path(file)]


def evaluate_one(cfg: DictConfig, ckpt: Path, photos, inits, device, console, per_checkpoint: bool) -> dict:
    from fast_nst.io.errors import ConfigError
    from fast_nst.optimize.quality import TERMS, evaluate, plot, write_json

    console.print(f"quality: {ckpt} on {len(photos)} photos from {cfg.photos} at {cfg.size} px, "
                  f"L-BFGS from {'+'.join(inits)}, budget {cfg.iterations}, device {device}")

    def progress(i, init, k, loss, ff):
        if k % 25 == 0:
            console.print(f"  photo {i + 1}/{len(photos)}  {init:7s} iter {k:4d}  loss {loss:.4g}  (network {ff:.4g})")

    try:
        report = evaluate(ckpt, photos, cfg.size, cfg.iterations, device, inits=inits,
                          report_at=tuple(cfg.report_at or ()), style_image=cfg.style_image,
                          vgg_weights=cfg.vgg_weights, stop_early=cfg.stop_early, seed=cfg.seed,
                          progress=progress, style=cfg.style, cache_dir=cfg.cache_dir)
    except ValueError as e:  # evaluate's own argument checks: init, a .ckpt of another kind, style=
        raise ConfigError(str(e)) from e
    out_dir = Path(cfg.output) if cfg.output else Path("outputs") / "quality" / str(report["style"])
    if per_checkpoint:
        out_dir = out_dir / ckpt.stem     # one report per periodic checkpoint
    write_json(report, out_dir / "quality.json")
    plotted = plot(report, out_dir / "quality.png")
    s = report["summary"]
    ff = s["feedforward_terms"]
    print(f"network: {s['feedforward_seconds_per_image'] * 1000:.1f} ms/image; mean terms "
          + "  ".join(f"{t} {_fmt(ff[t])}" for t in TERMS))
    for init, si in s["init"].items():
        mean = si["mean_equivalent_iterations"]
        print(f"equivalent L-BFGS iterations from {init}: median {si['median_equivalent_iterations']}, "
              f"mean {None if mean is None else round(mean, 1)} ({si['reached']}/{s['photos']} photos reached "
              f"within {cfg.iterations}; per photo {si['per_photo_equivalent_iterations']}); "
              f"L-BFGS {si['lbfgs_seconds_per_iteration']:.2f} s/iteration")
        for j, terms in si["lbfgs_terms_at"].items():
            if terms:
                print(f"  L-BFGS from {init} at {j:>3s}: " + "  ".join(f"{t} {_fmt(terms[t])}" for t in TERMS))
    console.print(f"wrote {out_dir / 'quality.json'}" + (f" and {plotted}" if plotted else
                  " (no quality.png: the plot needs matplotlib, pip install 'fast_nst[plots]')"))
    return report

