"""Train for a time budget, checkpointing every so many minutes (time to quality).

`TimeBudget` (conf/callbacks/default.yaml `time_budget`) stops training after `minutes` and saves a
checkpoint every `every` minutes as `<dirpath>/min<minutes>.ckpt`, with `timeline.json` beside them:
for each one the minutes, step, wall seconds, CPU seconds and load average at that moment.
`fast-nst quality time_to_quality=...` runs a recipe this way and turns the checkpoints into
"equivalent L-BFGS iterations vs minutes of training".

Two clocks. `wall`: seconds since the first training step, what a user waits. `cpu`: the CPU
seconds of the training process and its data-loading workers, times `cpu_scale`; on a machine
shared with other jobs this is the steadier measure (a 1-thread run's CPU seconds hardly depend on
the load, its wall time does), and `cpu_scale` converts it to seconds of another setting, e.g. an
idle machine's wall seconds (docs/training/own-painting.md says how it was calibrated).
Time spent writing this callback's own checkpoints is not counted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import pytorch_lightning as pl

from fast_nst.io.files import atomic_write

log = logging.getLogger("fast_nst")

CLOCKS = ("wall", "cpu")


def process_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system, all threads) of this process, its finished children and, on
    Linux, its live children (DataLoader workers)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    me = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def checkpoint_name(minutes: float) -> str:
    """Fixed width, so names sort in time order: min0001.000.ckpt."""
    return f"min{minutes:08.3f}.ckpt"


class TimeBudget(pl.Callback):
    """`minutes`: stop after this much training (null: no limit); `every`: minutes between
    checkpoints (null: none); `clock`: wall | cpu; `cpu_scale`: clock=cpu counts CPU seconds x
    this; `dirpath`: where the checkpoints and timeline.json go."""

    def __init__(self, minutes: float | None = None, every: float | None = None, clock: str = "wall",
                 cpu_scale: float = 1.0, dirpath: str = "checkpoints/runs/minutes"):
        if clock not in CLOCKS:
            raise ValueError(f"callbacks.time_budget.clock={clock}: must be one of {', '.join(CLOCKS)}")
        for key, v in (("minutes", minutes), ("every", every)):
            if v is not None and not float(v) > 0:
                raise ValueError(f"callbacks.time_budget.{key}={v}: must be a positive number of minutes (or null)")
        if not float(cpu_scale) > 0:
            raise ValueError(f"callbacks.time_budget.cpu_scale={cpu_scale}: must be positive")
        self.minutes = None if minutes is None else float(minutes)
        self.every = None if every is None else float(every)
        self.clock, self.cpu_scale, self.dirpath = clock, float(cpu_scale), Path(dirpath)
        self.timeline: list[dict] = []
        self._before = 0.0          # clock seconds of earlier sessions (resume)
        self._start: tuple[float, float] | None = None  # (wall, cpu) at this session's first step
        self._paused = (0.0, 0.0)   # (wall, cpu) spent writing our checkpoints, not counted

    @property
    def active(self) -> bool:
        return self.minutes is not None or self.every is not None

    # -- the clock ---------------------------------------------------------------------------
    def _raw(self) -> tuple[float, float]:
        return time.perf_counter(), process_cpu_seconds()

    def seconds(self) -> float:
        """Training seconds so far on this callback's clock (earlier sessions included)."""
        if self._start is None:
            return self._before
        wall, cpu = self._raw()
        if self.clock == "wall":
            return self._before + wall - self._start[0] - self._paused[0]
        return self._before + (cpu - self._start[1] - self._paused[1]) * self.cpu_scale

    def wall_seconds_left(self) -> float | None:
        """Wall seconds until the budget ends, estimated (clock=cpu: at this session's ratio of wall
        to clock seconds); None without a budget or before the first step."""
        if self.minutes is None or self._start is None:
            return None
        clock = self.seconds()
        left = max(self.minutes * 60.0 - clock, 0.0)
        if self.clock == "wall":
            return left
        wall = time.perf_counter() - self._start[0] - self._paused[0]
        spent = clock - self._before
        return left * wall / spent if spent > 0 else None

    def state_dict(self) -> dict:
        return {"seconds": self.seconds(), "timeline": self.timeline}

    def load_state_dict(self, state_dict: dict) -> None:
        self._before = float(state_dict.get("seconds", 0.0))
        self.timeline = list(state_dict.get("timeline", []))

    # -- hooks -------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.active:
            self._start = self._raw()
            if self.minutes is not None:
                log.info("time budget: %.3g minutes of training (%s clock)%s", self.minutes, self.clock,
                         f", a checkpoint every {self.every:g} min in {self.dirpath}" if self.every else "")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if not self.active or self._start is None:
            return
        minutes = trainer.strategy.broadcast(self.seconds() / 60.0)
        over = self.minutes is not None and minutes >= self.minutes
        if self.every is not None:
            # the last mark passed (a step longer than `every` skips the marks inside it); at the
            # end of the budget, the budget itself
            mark = self.minutes if over else math.floor(minutes / self.every + 1e-9) * self.every
            # the timeline keeps minutes rounded to 6 decimals: compare within a thousandth of `every`
            last = self.timeline[-1]["minutes"] if self.timeline else 0.0
            if mark > last + self.every * 1e-3:
                self._save(trainer, mark)
        if over:
            log.info("time budget: %.3g minutes reached at step %d; stopping", self.minutes, trainer.global_step)
            trainer.should_stop = True

    def _save(self, trainer: pl.Trainer, mark: float) -> None:
        t0 = self._raw()
        wall_s = t0[0] - self._start[0] - self._paused[0]
        cpu_s = t0[1] - self._start[1] - self._paused[1]
        path = self.dirpath / checkpoint_name(mark)
        trainer.save_checkpoint(str(path))
        entry = {"ckpt": path.name, "minutes": round(mark, 6), "clock_minutes": round(self.seconds() / 60.0, 4),
                 "step": trainer.global_step, "wall_seconds": round(wall_s, 2), "cpu_seconds": round(cpu_s, 2),
                 "clock": self.clock, "cpu_scale": self.cpu_scale,
                 "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
        self.timeline.append(entry)
        if trainer.is_global_zero:
            atomic_write(self.dirpath / "timeline.json", lambda tmp: tmp.write_text(json.dumps(self.timeline, indent=1)))
        t1 = self._raw()
        self._paused = (self._paused[0] + t1[0] - t0[0], self._paused[1] + t1[1] - t0[1])
