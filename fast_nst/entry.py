"""The command line: `fast-nst COMMAND key=value ...` (also `python -m fast_nst COMMAND ...`).

Every command is a Hydra app on its own config root in conf/ (the checkout's, or the copy inside an
installed wheel: fast_nst.io.paths), so it runs from any folder; `fast-nst COMMAND --help` lists
its options. All follow fast_nst.cli's convention: a user error is one line, exit 0 success,
1 failure, 2 bad usage. The checkout's train.py, stylize.py, optimize.py and app.py are aliases
of `fast-nst train|stylize|optimize|app`, and so are the fast-nst-train, fast-nst-stylize,
fast-nst-optimize, fast-nst-export and fast-nst-stylize-dataset console scripts.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

from omegaconf import DictConfig

from fast_nst.cli import EXIT_FAILURE, EXIT_USAGE, hydra_main, run_cli
from fast_nst.io.paths import CONF


@dataclass(frozen=True)
class Command:
    root: str        # its config folder under conf/ ("" = conf/ itself)
    config: str      # its config file in that folder
    body: str        # "module:function" run with the composed config
    summary: str     # one line for `fast-nst --help`
    failures_exit: bool = False  # the body returns a count of failed inputs (or checks): exit 1 when any
    env: tuple[tuple[str, str], ...] = ()  # environment defaults, set before torch is imported


COMMANDS: dict[str, Command] = {
    "train": Command("", "train", "fast_nst.training.run:train",
                     "train a network on a painting (or several, or any) and export it"),
    "stylize": Command("stylize", "stylize", "fast_nst.stylize.command:run",
                       "stylize photos, folders, videos and huge images with a trained network",
                       failures_exit=True),
    "optimize": Command("optimize", "optimize", "fast_nst.optimize.command:run",
                        "stylize one photo by optimising its pixels (Gatys et al.), no network"),
    "export": Command("export", "export", "fast_nst.stylize.export_command:run",
                      "write an export's ONNX graphs (fp32, int8) beside it, checked against PyTorch",
                      failures_exit=True),
    "stylize-dataset": Command("stylize_dataset", "stylize_dataset", "fast_nst.dataset.job:run",
                               "stylize a whole dataset on Ray Data, a painting per image, resumable "
                               "(the scale extra)", failures_exit=True),
    "quality": Command("optimize", "quality", "fast_nst.optimize.quality_command:run",
                       "how many L-BFGS iterations one forward pass of a network equals"),
    "app": Command("app", "app", "fast_nst.app.server:serve",
                   "the web page: upload a photo or a video, pick a network and a painting",
                   # OpenMP's idle threads sleep instead of spinning: the page shares the CPU with the
                   # browser and other requests, and spinning threads slowed the Live tab ~20x on a busy
                   # 2-core machine (docs/stylizing/web-page.md)
                   env=(("OMP_WAIT_POLICY", "PASSIVE"),)),
}


def run_command(name: str, cfg: DictConfig) -> None:
    """The body of command `name` on a composed config, under the exit-code convention."""
    command = COMMANDS[name]
    module, _, function = command.body.partition(":")
    body = getattr(importlib.import_module(module), function)
    if run_cli(lambda: body(cfg)) and command.failures_exit:
        sys.exit(EXIT_FAILURE)  # some inputs failed; each was named


def app_of(name: str):
    """Command `name` as a Hydra app: call it with no arguments, it reads sys.argv."""
    command = COMMANDS[name]

    @hydra_main(version_base="1.3", config_path=str(CONF / command.root), config_name=command.config)
    def app(cfg: DictConfig) -> None:
        run_command(name, cfg)

    return app


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {n:<{width}}  {c.summary}" for n, c in COMMANDS.items()]
    return ("usage: fast-nst COMMAND [key=value ...] [--help]   (or: python -m fast_nst COMMAND ...)\n\n"
            "commands:\n" + "\n".join(lines) + "\n\n"
            "fast-nst COMMAND --help lists a command's options; every option is commented in conf/.")


# the command of this process, for the processes distributed training starts (see `main`)
COMMAND_ENV = "FAST_NST_COMMAND"


def main(argv: list[str] | None = None) -> None:
    """`fast-nst COMMAND key=value ...`: the command's Hydra app on the remaining arguments."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if (not argv or argv[0] not in COMMANDS) and os.environ.get("LOCAL_RANK") \
            and os.environ.get(COMMAND_ENV) in COMMANDS:
        # a process Lightning starts for distributed training reruns this program (`python
        # sys.argv[0] ...` or `python -m fast_nst ...`) with the options but not the command word,
        # which its parent left in the environment
        argv = [os.environ[COMMAND_ENV], *argv]
    if not argv or argv[0] not in COMMANDS:
        asked = bool(argv) and argv[0] in ("-h", "--help", "help")
        if argv and not asked:
            print(f"error: no command {argv[0]!r}", file=sys.stderr)
        print(usage(), file=sys.stdout if asked else sys.stderr)
        sys.exit(0 if asked else EXIT_USAGE)
    for key, value in COMMANDS[argv[0]].env:
        os.environ.setdefault(key, value)
    os.environ[COMMAND_ENV] = argv[0]
    # Hydra parses sys.argv[1:]; argv[0] stays the program that was run, which Lightning's DDP
    # launcher starts again for the other ranks (a made-up name there is a file that does not exist)
    sys.argv = [sys.argv[0], *argv[1:]]
    app_of(argv[0])()


def train() -> None:
    """The fast-nst-train console script: `fast-nst train`."""
    main(["train", *sys.argv[1:]])


def stylize() -> None:
    """The fast-nst-stylize console script: `fast-nst stylize`."""
    main(["stylize", *sys.argv[1:]])


def optimize() -> None:
    """The fast-nst-optimize console script: `fast-nst optimize`."""
    main(["optimize", *sys.argv[1:]])


def export() -> None:
    """The fast-nst-export console script: `fast-nst export`."""
    main(["export", *sys.argv[1:]])


def stylize_dataset() -> None:
    """The fast-nst-stylize-dataset console script: `fast-nst stylize-dataset`."""
    main(["stylize-dataset", *sys.argv[1:]])
