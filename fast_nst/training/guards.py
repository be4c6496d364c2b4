"""Guards that stop training with one message saying what happened and what to do:

NonFiniteLossGuard   the first NaN/inf loss term or gradient, before it reaches the weights;
DivergenceGuard      a loss that ran away without becoming NaN, or an export whose output is flat;
StopOnSignal         SIGINT (Ctrl-C) or SIGTERM (a scheduler): finish the step, save last.ckpt, stop.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch

from fast_nst.io.errors import DivergedError, NonFiniteLossError, TrainingInterrupted

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
        saved = save_last_checkpoint(trainer) if weights_ok else None
        shown = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
        if saved:
            kept = (f"Nothing is lost: {saved} holds step {trainer.global_step}, the last good one "
                    f"(ckpt_path={saved} resumes it, with its optimizer state and learning rate)")
        elif not weights_ok:
            kept = "The weights were already non-finite, so no checkpoint or export was written over the last good ones"
        else:
            kept = "No checkpoint was written (no ModelCheckpoint callback, or no step completed)"
        msg = (f"training stopped at step {step}: {what}" + (f" ({shown})" if shown else "")
               + f". {kept}. Likely cause: the step size or the style term is too large; restart with "
               + _advice(trainer, module) + ".")
        raise NonFiniteLossError(msg, weights_finite=weights_ok)


def _last_checkpoint_callback(trainer: pl.Trainer) -> pl.callbacks.ModelCheckpoint | None:
    return next((cb for cb in trainer.checkpoint_callbacks
                 if isinstance(cb, pl.callbacks.ModelCheckpoint) and cb.dirpath), None)


def save_last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """Save the state after the last completed step as the ModelCheckpoint folder's `last.ckpt`
    (what ckpt_path=last resumes); None when there is no such folder or no step completed. Every
    rank must call it (under DDP rank zero writes)."""
    cb = _last_checkpoint_callback(trainer)
    if cb is None or trainer.global_step == 0:
        return None
    path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    trainer.save_checkpoint(path)
    return path


def _advice(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """What to restart with: the learning rate and style weight, with their current values."""
    hp = getattr(module, "hparams", {})
    lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
    sw = (hp.get("loss") or {}).get("style_weight") if hasattr(hp, "get") else None
    advice = [f"a lower learning rate (optim.lr, now {lr:g})" if lr is not None else "a lower optim.lr"]
    advice.append(f"a lower style weight (loss.style_weight, now {sw:g})" if sw is not None
                  else "a lower loss.style_weight")
    if "16" in str(trainer.precision):
        advice.append("trainer.precision=32")
    return " or ".join(advice)


# Validation photos DivergenceGuard.vet_export looks at (at most)
VET_PHOTOS = 8
# Weight of the newest step in the running (log-domain) average of the loss that DivergenceGuard
# watches: ~20 steps, so one bad batch, or a spike that optim.spike_clip tamed, moves it little.
LOSS_MEAN_RATE = 0.05


class DivergenceGuard(pl.Callback):
    """A loss can run away without ever becoming NaN (optim.lr=1e6: 3.4e6 -> 8.2e8 in one step,
    then flat, every photo one colour), which NonFiniteLossGuard never sees. Two checks, options in
    conf/callbacks/default.yaml:

    - during training: the running average of the loss (log domain, LOSS_MEAN_RATE) stays more
      than `factor` x its lowest value so far for `steps` steps in a row. Early training falls
      fast (the minimum follows it down) and single spikes are smoothed away; on the bundled photos
      the average never rose above 1.04x its minimum in 82 normal steps, and reached 180x in the
      diverged run. Under DDP the ranks' losses are averaged first, so all ranks decide together.
    - before any export (ExportCallback asks `vet_export`): the network's output on the validation
      photos (the last training batch if there are none), per painting, must vary: a mean
      per-channel standard deviation under `min_output_std` is a flat picture (trained networks:
      0.15-0.25, the untrained one 0.14, the diverged one 0.0000), refused when training made it
      so (under half the spread the network had at the start: an AdaIN decoder from random
      weights starts at 0.0001 and a few steps later has not diverged, it has not learnt yet).

    Either raises DivergedError (exit 1): nothing is exported, `done:` is never printed.
    """

    def __init__(self, factor: float, steps: int, min_output_std: float):
        self.factor, self.steps, self.min_output_std = float(factor), int(steps), float(min_output_std)
        self.mean: float | None = None   # running average of log(loss)
        self.lowest: float | None = None
        self.lowest_step = 0
        self.above = 0                   # steps in a row over factor x lowest
        self.terms: tuple[str, ...] = ()  # the terms the loss summed at the last step
        self.start_spreads: dict[str, float] | None = None  # output spreads before training (vet_export)
        self._last_photos = None

    def state_dict(self) -> dict:
        return {"mean": self.mean, "lowest": self.lowest, "lowest_step": self.lowest_step, "above": self.above,
                "terms": list(self.terms), "start_spreads": self.start_spreads}

    def load_state_dict(self, state_dict: dict) -> None:
        self.mean, self.lowest = state_dict.get("mean"), state_dict.get("lowest")
        self.lowest_step, self.above = int(state_dict.get("lowest_step", 0)), int(state_dict.get("above", 0))
        self.terms = tuple(state_dict.get("terms", ()))
        self.start_spreads = state_dict.get("start_spreads")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        self._last_photos = batch
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor) or not self.factor or not self.steps:
            return
        loss = loss.detach().float()
        if trainer.world_size > 1:
            loss = trainer.strategy.reduce(loss, reduce_op="mean")
        value = float(loss)
        if not math.isfinite(value):
            return  # NonFiniteLossGuard's case
        x = math.log(max(value, 1e-30))
        terms = tuple(sorted(getattr(module, "last_terms", {}) or ()))
        if terms != self.terms:
            # the loss is another sum from here on (a distillation run's pixel-only start ends): its
            # level says nothing about the old one's, so the baseline starts again
            self.mean, self.lowest, self.above, self.terms = None, None, 0, terms
        self.mean = x if self.mean is None else (1 - LOSS_MEAN_RATE) * self.mean + LOSS_MEAN_RATE * x
        if self.lowest is None or self.mean < self.lowest:
            self.lowest, self.lowest_step = self.mean, trainer.global_step
        self.above = self.above + 1 if self.mean - self.lowest > math.log(self.factor) else 0
        if self.above >= self.steps:
            ratio = math.exp(self.mean - self.lowest)
            self._stop(trainer, module, f"the loss diverged: its running average is {ratio:.3g}x its lowest "
                       f"({math.exp(self.lowest):.4g}, around step {self.lowest_step}) and stayed over "
                       f"{self.factor:g}x for {self.steps} steps (loss {value:.4g} now)")

    def output_spreads(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, float]:
        """{column: mean per-channel standard deviation of the network's output} on the validation
        photos (the last training batch if there are none); {} when there is nothing to look at."""
        columns = getattr(module, "stylize_columns", None)
        if columns is None:
            return {}
        val_set = getattr(trainer.datamodule, "val_set", None) if trainer.datamodule is not None else None
        if val_set:  # read here: a loader would start its worker processes for one batch
            batch = torch.utils.data.default_collate([val_set[i] for i in range(min(len(val_set), VET_PHOTOS))])
        else:
            batch = self._last_photos
        if batch is None:
            return {}
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                _, outputs = columns(module.transfer_batch_to_device(batch, module.device, 0))
        finally:
            module.train(was_training)
        return {label: float(out.detach().float().std(dim=(-2, -1)).mean()) for label, out, _ in outputs}

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # what the network paints before this run trains it: a network that starts flat (an AdaIN
        # decoder from random weights) and is still flat has not diverged, it has not learnt yet
        if self.min_output_std and self.start_spreads is None:
            self.start_spreads = self.output_spreads(trainer, module)

    def vet_export(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """DivergedError if training turned the validation photos into flat pictures: a column's
        spread under min_output_std and under half of what the network painted at the start."""
        if not self.min_output_std:
            return
        start = self.start_spreads or {}
        flat = [f"{label} {spread:.4f}" for label, spread in self.output_spreads(trainer, module).items()
                if not (spread >= self.min_output_std or spread >= 0.5 * start.get(label, math.inf))]  # NaN: flat
        if flat:
            self._stop(trainer, module, "the network turns the validation photos into flat pictures (mean "
                       f"per-channel standard deviation {', '.join(flat)}, under min_output_std="
                       f"{self.min_output_std:g})")

    def _stop(self, trainer: pl.Trainer, module: pl.LightningModule, what: str) -> None:
        cb = _last_checkpoint_callback(trainer)
        kept = "Nothing was exported, so an earlier export of this name is untouched"
        if cb is not None:
            before = sorted((p for p in Path(cb.dirpath).glob("step*.ckpt") if _step_of(p) <= self.lowest_step),
                            key=_step_of)
            if before:
                kept += (f"; {before[-1]} holds step {_step_of(before[-1])}, from before the loss rose (last.ckpt may "
                         "hold the diverged weights: do not resume from it)")
        raise DivergedError(f"training stopped at step {trainer.global_step}: {what}. {kept}. Likely cause: the "
                            f"step size or the style term is too large; restart with {_advice(trainer, module)}.")


def _step_of(p: Path) -> int:
    """step0000500.ckpt (or step0000500-v1.ckpt) -> 500; -1 for other names."""
    digits = p.stem[4:].split("-")[0]
    return int(digits) if digits.isdigit() else -1


class StopOnSignal(pl.Callback):
    """SIGINT (Ctrl-C) and SIGTERM (what schedulers such as SLURM send before they kill) stop
    training at the end of the current step: `last.ckpt` is saved from that step, so
    `ckpt_path=last` resumes exactly, the network is exported (ExportCallback) and
    TrainingInterrupted says so (exit 1). Under DDP every rank stops at the same step (any rank
    that got the signal is enough). A second signal stops at once, without the checkpoint.

    A signal that is ignored when training starts (nohup, `trap '' TERM`) stays ignored. The data
    loader's workers ignore both (fast_nst.training.data.sampler.loader_kwargs), so a Ctrl-C to the whole process
    group cannot kill one and end the run before the checkpoint is written."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in self.SIGNALS:
            previous = signal.getsignal(sig)
            if previous == signal.SIG_IGN:
                continue
            self._previous[sig] = previous
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # the second one: stop now
            self._restore()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        print(f"\n{self.received}: stopping after this step, with last.ckpt saved (send it again to stop at "
              "once, without it)", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self._restore()
        saved = save_last_checkpoint(trainer)
        how = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM"}.get(self.received or "", "a signal on another rank")
        kept = (f"{saved} holds step {trainer.global_step}; ckpt_path=last (same options) resumes it exactly"
                if saved else "no checkpoint was written (no ModelCheckpoint callback, or no step completed)")
        from fast_nst.training.callbacks import ExportCallback

        export = next((cb for cb in trainer.callbacks if isinstance(cb, ExportCallback)), None)
        if export is not None and saved:
            kept += f", and {export.dir / (export.name + '.safetensors')} is the network of that step"
        raise TrainingInterrupted(f"training stopped by {how} at step {trainer.global_step} of "
                                  f"{trainer.max_steps}: {kept}")

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()
