#!/usr/bin/env python
"""Equivalent L-BFGS iterations of one forward pass (Johnson et al. 2016, Fig. 5):
python scripts/quality.py ckpt=starry_night photos=DIR  (options: conf/optimize/quality.yaml)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


@hydra.main(version_base="1.3", config_path="../conf/optimize", config_name="quality")
def main(cfg: DictConfig) -> None:
    from rich.console import Console

    from fast_nst.quality import evaluate, pick_photos, plot, write_json
    from fast_nst.stylizer import find_checkpoint, pick_device

    console = Console(stderr=True, soft_wrap=True)
    try:
        ckpt = find_checkpoint(cfg.ckpt)
        photos = pick_photos(Path(cfg.photos).expanduser(), cfg.num_photos)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error[/]: {e}")
        sys.exit(2)
    device = pick_device(cfg.device)
    console.print(f"quality: {ckpt} on {len(photos)} photos from {cfg.photos} at {cfg.size} px, "
                  f"L-BFGS budget {cfg.iterations}, device {device}")

    def progress(i, k, loss, ff):
        if k % 10 == 0:
            console.print(f"  photo {i + 1}/{len(photos)}  iter {k:4d}  loss {loss:.4g}  (network {ff:.4g})")

    report = evaluate(ckpt, photos, cfg.size, cfg.iterations, device, style_image=cfg.style_image,
                      vgg_weights=cfg.vgg_weights, stop_early=cfg.stop_early, progress=progress, style=cfg.style)
    out_dir = Path(cfg.output) if cfg.output else Path("outputs") / "quality" / str(report["style"])
    write_json(report, out_dir / "quality.json")
    plot(report, out_dir / "quality.png")
    for r in report["per_photo"]:
        k = r["equivalent_iterations"]
        console.print(f"  {Path(r['photo']).name:28s} network loss {r['feedforward_loss']:.4g}  "
                      f"L-BFGS reaches it at iteration {k if k is not None else f'>{cfg.iterations}'}")
    s = report["summary"]
    print(f"equivalent L-BFGS iterations: median {s['median_equivalent_iterations']}, "
          f"mean {s['mean_equivalent_iterations'] if s['mean_equivalent_iterations'] is None else round(s['mean_equivalent_iterations'], 1)} "
          f"({s['reached']}/{s['photos']} photos reached within {cfg.iterations}); "
          f"network {s['feedforward_seconds_per_image'] * 1000:.1f} ms/image, "
          f"L-BFGS {s['lbfgs_seconds_per_iteration']:.2f} s/iteration")
    console.print(f"wrote {out_dir / 'quality.json'} and {out_dir / 'quality.png'}")


if __name__ == "__main__":
    main()
