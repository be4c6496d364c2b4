"""Train a per-style network: python train.py style=starry_night (see conf/train.yaml, --help)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from fast_nst.cli import run_cli
    from fast_nst.train import train

    run_cli(lambda: train(cfg))


if __name__ == "__main__":
    main()
