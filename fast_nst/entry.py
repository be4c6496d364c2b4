"""Entry points of the installed package: `fast-nst-train`, `fast-nst-stylize`, `fast-nst-optimize`,
`fast-nst-export` (console scripts) and `python -m fast_nst train|stylize|optimize|export ...`. They read the configs from
the project root (`fast_nst.images.PROJECT_ROOT`: the checkout, or the copy inside an installed
wheel), so they work from any folder. The checkout's train.py / stylize.py / optimize.py run the
same bodies (`run_*`) with their own relative config paths."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from fast_nst.cli import hydra_main
from fast_nst.paths import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


def run_train(cfg: DictConfig) -> None:
    from fast_nst.cli import run_cli
    from fast_nst.train import train as train_fn

    run_cli(lambda: train_fn(cfg))


def run_stylize(cfg: DictConfig) -> None:
    from fast_nst.cli import EXIT_FAILURE, run_cli
    from fast_nst.stylize_cli import run

    if run_cli(lambda: run(cfg)):
        sys.exit(EXIT_FAILURE)  # some inputs failed; each was named


def run_export(cfg: DictConfig) -> None:
    from fast_nst.cli import EXIT_FAILURE, run_cli
    from fast_nst.export_cli import run

    if run_cli(lambda: run(cfg)):
        sys.exit(EXIT_FAILURE)  # a graph failed its check against PyTorch; the line said which


def run_optimize(cfg: DictConfig) -> None:
    from fast_nst.cli import run_cli
    from fast_nst.optimize_cli import run

    run_cli(lambda: run(cfg))


def run_stylize_dataset(cfg: DictConfig) -> None:
    from fast_nst.cli import EXIT_FAILURE, run_cli
    from fast_nst.dataset.job import run

    if run_cli(lambda: run(cfg)):
        sys.exit(EXIT_FAILURE)  # some images failed (status=failed in the manifest); a rerun retries them


@hydra_main(version_base="1.3", config_path=str(CONF), config_name="train")
def train(cfg: DictConfig) -> None:
    run_train(cfg)


@hydra_main(version_base="1.3", config_path=str(CONF / "stylize"), config_name="stylize")
def stylize(cfg: DictConfig) -> None:
    run_stylize(cfg)


@hydra_main(version_base="1.3", config_path=str(CONF / "optimize"), config_name="optimize")
def optimize(cfg: DictConfig) -> None:
    run_optimize(cfg)


@hydra_main(version_base="1.3", config_path=str(CONF / "export"), config_name="export")
def export(cfg: DictConfig) -> None:
    run_export(cfg)


@hydra_main(version_base="1.3", config_path=str(CONF / "stylize_dataset"), config_name="stylize_dataset")
def stylize_dataset(cfg: DictConfig) -> None:
    run_stylize_dataset(cfg)


COMMANDS = {"train": train, "stylize": stylize, "optimize": optimize, "export": export,
            "stylize-dataset": stylize_dataset}


def main(argv: list[str] | None = None) -> None:
    """`python -m fast_nst COMMAND key=value ...`: the command's Hydra app on the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m fast_nst {{{','.join(COMMANDS)}}} [key=value ...] [--help]\n"
              "  (the same as fast-nst-train / fast-nst-stylize / fast-nst-optimize / fast-nst-export / "
              "fast-nst-stylize-dataset)", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    sys.argv = [f"fast-nst-{argv[0]}", *argv[1:]]  # Hydra parses sys.argv
    COMMANDS[argv[0]]()
