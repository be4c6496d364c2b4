#!/usr/bin/env python
"""Equivalent L-BFGS iterations of one forward pass (Johnson et al. 2016, sec. 4.1 and Fig. 5):
python scripts/quality.py ckpt=starry_night photos=DIR  (options: conf/optimize/quality.yaml)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


@hydra.main(version_base="1.3", config_path="../conf/optimize", config_name="quality")
def main(cfg: DictConfig) -> None:
    from fast_nst.cli import run_cli

    run_cli(lambda: run(cfg))  # exit 2 for bad options, one line, like train.py / stylize.py


def run(cfg: DictConfig) -> None:
    from rich.console import Console

    from fast_nst.errors import ConfigError, MissingPathError
    from fast_nst.images import resolve_path
    from fast_nst.quality import QUALITY_INITS, TERMS, evaluate, pick_photos, plot, write_json
    from fast_nst.stylizer import find_checkpoint, pick_device
    from fast_nst.validate import validate_quality

    console = Console(stderr=True, soft_wrap=True)
    inits = tuple(str(i) for i in cfg.init) if isinstance(cfg.init, ListConfig) else (str(cfg.init),)
    validate_quality(cfg, inits, QUALITY_INITS)
    ckpt = Path(cfg.ckpt) if str(cfg.ckpt).endswith(".ckpt") else find_checkpoint(cfg.ckpt)
    if not ckpt.is_file():
        raise MissingPathError(f"ckpt={cfg.ckpt}: no such file")
    try:
        photos = pick_photos(resolve_path(cfg.photos), cfg.num_photos)
    except FileNotFoundError as e:  # the folder holds no images
        raise ConfigError(str(e)) from e
    device = pick_device(cfg.device)
    console.print(f"quality: {ckpt} on {len(photos)} photos from {cfg.photos} at {cfg.size} px, "
                  f"L-BFGS from {'+'.join(inits)}, budget {cfg.iterations}, device {device}")

    def progress(i, init, k, loss, ff):
        if k % 25 == 0:
            console.print(f"  photo {i + 1}/{len(photos)}  {init:7s} iter {k:4d}  loss {loss:.4g}  (network {ff:.4g})")

    try:
        report = evaluate(ckpt, photos, cfg.size, cfg.iterations, device, inits=inits,
                          report_at=tuple(cfg.report_at or ()), style_image=cfg.style_image,
                          vgg_weights=cfg.vgg_weights, stop_early=cfg.stop_early, seed=cfg.seed,
                          progress=progress, style=cfg.style)
    except ValueError as e:  # evaluate's own argument checks: init, a .ckpt of another kind, style=
        raise ConfigError(str(e)) from e
    out_dir = Path(cfg.output) if cfg.output else Path("outputs") / "quality" / str(report["style"])
    write_json(report, out_dir / "quality.json")
    plot(report, out_dir / "quality.png")
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
    console.print(f"wrote {out_dir / 'quality.json'} and {out_dir / 'quality.png'}")


if __name__ == "__main__":
    main()
