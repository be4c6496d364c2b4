"""Entry points of the installed package: `fast-nst-train`, `fast-nst-stylize`, `fast-nst-optimize`
(console scripts) and `python -m fast_nst train|stylize|optimize ...`. They read the configs from
the project root (`fast_nst.io.images.PROJECT_ROOT`: the checkout, or the copy inside an installed
wheel), so they work from any folder. The checkout's train.py / stylize.py / optimize.py run the
same bodies (`run_*`) with their own relative config paths."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from fast_nst.cli import hydra_main
from fast_nst.io.paths import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


def run_train(cfg: DictConfig) -> None:
    from fast_nst.cli import run_cli
    from fast_nst.training.run import train as train_fn

    run_cli(lambda: train_fn(cfg))


def run_stylize(cfg: DictConfig) -> None:
    from fast_nst.cli import EXIT_FAILURE, run_cli
    from fast_nst.stylize.command import run

    if run_cli(lambda: run(cfg)):
        sys.exit(EXIT_FAILURE)  # some inputs failed; each was named


def run_optimize(cfg: DictConfig) -> None:
    from fast_nst.cli import run_cli
    from fast_nst.optimize.command import run

    run_cli(lambda: run(cfg))


@hydra_main(version_base="1.3", config_path=str(CONF), config_name="train")
def train(cfg: DictConfig) -> None:
    run_train(cfg)


@hydra_main(version_base="1.3", config_path=str(CONF / "stylize"), config_name="stylize")
def stylize(cfg: DictConfig) -> None:
    run_stylize(cfg)


@hydra_main(version_base="1.3", config_path=str(CONF / "optimize"), config_name="optimize")
def optimize(cfg: DictConfig) -> None:
    run_optimize(cfg)


COMMANDS = {"train": train, "stylize": stylize, "optimize": optimize}


def main(argv: list[str] | None = None) -> None:
    """`python -m fast_nst COMMAND key=value ...`: the command's Hydra app on the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m fast_nst {{{','.join(COMMANDS)}}} [key=value ...] [--help]\n"
              "  (the same as fast-nst-train / fast-nst-stylize / fast-nst-optimize)", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    sys.argv = [f"fast-nst-{argv[0]}", *argv[1:]]  # Hydra parses sys.argv
    COMMANDS[argv[0]]()
