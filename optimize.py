"""Stylize one photo by pixel optimisation (Gatys et al. 2016): python optimize.py content=IMG style=PAINTING
(see conf/optimize/). Installed, the same is `fast-nst-optimize` (fast_nst/entry.py)."""

from omegaconf import DictConfig

from fast_nst.cli import hydra_main


@hydra_main(version_base="1.3", config_path="conf/optimize", config_name="optimize")
def main(cfg: DictConfig) -> None:
    from fast_nst.entry import run_optimize

    run_optimize(cfg)


if __name__ == "__main__":
    main()
