"""The project's error types: what a user can fix gets one of these, with the option to change."""

from __future__ import annotations


def one_line(e: BaseException, limit: int = 300) -> str:
    """`Type: message` of an exception from a library, on one line and at most `limit` characters,
    for the end of a message of ours that names the file and what to do."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}" if text else type(e).__name__


class FastNSTError(Exception):
    """A failure explained in its message; the CLIs print it on one line and exit `exit_code`."""

    exit_code = 1


class ConfigError(FastNSTError, ValueError):
    """Bad usage or configuration, found before any slow work: exit 2."""

    exit_code = 2


class TrainingStopped(FastNSTError):
    """Training stopped before max_steps, for the reason in the message. `weights_usable`: the
    network holds weights worth exporting (the export callback writes them; otherwise nothing is
    written over the last good export)."""

    weights_usable = True


class NonFiniteLossError(TrainingStopped):
    """Training met a NaN/inf loss term or gradient and stopped before it reached the weights.
    `weights_finite`: the network still holds the last good step (so it was checkpointed and may
    be exported)."""

    def __init__(self, message: str, weights_finite: bool = True):
        super().__init__(message)
        self.weights_finite = self.weights_usable = weights_finite


class DivergedError(TrainingStopped):
    """The loss ran away, or the network's output went flat: nothing is exported."""

    weights_usable = False


class TrainingInterrupted(TrainingStopped):
    """Stopped by SIGINT (Ctrl-C) or SIGTERM (a scheduler) after last.ckpt was saved."""


class MissingPathError(ConfigError, FileNotFoundError):
    """A file or folder named by an option does not exist: exit 2."""


class OutputIsInputError(ConfigError):
    """An output would be written over an input, or inside a folder scanned for inputs: exit 2."""


class DiskFullError(FastNSTError):
    """A write failed for lack of space (ENOSPC, a quota): nothing partial was left; exit 1."""
