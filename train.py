"""Train a per-style network: python train.py style=starry_night (see conf/train.yaml, --help).
Installed, the same is `fast-nst-train` (fast_nst/entry.py)."""

from omegaconf import DictConfig

from fast_nst.cli import hydra_main


@hydra_main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from fast_nst.entry import run_train

    run_train(cfg)


if __name__ == "__main__":
    main()
