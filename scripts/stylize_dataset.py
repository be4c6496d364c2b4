"""Stylize a whole folder of images with Ray Data, resumable, a painting per image:
python scripts/stylize_dataset.py input=DIR output=DIR ckpt=magenta paintings=DIR
(conf/stylize_dataset/stylize_dataset.yaml; the same as python -m fast_nst.dataset)."""

from omegaconf import DictConfig

from fast_nst.cli import hydra_main


@hydra_main(version_base="1.3", config_path="../conf/stylize_dataset", config_name="stylize_dataset")
def main(cfg: DictConfig) -> None:
    from fast_nst.entry import run_stylize_dataset

    run_stylize_dataset(cfg)


if __name__ == "__main__":
    main()
