"""Reports the unusable training images that the data module skipped: a summary at the end of
every epoch that found new ones, the count in the logger, and the full list in a file.

The data module (`fast_nst.training.data.photos.PhotoDataModule`) does the skipping and records each file once,
whichever process met it; this callback only gathers and reports, so a run without it trains
the same. Configured in conf/callbacks/default.yaml (`data_report`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from fast_nst.training.data.photos import NAMED_IN_LOG, describe_skips
from fast_nst.io.files import atomic_write

log = logging.getLogger("fast_nst")

METRIC = "data/skipped_images"


class SkippedImagesReport(pl.Callback):
    """`path`: where the list of skipped files goes (tab-separated path and reason, rewritten
    atomically whenever it grows); `named`: how many files one log message names."""

    def __init__(self, path: str | None = None, named: int = NAMED_IN_LOG):
        self.path = Path(path) if path else None
        self.named = named
        self._reported: set[str] = set()

    @staticmethod
    def _skip_log(trainer: pl.Trainer):
        return getattr(trainer.datamodule, "skip_log", None) if trainer.datamodule is not None else None

    def _all_ranks(self, reasons: dict[str, str]) -> dict[str, str]:
        """Each DDP process meets the bad files of its own shard: merge their lists."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return dict(reasons)
        gathered: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, reasons)
        merged: dict[str, str] = {}
        for part in gathered:
            merged.update(part or {})
        return merged

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        skips = self._skip_log(trainer)
        if skips is None:
            return
        # drains the workers' queue (the loader has already warned per file); this process's count
        # (rank zero's under DDP), written to the logger every trainer.log_every_n_steps
        pl_module.log(METRIC, float(len(skips.reasons)), on_step=True, on_epoch=False, batch_size=1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        skips = self._skip_log(trainer)
        if skips is None:
            return
        reasons = self._all_ranks(skips.reasons)
        new = {p: r for p, r in reasons.items() if p not in self._reported}
        if not new:
            return
        self._reported.update(new)
        if trainer.is_global_zero:
            where = f"; all listed in {self.path}" if self.path else ""
            log.warning("epoch %d (step %d): %d unusable image file(s) found since the last summary, "
                        "%d in this run%s:\n%s",
                        trainer.current_epoch, trainer.global_step, len(new), len(reasons), where,
                        describe_skips(new, self.named))
            if self.path:
                text = "".join(f"{p}\t{r}\n" for p, r in sorted(reasons.items()))
                atomic_write(self.path, lambda tmp: tmp.write_text("path\treason\n" + text))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._reported and trainer.is_global_zero:
            where = f" (listed in {self.path})" if self.path else ""
            log.warning("%d unusable image file(s) were skipped in this run%s", len(self._reported), where)
