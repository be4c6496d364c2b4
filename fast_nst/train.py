"""Training entry: build data, module, loggers, callbacks and Trainer from a composed config."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fast_nst.callbacks import ExportCallback
from fast_nst.errors import MissingPathError
from fast_nst.lit_module import StyleTransferModule
from fast_nst.validate import validate_train

log = logging.getLogger("fast_nst")


def resolve_resume(ckpt_path: str | None, callbacks: list) -> str | None:
    """`last` means this style's `last.ckpt` in the ModelCheckpoint folder."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        dirs = [Path(cb.dirpath) for cb in callbacks
                if isinstance(cb, pl.callbacks.ModelCheckpoint) and cb.dirpath]
        for d in dirs:
            if (d / "last.ckpt").is_file():
                return str(d / "last.ckpt")
        raise MissingPathError(f"ckpt_path=last: no last.ckpt in {[str(d) for d in dirs]}; "
                                "nothing to resume for this style (start without ckpt_path)")
    if not Path(ckpt_path).is_file():
        raise MissingPathError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


def _quiet_known_warnings() -> None:
    # The frozen VGG is in eval mode on purpose, and small folders have fewer batches per epoch
    # than the logging interval; neither is a problem, so don't alarm users with them.
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


def train(cfg: DictConfig) -> dict:
    """Fit and export. Under DDP every process runs this; only global rank zero writes the export
    and logs, so on other ranks `export` is None (`rank` says which process returned)."""
    validate_train(cfg)  # bad options fail here, before the VGG, the data scan or the model
    logging.getLogger("fast_nst").setLevel(logging.INFO)
    _quiet_known_warnings()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, seed=cfg.seed)
    module = StyleTransferModule(model=cfg.model, loss=cfg.loss, loss_net=cfg.loss_net,
                                 style=cfg.style, optim=cfg.optim, perf=cfg.get("perf"))
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c]
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_resume(cfg.ckpt_path, callbacks))
    export = next((cb.path for cb in callbacks if isinstance(cb, ExportCallback)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if export:
        log.info("done: %s  ->  python stylize.py ckpt=%s input=PHOTO", export, export)
    return {"export": export, "metrics": metrics, "global_step": trainer.global_step,
            "skipped_images": len(getattr(datamodule, "skipped", [])),
            "rank": trainer.global_rank, "world_size": trainer.world_size}
