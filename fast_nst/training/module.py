"""LightningModule: trains a network of any kind (fast_nst/kinds/) against its frozen loss network.

The kind decides what a step does (which painting each image trains with, the objective, what is
trainable); this module owns the Lightning side: optimizer and schedule, logging (overall and per
painting), the validation grid (content | one column per painting), speed options and checkpoints.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from fast_nst.io.errors import ConfigError, one_line
from fast_nst.kinds import split_model_config
from fast_nst.io.paintings import Painting, training_paintings
from fast_nst.training.warm_start import WarmStart, build_warm_start

log = logging.getLogger("fast_nst")

# optim's keys that the training loop reads itself; the others are the optimizer's arguments
# (conf/optim/adam.yaml), built by build_optimizer
LOOP_KEYS = ("scheduler", "spike_clip")
# Weight of the newest step in the running mean of log gradient norms (optim.spike_clip): ~50 steps.
GRAD_NORM_MEAN_RATE = 0.02


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


def build_optimizer(optim: Mapping, param_groups) -> torch.optim.Optimizer:
    """The optimizer `optim` names by `_target_` (any torch.optim class, or one of yours), built on
    `param_groups` (a warm start's groups carry their own learning rates) with every key of `optim`
    but LOOP_KEYS as its arguments."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    args = {k: v for k, v in _plain(optim).items() if k not in LOOP_KEYS}
    if "_target_" not in args:
        raise ConfigError("optim has no _target_: name the optimizer's class, e.g. optim._target_=torch.optim.Adam "
                          "(conf/optim/adam.yaml)")
    try:
        return instantiate(args, _partial_=True, _convert_="all")(param_groups)
    except (InstantiationException, TypeError) as e:
        raise ConfigError(f"optim: {args['_target_']} cannot be built from {sorted(k for k in args if not k.startswith('_'))} "
                          f"({one_line(e, 300)}); drop the arguments it does not take, e.g. '~optim.betas'") from e


def run_paintings(cfg: DictConfig) -> list[Painting]:
    """The paintings a run's network holds: the `styles` list or the `style` group's painting.
    None (empty) for arbitrary-style kinds (AdaIN, style prediction): their paintings are training data
    (`styles.root`, read by the data module), and they take any painting afterwards."""
    kind, _ = split_model_config(_plain(cfg.model))
    if kind.arbitrary_style:
        return []
    return training_paintings(cfg.get("styles"), cfg.style)


def prepare_batch(batch: Any, memory_format: torch.memory_format) -> tuple[Any, torch.Tensor]:
    """(batch with its tensors in `memory_format`, its photos). A batch is the photos tensor
    (B, 3, H, W), or for kinds whose data yields more (e.g. photos and paintings) a tuple/list
    with the photos first or a dict with a "photos" key; the kind's training_step receives it
    in the same structure."""
    def fmt(b: Any) -> Any:
        if isinstance(b, torch.Tensor):
            return b.contiguous(memory_format=memory_format) if b.dim() == 4 else b
        if isinstance(b, (list, tuple)):
            return type(b)(fmt(v) for v in b)
        if isinstance(b, dict):
            return {k: fmt(v) for k, v in b.items()}
        return b

    batch = fmt(batch)
    if isinstance(batch, torch.Tensor):
        photos = batch
    elif isinstance(batch, (list, tuple)) and batch:
        photos = batch[0]
    elif isinstance(batch, dict) and "photos" in batch:
        photos = batch["photos"]
    else:
        photos = None
    if not (isinstance(photos, torch.Tensor) and photos.dim() == 4):
        raise TypeError(f"a training batch is a (B, 3, H, W) photos tensor, a tuple/list with the photos first "
                        f"or a dict with a 'photos' key; got {type(batch).__name__}")
    return batch, photos


def _changed_options(theirs: dict, ours: Any, prefix: str = "") -> str:
    """The `model`/`loss`/... options that differ between a checkpoint's hyper-parameters and this
    run's, as `model.width=1.0 (now 0.5)`, for the message of a checkpoint that does not fit."""
    out = []
    for key in ("model", "paintings", "init_from") if not prefix else sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key), _plain(ours.get(key))
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _changed_options(a, b, f"{prefix}{key}.")
            out += [inner] if inner else []
        elif key == "paintings" and not prefix and a != b:
            names = lambda ps: [p.get("name") for p in ps or []]  # noqa: E731
            out.append(f"paintings {names(a)} (now {names(b)})")
        elif a != b:
            out.append(f"{prefix}{key}={a} (now {b})")
    return ", ".join(out)


