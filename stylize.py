"""Stylize images with an exported network: python stylize.py ckpt=NAME input=IMG (see conf/stylize/stylize.yaml)."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf/stylize", config_name="stylize")
def main(cfg: DictConfig) -> None:
    from fast_nst.cli import EXIT_FAILURE, run_cli
    from fast_nst.stylize_cli import run

    failed = run_cli(lambda: run(cfg))
    if failed:
        sys.exit(EXIT_FAILURE)


if __name__ == "__main__":
    main()
