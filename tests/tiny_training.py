"""A LightningModule with no VGG, for tests of the training machinery around the model (data
reports, progress bar, checkpoint files): it takes real batches from the real data module and
logs loss terms under the same names as StyleTransferModule, in milliseconds a step."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class TinyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        out = self.conv(batch)
        content = (out - batch).pow(2).mean()
        tv = (out[..., 1:, :] - out[..., :-1, :]).abs().mean()
        loss = content + 0.1 * tv
        self.log_dict({"train/content": content, "train/tv": tv, "train/loss": loss}, prog_bar=True,
                      on_step=True, batch_size=batch.shape[0])
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/loss", (self.conv(batch) - batch).pow(2).mean(), batch_size=batch.shape[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)
