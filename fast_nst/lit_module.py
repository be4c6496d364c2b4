"""LightningModule: trains a TransformerNet for one painting against a frozen VGG loss network."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from fast_nst.images import load_rgb, pil_to_tensor
from fast_nst.losses import PerceptualLoss
from fast_nst.models.transformer import TransformerNet

log = logging.getLogger("fast_nst")


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


# Speed options of the training step (conf/perf/*.yaml). Defaults are the `fast` profile measured
# by scripts/bench.py; each one leaves the loss unchanged up to float rounding.
PERF_DEFAULTS = dict(
    vgg_pass="separate",   # separate | concat | full (see PerceptualLoss)
    channels_last=True,    # NHWC activations for the transformer and the VGG (oneDNN / cuDNN)
    compile=False,         # torch.compile the transformer and the VGG encoder
    compile_mode=None,     # torch.compile mode (None = default; "max-autotune" etc.)
)


def perf_options(perf: dict | None) -> dict:
    perf = dict(_plain(perf) or {})
    unknown = set(perf) - set(PERF_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown perf options {sorted(unknown)}; known: {sorted(PERF_DEFAULTS)}")
    return {**PERF_DEFAULTS, **perf}


class StyleTransferModule(pl.LightningModule):
    """Arguments mirror the config groups `model`, `loss`, `loss_net`, `style`, `optim`.

    The VGG weights are not part of Lightning checkpoints (they are re-read from
    `loss_net.weights`), which keeps checkpoints at the size of the small network.
    """

    def __init__(self, model: dict, loss: dict, loss_net: dict, style: dict, optim: dict,
                 perf: dict | None = None):
        super().__init__()
        model, loss, loss_net, style, optim = map(_plain, (model, loss, loss_net, style, optim))
        self.perf = perf_options(perf)
        self.save_hyperparameters(dict(model=model, loss=loss, loss_net=loss_net, style=style, optim=optim,
                                       perf=self.perf))
        self.net = TransformerNet(**model)
        self.criterion = PerceptualLoss.build(loss, loss_net, style_weight_scale=style.get("weight", 1.0),
                                              vgg_pass=self.perf["vgg_pass"])
        encoder = self.criterion.encoder
        style_img = pil_to_tensor(load_rgb(style["image"], max_size=loss.get("style_size"))).unsqueeze(0)
        self.criterion.set_style([style_img])
        self.memory_format = torch.channels_last if self.perf["channels_last"] else torch.contiguous_format
        if self.perf["channels_last"]:
            self.net.to(memory_format=torch.channels_last)
            encoder.to(memory_format=torch.channels_last)
        # What runs the step; `self.net` stays the plain module (export, checkpoints). Kept out of
        # the module tree so state_dict has no duplicate keys.
        net_fn = self.net
        if self.perf["compile"]:
            kw = {"mode": self.perf["compile_mode"]} if self.perf["compile_mode"] else {}
            net_fn = torch.compile(self.net, **kw)
            encoder.forward = torch.compile(encoder.forward, **kw)
        object.__setattr__(self, "_net_fn", net_fn)
        self.vgg_source = encoder.weights_source
        self.strict_loading = False  # checkpoints omit the frozen VGG
        self._val_grid: torch.Tensor | None = None
        self.last_terms: dict[str, torch.Tensor] = {}

    # -- checkpoint size: drop the frozen VGG (tens of MB) ------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith("criterion.encoder.")]:
            del sd[k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: torch.Tensor, stage: str) -> tuple[torch.Tensor, dict]:
        batch = batch.contiguous(memory_format=self.memory_format)
        out = self._net_fn(batch)
        terms = self.criterion(out, batch)
        bs = batch.shape[0]
        self.log_dict({f"{stage}/{k}": v.detach() for k, v in terms.items()},
                      prog_bar=(stage == "train"), batch_size=bs, sync_dist=(stage == "val"),
                      on_step=(stage == "train"), on_epoch=(stage == "val"))
        return out, terms

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        _, terms = self._step(batch, "train")
        self.last_terms = {k: v.detach() for k, v in terms.items()}  # named by NonFiniteLossGuard
        return terms["loss"]

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        out, _ = self._step(batch, "val")
        if batch_idx == 0:
            # content | stylized, one row per validation photo
            self._val_grid = torch.stack([batch, out.to(batch.dtype)], 1).flatten(0, 1).float().cpu()

    def on_validation_epoch_end(self) -> None:
        if self._val_grid is not None and not self.trainer.sanity_checking:
            from fast_nst.logging_utils import log_image_grid

            log_image_grid(self.trainer, "val/samples", self._val_grid, self.global_step)
        self._val_grid = None

    def configure_optimizers(self):
        o = self.hparams.optim
        opt = torch.optim.Adam(self.net.parameters(), lr=o["lr"], betas=tuple(o.get("betas", (0.9, 0.999))),
                               weight_decay=o.get("weight_decay", 0.0))
        sched = o.get("scheduler")
        if not sched:
            return opt
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else 1
        if sched == "cosine":
            s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=o["lr"] * 0.01)
        elif sched == "step":
            s = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.3)
        else:
            raise ValueError(f"optim.scheduler must be null, 'cosine' or 'step', got {sched!r}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}