@dataclass(frozen=True)
class PerfOptions:
    """Speed options of the training step: the keys of conf/perf/*.yaml, where their defaults and
    comments live (benchmarks/bench.py measures them; none changes the loss beyond float rounding)."""

    vgg_pass: str
    channels_last: bool
    compile: bool
    compile_mode: str | None

    @classmethod
    def from_config(cls, perf: Any) -> "PerfOptions":
        perf = dict(_plain(perf) or {})
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(perf) - names), sorted(names - set(perf))
        if unknown or missing:
            raise ValueError(f"perf options: unknown {unknown}, missing {missing}; the options are those of "
                             f"conf/perf/fast.yaml: {sorted(names)}")
        return cls(**perf)


class StyleTransferModule(pl.LightningModule):
    """Arguments mirror the config groups `model` (with its `kind`), `loss`, `loss_net`, `optim`,
    `perf`; `paintings` are the training paintings (dicts of `Painting`), `seed` seeds which
    painting each image draws, `init_from` an export to continue from (add_style), `warm_start`
    the config of what the network starts from (fast_nst/training/warm_start.py; None: random
    weights), `distill` the teacher export and the weights of its targets (conf/train.yaml
    `distill`, fast_nst/training/distill.py).

    The frozen loss network is not part of Lightning checkpoints (it is rebuilt from `loss_net`),
    which keeps checkpoints at the size of the small network.
    """

    def __init__(self, model: dict, loss: dict, loss_net: dict, paintings: list[dict], optim: dict,
                 perf: dict, seed: int, init_from: str | None = None, warm_start: dict | None = None,
                 distill: dict | None = None):
        super().__init__()
        model, loss, loss_net, paintings, optim, warm_start, distill = map(
            _plain, (model, loss, loss_net, paintings, optim, warm_start, distill))
        self.perf = PerfOptions.from_config(perf)
        self.seed = int(seed)
        self.save_hyperparameters(dict(model=model, loss=loss, loss_net=loss_net, paintings=paintings,
                                       optim=optim, perf=vars(self.perf), seed=self.seed, init_from=init_from,
                                       warm_start=warm_start, distill=distill))
        kind, net_cfg = split_model_config(model)
        base = None
        if init_from:
            from fast_nst.io.export import load_export

            base = load_export(init_from)
        self.warm_start = build_warm_start(warm_start) or WarmStart()
        self.net = self.warm_start.build(kind, net_cfg, [Painting.from_dict(p) for p in paintings], base)
        self.criterion = self.net.build_objective(loss, loss_net, vgg_pass=self.perf.vgg_pass)
        if distill:
            from fast_nst.training.distill import Distillation, load_teacher

            teacher, _ = load_teacher(distill["teacher"])
            self.criterion = Distillation(self.criterion, teacher, distill["pixel_weight"], distill["feature_weight"],
                                          distill["feature_layers"])
        encoder = getattr(self.criterion, "encoder", None)
        self.memory_format = torch.channels_last if self.perf.channels_last else torch.contiguous_format
        if self.perf.channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.criterion.to(memory_format=torch.channels_last)
        # What runs the step; `self.net` stays the plain module (export, checkpoints). Kept out of
        # the module tree so state_dict has no duplicate keys.
        net_fn = self.net
        if self.perf.compile:
            kw = {"mode": self.perf.compile_mode} if self.perf.compile_mode else {}
            net_fn = torch.compile(self.net, **kw)
            if encoder is not None:
                encoder.forward = torch.compile(encoder.forward, **kw)
        object.__setattr__(self, "_net_fn", net_fn)
        self.vgg_source = getattr(encoder, "weights_source", "unknown")
        # Running mean of log gradient norms: a batch whose gradient is far above it (a flat crop
        # that instance norm amplifies, say) is scaled down instead of letting one Adam step of
        # ~3x lr in every weight wreck the network (measured: a sw=5 run collapsed at step 690).
        # A buffer, so checkpoints carry it and a resumed run guards exactly as before.
        self.register_buffer("log_grad_norm_avg", torch.tensor(float("nan")))
        self._val_grid: torch.Tensor | None = None
        self._val_labels: list[str] = []
        self._painting_sums: torch.Tensor | None = None  # per-painting style terms since the last log
        self._painting_counts: torch.Tensor | None = None
        self.last_terms: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, cfg: DictConfig, paintings: list[Painting] | None = None) -> "StyleTransferModule":
        """From a composed conf/train.yaml; `paintings` default to `styles` or the `style` group."""
        if paintings is None:
            paintings = run_paintings(cfg)
        teacher = cfg.get("teacher")
        distill = None
        if teacher:  # a name in checkpoints/ or a file (fast_nst.training.run checked it can teach)
            from fast_nst.stylize.stylizer import find_checkpoint

            distill = {**_plain(cfg.distill), "teacher": str(find_checkpoint(teacher))}
        return cls(model=cfg.model, loss=cfg.loss, loss_net=cfg.loss_net, paintings=[p.to_dict() for p in paintings],
                   optim=cfg.optim, perf=cfg.perf, seed=cfg.seed, init_from=cfg.get("init_from"),
                   warm_start=cfg.get("warm_start"), distill=distill)

    def on_fit_start(self) -> None:
        # one line instead of Lightning's table, which listed the frozen loss network as a trained
        # module and a FLOPs column of zeros (trainer.enable_model_summary is off in conf/trainer/)
        trained = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.criterion.parameters())
        log.info(f"network: {self.net.kind} ({type(self.net).__name__}), "
                 f"{sum(p.numel() for p in self.net.parameters()) / 1e6:.2f} M parameters, "
                 f"{trained / 1e6:.2f} M trained; loss network: {self.hparams.loss_net.get('arch', '?')}, "
                 f"{frozen / 1e6:.1f} M parameters, frozen")

    # -- checkpoints: drop the frozen loss network (tens of MB), check the network matches ----
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith("criterion.")]:
            del sd[k]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Strict loading stays on, so a missing network weight or buffer is an error; only the keys
        # on_save_checkpoint dropped on purpose (the frozen loss network, rebuilt from loss_net)
        # are filled back in from this module, by name.
        frozen = {k: v for k, v in self.state_dict().items() if k.startswith("criterion.")}
        checkpoint["state_dict"] = {**frozen, **checkpoint["state_dict"]}
        # checkpoints written before the gradient-spike guard existed lack its running average;
        # it restarts from "unknown", as in a new run
        checkpoint["state_dict"].setdefault("log_grad_norm_avg", torch.tensor(float("nan")))
        ours = {k: tuple(v.shape) for k, v in self.state_dict().items() if k.startswith("net.")}
        theirs = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        problem = None
        if ours != theirs:
            k = next(k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))
            problem = (f"it holds another network than this config builds ({k}: {theirs.get(k, 'absent')} in "
                       f"the checkpoint, {ours.get(k, 'absent')} here)")
        else:
            groups = [len(g["params"]) for g in (checkpoint.get("optimizer_states") or [{}])[0].get("param_groups", [])]
            if groups and groups != [len(g["params"]) for g in self.net.parameter_groups()]:
                problem = "its optimizer trained other parameters than this config trains"
        if problem:
            path = self._trainer.ckpt_path if self._trainer is not None else None
            changed = _changed_options(checkpoint.get("hyper_parameters") or {}, self.hparams)
            raise ConfigError(
                f"ckpt_path={path or '...'}: {problem}; "
                + (f"the run that wrote it had {changed}: resume with those, " if changed else
                   "resume with the options of the run that wrote it, ")
                + "or start a new run (another name=, or no ckpt_path)")

    def forward(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        return self.net(x, cond)

    # -- steps -----------------------------------------------------------------------------
    def _draw_styles(self, n: int) -> torch.Tensor | None:
        """Which painting each image trains with: a function of (seed, step, rank, position in
        the batch), so a resumed run draws exactly what the uninterrupted one would have."""
        # plain arithmetic, not hash(): the same on every Python version and platform
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.global_step * 1031 + self.global_rank) % 2**63)
        idx = self.net.draw_styles(n, g)
        return None if idx is None else idx.to(self.device)

    def _log_terms(self, terms: dict[str, torch.Tensor], stage: str, bs: int, suffix: str = "",
                   prog_bar: bool = False) -> None:
        # every scalar term the kind returned (a kind logs the terms it has, and only those; per-image
        # vectors such as style_per_image are logged per painting instead)
        self.log_dict({f"{stage}/{k}{suffix}": v.detach() for k, v in terms.items() if v.ndim == 0},
                      prog_bar=prog_bar, batch_size=bs, sync_dist=(stage == "val"),
                      on_step=(stage == "train"), on_epoch=(stage == "val"))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.warm_start.on_train_step(self.net, self.global_step)  # a warm start's phases (what trains)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        batch, photos = prepare_batch(batch, self.memory_format)
        bs = photos.shape[0]
        idx = self._draw_styles(bs)
        if self.hparams.distill:  # the first part of a distillation run: the pixel target alone
            self.criterion.pixel_only = self.global_step < self.hparams.distill["pixel_only"] * self.trainer.max_steps
        _, terms = self.net.training_step(self.criterion, batch, idx, forward=self._net_fn)
        self.last_terms = {k: v.detach() for k, v in terms.items()}  # named by NonFiniteLossGuard
        self._log_terms(terms, "train", bs, prog_bar=True)
        per_image = terms.get("style_per_image")
        if per_image is not None and len(self.net.styles) > 1:
            self._log_per_painting(per_image.detach(), idx)
        return terms["loss"]

    def _log_per_painting(self, per_image: torch.Tensor, idx: torch.Tensor) -> None:
        """train/style/<painting>: the mean style term of the images that drew the painting since the
        last logged step. Written to the loggers directly: Lightning would repeat a painting's last
        value in steps that did not draw it."""
        n = len(self.net.styles)
        if self._painting_sums is None:
            self._painting_sums, self._painting_counts = torch.zeros(n, dtype=torch.float64), torch.zeros(n)
        self._painting_sums.index_add_(0, idx.cpu(), per_image.double().cpu())
        self._painting_counts.index_add_(0, idx.cpu(), torch.ones(len(idx)))
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) and not self.trainer.should_stop:
            return
        metrics = {f"train/style/{p.name}": float(s / c) for p, s, c in
                   zip(self.net.styles, self._painting_sums, self._painting_counts) if c > 0}
        for lg in self.loggers:
            lg.log_metrics(metrics, step=self.global_step)
        self._painting_sums, self._painting_counts = None, None

    def stylize_columns(self, batch: Any) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor, dict]]]:
        """(photos, [(label, stylized photos, loss terms)]): a batch through the network once per
        validation grid column (per painting for multi-style kinds). Validation and the divergence
        guard's check of the export (fast_nst.training.guards) both look at these."""
        batch, photos = prepare_batch(batch, self.memory_format)
        bs = photos.shape[0]
        columns = []
        for label, i in self.net.validation_styles():
            idx = None if i is None else torch.full((bs,), i, device=self.device, dtype=torch.long)
            out, terms = self.net.training_step(self.criterion, batch, idx, forward=self._net_fn)
            columns.append((label, out, terms))
        return photos, columns

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        photos, columns = self.stylize_columns(batch)
        bs = photos.shape[0]
        outputs, per_column = [out for _, out, _ in columns], [terms for _, _, terms in columns]
        if len(columns) > 1:
            for label, _, terms in columns:
                self._log_terms(terms, "val", bs, suffix=f"/{label}")
        self._log_terms({k: torch.stack([t[k] for t in per_column]).mean() for k, v in per_column[0].items()
                         if v.ndim == 0}, "val", bs)
        if batch_idx == 0:
            # content | stylized with each painting, one row per validation photo
            self._val_grid = torch.stack([photos] + [o.to(photos.dtype) for o in outputs], 1).flatten(0, 1).float().cpu()
            self._val_labels = ["content"] + [label for label, _, _ in columns]

    def on_validation_epoch_end(self) -> None:
        if self._val_grid is not None and not self.trainer.sanity_checking:
            from fast_nst.training.loggers import log_image_grid

            log_image_grid(self.trainer, "val/samples", self._val_grid, self.global_step,
                           nrow=len(self._val_labels), caption=" | ".join(self._val_labels))
        self._val_grid = None

    def on_before_optimizer_step(self, optimizer) -> None:
        """Gradient-spike guard (`optim.spike_clip`, conf/optim/adam.yaml): a gradient whose norm
        exceeds spike_clip x the running geometric mean of earlier norms is scaled down to that
        bound. Logs train/grad_norm (before scaling) and train/grad_clipped every step."""
        factor = self.hparams.optim["spike_clip"]
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        if not factor or not grads:
            return
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
        avg = float(self.log_grad_norm_avg)
        limit = math.exp(avg) * factor if math.isfinite(avg) else math.inf
        clipped = math.isfinite(norm) and norm > limit  # a non-finite norm is not a spike to scale
        if clipped:
            for g in grads:
                g.mul_(limit / norm)
        if math.isfinite(norm) and norm > 0:
            kept = math.log(min(norm, limit))  # the spike itself does not raise the bound
            self.log_grad_norm_avg.fill_(kept if not math.isfinite(avg)
                                         else (1 - GRAD_NORM_MEAN_RATE) * avg + GRAD_NORM_MEAN_RATE * kept)
        self.log_dict({"train/grad_norm": norm, "train/grad_clipped": float(clipped)},
                      on_step=True, on_epoch=False, batch_size=1)

    def configure_optimizers(self):
        o = self.hparams.optim
        opt = build_optimizer(o, self.warm_start.parameter_groups(self.net, o["lr"]))
        sched = o["scheduler"]
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
