"""Stylize one photo by pixel optimisation (Gatys et al. 2016): python optimize.py content=IMG style=PAINTING
(see conf/optimize/)."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf/optimize", config_name="optimize")
def main(cfg: DictConfig) -> None:
    from fast_nst.images import ImageError
    from fast_nst.models.weights import VGGWeightsError
    from fast_nst.optimize_cli import run

    try:
        run(cfg)
    except (ImageError, VGGWeightsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
