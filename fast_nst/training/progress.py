"""The training progress bar: global step out of max_steps, steps/s, time left and the loss terms.

Lightning's own bars count batches within an epoch; a style network trains for a number of
steps, and on a small photo folder an epoch is a couple of steps (the bundled set showed
`Epoch 99/-2` with `2/2`). This one counts what ends training.

In a terminal it is a live bar. Without one (CI, SLURM, nohup, a pipe) it writes one plain line
every `log_every_s` seconds and at the end, through the `fast_nst` logger, so the lines also land
in the run's log file. Configured in conf/callbacks/default.yaml (`progress_bar`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

log = logging.getLogger("fast_nst")


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StepProgressBar(ProgressBar):
    """`log_every_s`: seconds between plain progress lines when output is not a terminal.
    `console`: where the live bar draws (tests pass a recording console)."""

    def __init__(self, log_every_s: float, console: Console | None = None):
        super().__init__()
        self.log_every_s = log_every_s
        self._console = console
        self._enabled = True
        self._progress: Progress | None = None
        self._task = None
        self._total: float = math.inf
        self._first: tuple[int, float] | None = None  # (step, time) when the first step of this run ended
        self._last_line = -math.inf
        self._validating = False
        self._epoch = 0  # of the last step (Lightning counts the epoch on once a run's last one ends)

    # -- ProgressBar's contract --------------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.console.print(*args, **kwargs)
        else:
            print(*args, **kwargs)

    # -- what the line says ------------------------------------------------------------------
    def _rate(self, step: int) -> float:
        """Steps per second since the first step of this run ended (start-up and the first step's
        one-off costs excluded; validation pauses included, as they recur until the end)."""
        if self._first is None or step <= self._first[0]:
            return math.nan
        return (step - self._first[0]) / max(time.monotonic() - self._first[1], 1e-9)

    def _losses(self, trainer: pl.Trainer, module: pl.LightningModule) -> str:
        metrics = self.get_metrics(trainer, module)
        terms = [(k.removeprefix("train/"), v) for k, v in metrics.items()
                 if k.startswith("train/") and isinstance(v, (int, float))]
        terms.sort(key=lambda kv: (kv[0] != "loss", kv[0]))  # the total first
        return "  ".join(f"{k} {v:.3g}" for k, v in terms)

    def describe(self, trainer: pl.Trainer, module: pl.LightningModule) -> tuple[str, str]:
        """("step N/M", "x steps/s  ETA h:mm:ss  loss ... epoch E")."""
        step = trainer.global_step
        total = "?" if not math.isfinite(self._total) else str(int(self._total))
        rate = self._rate(step)
        left = (self._total - step) / rate if rate > 0 else math.nan
        # a time budget (callbacks.time_budget.minutes) may end the run before max_steps
        budgets = [cb.wall_seconds_left() for cb in trainer.callbacks if hasattr(cb, "wall_seconds_left")]
        budgets = [b for b in budgets if b is not None]
        if budgets:
            left = min(budgets + ([left] if math.isfinite(left) else []))
        speed = f"{rate:.2f} steps/s" if math.isfinite(rate) else "- steps/s"
        parts = [speed, f"ETA {format_duration(left)}", self._losses(trainer, module),
                 f"epoch {self._epoch}"]
        if self._validating:
            parts.append("validating")
        return f"step {step}/{total}", "  ".join(p for p in parts if p)

    # -- hooks ---------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not trainer.is_global_zero:
            self.disable()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        self._epoch = trainer.current_epoch
        self._total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 \
            else float(trainer.estimated_stepping_batches)
        console = self._console or Console()
        if console.is_terminal:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                                      TextColumn("{task.fields[info]}"), console=console)
            self._progress.start()
            step, info = self.describe(trainer, pl_module)
            self._task = self._progress.add_task(step, total=self._total if math.isfinite(self._total) else None,
                                                 completed=trainer.global_step, info=info)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._enabled:
            return
        if self._first is None:
            self._first = (trainer.global_step, time.monotonic())
        self._epoch = trainer.current_epoch
        self._show(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._enabled and not trainer.sanity_checking:
            self._validating = True
            self._show(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._validating = False

    def _show(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool = False) -> None:
        step, info = self.describe(trainer, pl_module)
        if self._progress is not None:
            self._progress.update(self._task, description=step, completed=trainer.global_step, info=info)
        elif final or time.monotonic() - self._last_line >= self.log_every_s:
            self._last_line = time.monotonic()
            log.info("%s  %s", step, info)

    def _stop(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        if self._first is not None:
            self._show(trainer, pl_module, final=True)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._enabled = False  # one final line, even if an exception follows the end of training

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop(trainer, pl_module)
