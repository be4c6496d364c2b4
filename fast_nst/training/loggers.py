"""Loggers: W&B that never fails without an account, and image grids for every logger kind."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import torch

log = logging.getLogger("fast_nst")


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        auth = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
        return bool(auth and auth[2])
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _launch_rank() -> int:
    """Global rank as known before the Trainer exists (env of torchrun / SLURM / Lightning's DDP)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0)


def wandb_logger(mode: str = "auto", **kwargs):
    """WandbLogger whose `mode: auto` goes online only when the user is logged in.

    Offline runs are written under `save_dir/wandb/` and can be uploaded later with `wandb sync`.
    """
    from pytorch_lightning.loggers import WandbLogger

    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_has_credentials() else "offline")
        if mode == "offline" and _launch_rank() == 0:
            save_dir = Path(kwargs.get("save_dir") or ".")
            log.warning("W&B: no account found (run `wandb login` to stream runs); logging offline "
                        "to %s. Upload later with: wandb sync %s", save_dir / "wandb",
                        save_dir / "wandb" / "offline-run-*")
    return WandbLogger(mode=mode, **kwargs)


def log_image_grid(trainer, key: str, images: torch.Tensor, step: int, nrow: int = 2,
                   caption: str = "content | stylized") -> None:
    """`images`: (N, 3, H, W) in [0, 1]; shown as rows of `nrow` (e.g. content | stylized).

    Rank zero only under DDP (other ranks' CSV loggers would write the same PNG paths)."""
    if not getattr(trainer, "is_global_zero", True):
        return
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
    from torchvision.utils import make_grid

    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[grid], step=step, caption=[caption])
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_image(key, grid, global_step=step)
        elif isinstance(lg, CSVLogger):
            from fast_nst.io.images import save_image_atomic, tensor_to_pil

            path = Path(lg.log_dir) / "samples" / f"step_{step:07d}.png"
            save_image_atomic(tensor_to_pil(grid), path)
            log.info("validation grid (%s): %s", caption, path)
