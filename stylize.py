"""Stylize images with an exported network: python stylize.py ckpt=NAME input=IMG (see conf/stylize/stylize.yaml).
Installed, the same is `fast-nst-stylize` (fast_nst/entry.py)."""

from omegaconf import DictConfig

from fast_nst.cli import hydra_main


@hydra_main(version_base="1.3", config_path="conf/stylize", config_name="stylize")
def main(cfg: DictConfig) -> None:
    from fast_nst.entry import run_stylize

    run_stylize(cfg)


if __name__ == "__main__":
    main()
