"""The quality command: equivalent L-BFGS iterations of one forward pass (Johnson et al. 2016,
sec. 4.1 and Fig. 5): `fast-nst quality ckpt=starry_night photos=DIR` (options:
conf/optimize/quality.yaml)."""

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
        ckpts = checkpoints_to_evaluate(str(cfg.ckpt), find_checkpoint)
    except FileNotFoundError as e:
        raise MissingPathError(str(e)) from e
    try:
        photos = pick_photos(resolve_path(cfg.photos), cfg.num_photos)
    except FileNotFoundError as e:  # the folder holds no images
        raise ConfigError(str(e)) from e
    device = pick_device(cfg.device)
    over_training = []
    for ckpt in ckpts:
        report = evaluate_one(cfg, ckpt, photos, inits, device, console, per_checkpoint=len(ckpts) > 1)
        if len(ckpts) > 1:
            noise = report["summary"]["init"].get(inits[0], {})
            over_training.append({"ckpt": str(ckpt), "global_step": report["global_step"],
                                  "feedforward_loss": report["summary"]["feedforward_terms"]["loss"],
                                  "init": inits[0], **{k: noise.get(k) for k in
                                  ("median_equivalent_iterations", "reached", "per_photo_equivalent_iterations")}})
    if over_training:
        out_dir = Path(cfg.output) if cfg.output else Path("outputs") / "quality" / str(report["style"])
        write_json({"size": cfg.size, "iterations": cfg.iterations, "photos": [str(p) for p in photos],
                    "checkpoints": over_training}, out_dir / "over_training.json")
        print(f"\nover training (median equivalent L-BFGS iterations from {inits[0]}, {len(photos)} photos):")
        for row in over_training:
            print(f"  step {row['global_step'] if row['global_step'] is not None else '?':>7}  "
                  f"{_fmt(row['median_equivalent_iterations']):>6}  network loss {_fmt(row['feedforward_loss'])}")
        console.print(f"wrote {out_dir / 'over_training.json'}")


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

