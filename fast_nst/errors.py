"""The project's error types: what a user can fix gets one of these, with the option to change."""

from __future__ import annotations


class FastNSTError(Exception):
    """A failure explained in its message; the CLIs print it on one line and exit `exit_code`."""

    exit_code = 1


class ConfigError(FastNSTError, ValueError):
    """Bad usage or configuration, found before any slow work: exit 2."""

    exit_code = 2


class NonFiniteLossError(FastNSTError):
    """Training met a NaN/inf loss term or gradient and stopped before it reached the weights.
    `weights_finite`: the network still holds the last good step (so it was checkpointed and may
    be exported)."""

    def __init__(self, message: str, weights_finite: bool = True):
        super().__init__(message)
        self.weights_finite = weights_finite


class MissingPathError(ConfigError, FileNotFoundError):
    """A file or folder named by an option does not exist: exit 2."""
