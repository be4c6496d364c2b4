"""One convention for the entry points: a user error is one line on stderr, no traceback
(HYDRA_FULL_ERROR=1 shows it), and the exit code says what happened: 0 success, 1 failure
(some inputs failed, training stopped), 2 bad usage or configuration."""

from __future__ import annotations

import os
import sys
from typing import Callable

from fast_nst.errors import FastNSTError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def run_cli(fn: Callable[[], object]) -> object:
    """Returns `fn()`; a FastNSTError becomes `error: <message>` on stderr and its exit code."""
    try:
        return fn()
    except FastNSTError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
