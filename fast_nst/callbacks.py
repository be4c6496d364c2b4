"""Lightning callbacks: export the per-style network when training ends."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

from fast_nst.errors import NonFiniteLossError
from fast_nst.export import export_network

log = logging.getLogger("fast_nst")


class ExportCallback(pl.Callback):
    """Writes `<dir>/<name>.safetensors` on rank zero at the end of fit (also after Ctrl-C, and
    after NonFiniteLossGuard stopped a run whose weights are still the last good ones, so an
    interrupted run still leaves a usable model) and logs it as a W&B artifact when W&B is on."""

    def __init__(self, dir: str = "checkpoints", name: str = "model", log_artifact: bool = True):
        self.dir, self.name, self.log_artifact = Path(dir), name, log_artifact
        self.path: Path | None = None

    def _export(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.global_step == 0:
            return
        hp = module.hparams
        self.path = export_network(
            module.net, self.dir / f"{self.name}.safetensors", style=dict(hp.style), loss=dict(hp.loss),
            vgg_weights=module.vgg_source,
            extra={"global_step": trainer.global_step, "loss_net": dict(hp.loss_net),
                   "image_size": getattr(trainer.datamodule, "hparams", {}).get("image_size")})
        log.info("exported %s (step %d)", self.path, trainer.global_step)
        if self.log_artifact:
            from pytorch_lightning.loggers import WandbLogger

            for lg in trainer.loggers:
                if isinstance(lg, WandbLogger):
                    import wandb

                    art = wandb.Artifact(f"fast_nst-{self.name}", type="model",
                                         metadata={"style": hp.style.get("name"), "step": trainer.global_step})
                    art.add_file(str(self.path))
                    lg.experiment.log_artifact(art)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._export(trainer, module)

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) or (
                isinstance(exception, NonFiniteLossError) and exception.weights_finite):
            self._export(trainer, module)
