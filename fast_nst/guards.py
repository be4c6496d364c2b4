"""Stop training at the first non-finite loss term or gradient, before it reaches the weights."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from fast_nst.errors import NonFiniteLossError

log = logging.getLogger("fast_nst")


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _scalars(terms: dict) -> dict[str, float]:
    """The scalar loss terms (a kind may also return per-image ones, e.g. style_per_image)."""
    return {k: float(v) for k, v in terms.items() if torch.as_tensor(v).numel() == 1}


class NonFiniteLossGuard(pl.Callback):
    """Checks the loss before backward and the gradients before the optimizer step (all ranks
    agree, so DDP stops together). On the first NaN/inf it saves `last.ckpt` of the last good step
    (the weights are untouched: the bad step never ran) and raises NonFiniteLossError naming the
    term, the step and what to try; ExportCallback then exports those weights.

    Gradients are not checked under 16-mixed precision, where the gradient scaler expects inf
    gradients now and then and skips those steps itself.
    """

    def __init__(self, check_gradients: bool):
        self.check_gradients = check_gradients

    def on_before_backward(self, trainer: pl.Trainer, module: pl.LightningModule, loss: torch.Tensor) -> None:
        if trainer.strategy.reduce_boolean_decision(not _finite(loss.detach()), all=False):
            terms = _scalars(getattr(module, "last_terms", None) or {"loss": loss})
            bad = [k for k, v in terms.items() if not torch.isfinite(torch.tensor(v))] or ["loss"]
            self._stop(trainer, module, "non-finite loss term " + ", ".join(f"{k} = {terms.get(k)}" for k in bad),
                       terms)

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer) -> None:
        if not self.check_gradients or str(trainer.precision).startswith("16"):
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros(())
        if trainer.strategy.reduce_boolean_decision(not _finite(norm), all=False):
            terms = _scalars(getattr(module, "last_terms", None) or {})
            self._stop(trainer, module, "the gradient is not finite (the loss was)", terms)

    def _stop(self, trainer: pl.Trainer, module: pl.LightningModule, what: str, terms: dict) -> None:
        step = trainer.global_step + 1  # the step that failed; global_step steps completed
        weights_ok = trainer.strategy.reduce_boolean_decision(
            all(_finite(p.detach()) for p in module.parameters()), all=True)
        saved = None
        ckpt_cb = next((cb for cb in trainer.checkpoint_callbacks
                        if isinstance(cb, pl.callbacks.ModelCheckpoint) and cb.dirpath), None)
        if weights_ok and ckpt_cb is not None and trainer.global_step > 0:
            saved = Path(ckpt_cb.dirpath) / f"{ckpt_cb.CHECKPOINT_NAME_LAST}{ckpt_cb.FILE_EXTENSION}"
            trainer.save_checkpoint(saved)
        hp = getattr(module, "hparams", {})
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        sw = (hp.get("loss") or {}).get("style_weight") if hasattr(hp, "get") else None
        shown = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
        advice = [f"a lower learning rate (optim.lr, now {lr:g})" if lr is not None else "a lower optim.lr"]
        advice.append(f"a lower style weight (loss.style_weight, now {sw:g})" if sw is not None
                      else "a lower loss.style_weight")
        if "16" in str(trainer.precision):
            advice.append("trainer.precision=32")
        if saved:
            kept = (f"Nothing is lost: {saved} holds step {trainer.global_step}, the last good one "
                    f"(ckpt_path={saved} resumes it, with its optimizer state and learning rate)")
        elif not weights_ok:
            kept = "The weights were already non-finite, so no checkpoint or export was written over the last good ones"
        else:
            kept = "No checkpoint was written (no ModelCheckpoint callback, or no step completed)"
        msg = (f"training stopped at step {step}: {what}" + (f" ({shown})" if shown else "")
               + f". {kept}. Likely cause: the step size or the style term is too large; restart with "
               + " or ".join(advice) + ".")
        raise NonFiniteLossError(msg, weights_finite=weights_ok)
