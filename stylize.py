"""Stylize images with an exported network: python stylize.py ckpt=NAME input=IMG (see conf/stylize/stylize.yaml)."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf/stylize", config_name="stylize")
def main(cfg: DictConfig) -> None:
    from fast_nst.kinds import StyleChoiceError
    from fast_nst.stylize_cli import run

    try:
        failed = run(cfg)
    except StyleChoiceError as e:
        print(f"error: ckpt={cfg.ckpt}: {e}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
