"""One convention for the entry points: a user error is one line on stderr, no traceback
(HYDRA_FULL_ERROR=1 shows it), and the exit code says what happened: 0 success, 1 failure
(some inputs failed, training stopped), 2 bad usage or configuration."""

from __future__ import annotations

import functools
import os
import sys
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


def hydra_main(**kwargs) -> Callable:
    """`hydra.main(**kwargs)` for the entry points, with the command line checked first: an
    argument Hydra cannot parse is one line (`check_overrides`) and exit 2, like every other
    usage error, instead of Hydra's parser trace."""
    import hydra

    def decorate(fn: Callable) -> Callable:
        app = hydra.main(**kwargs)(fn)

        @functools.wraps(fn)
        def run(*args, **kw):
            if not args and not kw:
                problem = check_overrides(sys.argv[1:])
                if problem:
                    print(f"error: {problem}", file=sys.stderr, flush=True)
                    sys.exit(EXIT_USAGE)
            return app(*args, **kw)

        return run

    return decorate
