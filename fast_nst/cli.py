"""One convention for the entry points: a user error is one line on stderr, no traceback
(HYDRA_FULL_ERROR=1 shows it), and the exit code says what happened: 0 success, 1 failure
(some inputs failed, training stopped), 2 bad usage or configuration."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable

from fast_nst.io.errors import FastNSTError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_cli(fn: Callable[[], object]) -> object:
    """Returns `fn()`; a FastNSTError becomes `error: <message>` on stderr and its exit code.
    SIGTERM is handled as Ctrl-C (the temporary file of a write in progress is removed, instead
    of being left behind by the default kill), and either one is one line and exit 1 (training
    handles both itself while it runs: fast_nst.training.guards.StopOnSignal)."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return fn()
    except FastNSTError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print("\nerror: stopped by Ctrl-C or SIGTERM; every file written so far is complete (none is left "
              "half-written)", file=sys.stderr, flush=True)
        sys.exit(EXIT_FAILURE)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def expand_home(argv: list[str]) -> list[str]:
    """`key=~/photos` with `~` expanded as the shell would have (it does not after a dotted key,
    and Hydra's grammar cannot read a bare `~`): what the user meant, before Hydra parses it."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and value.startswith("~") and "$" not in value:
            arg = f"{key}={os.path.expanduser(value)}"
        out.append(arg)
    return out


def check_overrides(argv: list[str]) -> str | None:
    """The one-line error for the first `key=value` argument Hydra's override grammar cannot read
    (Hydra would print LexerNoViableAltException and a grammar link), with how to quote it; None
    when all parse. Non-ASCII letters are the common case: Hydra reads unquoted values as ASCII."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = None
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue  # --help, --cfg job, -m: Hydra's own flags
        parser = parser or OverridesParser.create()
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            key, _, value = arg.partition("=")
            why = ("Hydra reads unquoted values in ASCII only" if not value.isascii() else
                   "Hydra's override grammar cannot read this value unquoted (it holds characters such as "
                   "( ) [ ] { } , = ' \" that have a meaning there)")
            quoted = f"'{key}=\"{value}\"'" if "'" not in value and '"' not in value else f"{key}=\"...\" (escape the quotes)"
            return (f"{arg}: {why}; quote the value for Hydra, inside shell quotes so the shell keeps them: "
                    f"{quoted}")
    return None


def _overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("-") and "=" in a]


def check_choices(config_dir: str, config_name: str, argv: list[str]) -> str | None:
    """The one-line error for an option name that the config does not have (`inptu=x`: Hydra
    would advise `+inptu=x`, the wrong fix) or a group choice that does not exist (`style=udine`:
    Hydra prints its config search path), naming the valid names; None when the command line
    composes. Composes the config once more, without running anything (a multirun's sweeps are
    left to Hydra)."""
    import difflib
    import re

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf import OmegaConf

    overrides = _overrides(argv)
    if not overrides or any(a in ("-m", "--multirun") for a in argv):
        return None
    hydra_instance = GlobalHydra.instance()
    was_initialized = hydra_instance.is_initialized()
    try:
        if not was_initialized:
            with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
                compose(config_name, overrides, return_hydra_config=True)
    except MissingConfigException as e:
        found = re.search(r"Could not find '([^']+)/([^'/]+)'", str(e))
        if not found:
            return str(e).splitlines()[0]
        group, choice = found.groups()
        options = sorted(e.options or [])
        close = difflib.get_close_matches(choice, options, n=1)
        return (f"{group}={choice}: no such choice" + (f" (did you mean {group}={close[0]}?)" if close else "")
                + f"; the choices are {', '.join(options)}")
    except ConfigCompositionException as e:
        found = re.search(r"Could not override '([^']+)'", str(e))
        if not found:
            return " ".join(str(e).split())
        key = found.group(1)
        parent, _, leaf = key.rpartition(".")
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name, [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")])
        node = OmegaConf.select(cfg, parent) if parent else cfg
        names = sorted(k for k in node.keys() if not str(k).startswith("_")) if OmegaConf.is_dict(node) else []
        if not parent:  # config groups are options too (style=NAME)
            names = sorted(set(names) | {d.name for d in Path(config_dir).iterdir()
                                         if d.is_dir() and not (d / f"{d.name}.yaml").is_file()})
        close = difflib.get_close_matches(leaf, names, n=1)
        where = f"{parent}." if parent else ""
        return (f"{key}: no such option" + (f" (did you mean {where}{close[0]}?)" if close else "")
                + f"; the options{' of ' + parent if parent else ''} are {', '.join(names)}")
    except Exception:  # noqa: BLE001 - anything else is Hydra's to report, as it always has
        return None
    finally:
        if not was_initialized:
            GlobalHydra.instance().clear()
    return None


def other_roots(config_dir: str) -> set[str]:
    """Folders of `config_dir` that are another command's config root (conf/stylize/ holds
    stylize.yaml), not config groups of this command."""
    return {d.name for d in Path(config_dir).iterdir() if d.is_dir() and (d / f"{d.name}.yaml").is_file()}


def without_other_roots(help_text: str, config_dir: str) -> str:
    """Hydra's --help with the lines of other commands' config roots left out of its list of
    config groups (train.py's conf/ also holds conf/stylize/, conf/app/, ...)."""
    roots = other_roots(config_dir)
    if not roots:
        return help_text
    keep = [line for line in help_text.splitlines(keepends=True)
            if not (":" in line and line.split(":", 1)[0].split("/", 1)[0] in roots and not line.startswith(" "))]
    return "".join(keep)


def hydra_main(**kwargs) -> Callable:
    """`hydra.main(**kwargs)` for the entry points, with the command line checked first: an
    argument Hydra cannot parse, an option the config lacks or a group choice that does not exist
    is one line naming what would do and exit 2, like every other usage error, instead of
    Hydra's parser trace or config search path; `~` in a value is the home folder; `--help` lists
    this command's config groups only."""
    import contextlib
    import io

    import hydra

    config_dir, config_name = kwargs.get("config_path"), kwargs.get("config_name")

    def decorate(fn: Callable) -> Callable:
        app = hydra.main(**kwargs)(fn)

        @functools.wraps(fn)
        def run(*args, **kw):
            if args or kw:
                return app(*args, **kw)
            sys.argv[1:] = expand_home(sys.argv[1:])
            problem = check_overrides(sys.argv[1:])
            if problem is None and config_dir and Path(config_dir).is_absolute():
                problem = check_choices(config_dir, config_name, sys.argv[1:])
            if problem:
                print(f"error: {problem}", file=sys.stderr, flush=True)
                sys.exit(EXIT_USAGE)
            if config_dir and any(a in ("-h", "--help") for a in sys.argv[1:]):
                out = io.StringIO()
                try:
                    with contextlib.redirect_stdout(out):
                        return app()  # Hydra prints the help and exits
                finally:
                    sys.stdout.write(without_other_roots(out.getvalue(), config_dir))
            return app()

        return run

    return decorate
