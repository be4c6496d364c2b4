"""Training entry: build data, module, loggers, callbacks and Trainer from a composed config."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fast_nst.training.callbacks import ExportCallback
from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.training.module import StyleTransferModule, run_paintings
from fast_nst.io.paintings import Painting
from fast_nst.io.validate import validate_train
from fast_nst.training.warm_start import build_warm_start, objective_from_export

log = logging.getLogger("fast_nst")


def resolve_resume(ckpt_path: str | None, callbacks: list) -> str | None:
    """`last` means this run name's `last.ckpt` in the ModelCheckpoint folder."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        dirs = [Path(cb.dirpath) for cb in callbacks
                if isinstance(cb, pl.callbacks.ModelCheckpoint) and cb.dirpath]
        for d in dirs:
            if (d / "last.ckpt").is_file():
                return str(d / "last.ckpt")
        raise MissingPathError(f"ckpt_path=last: no last.ckpt in {[str(d) for d in dirs]}; "
                                "nothing to resume for this run name (start without ckpt_path)")
    if not Path(ckpt_path).is_file():
        raise MissingPathError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


def _quiet_known_warnings() -> None:
    # The frozen VGG is in eval mode on purpose, and small folders have fewer batches per epoch
    # than the logging interval; neither is a problem, so don't alarm users with them.
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # Lightning's "Tip: try installing litlogger / litmodels" lines advertise its cloud products on every
    # run; they say nothing about this one
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in rank_zero.filters):
        rank_zero.addFilter(_NoTips())


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: " not in str(record.msg)[:12]


def command_line_keys(cfg: DictConfig) -> set[str]:
    """The config keys set on this run's command line (`key=v`, `+key=v`, `++key=v`)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = cfg.get("hydra") if "hydra" in cfg else (HydraConfig.get() if HydraConfig.initialized() else None)
    task = list(hydra_cfg.overrides.task) if hydra_cfg is not None else []
    return {o.split("=", 1)[0].lstrip("+~") for o in task if "=" in o}


def apply_steps_per_style(cfg: DictConfig, paintings: list[Painting]) -> None:
    """`steps_per_style` set: trainer.max_steps = steps_per_style x the paintings this run trains,
    unless trainer.max_steps is on the command line: an explicit value wins (both there: an error)."""
    per = cfg.get("steps_per_style")
    if not per:
        return
    given = command_line_keys(cfg)
    if "trainer.max_steps" in given:
        if "steps_per_style" in given:
            raise ConfigError(f"trainer.max_steps={cfg.trainer.max_steps} and steps_per_style={per} both given; "
                              "give one (steps_per_style sets max_steps = it x the number of paintings)")
        log.info("trainer.max_steps=%d from the command line (steps_per_style=%d x %d paintings not applied)",
                 cfg.trainer.max_steps, per, len(paintings))
        return
    cfg.trainer.max_steps = int(per) * len(paintings)
    log.info("trainer.max_steps = steps_per_style %d x %d painting(s) = %d", per, len(paintings),
             cfg.trainer.max_steps)


def _apply_init_from(cfg: DictConfig) -> None:
    """Continuing from an export trains against the objective recorded in it (`loss`, `loss_net`),
    so old and new paintings share one objective; the export itself is never overwritten."""
    init = cfg.get("init_from")
    if not init:
        return
    if not Path(init).is_file():
        raise MissingPathError(f"init_from={init}: no such export (give the .safetensors to continue from)")
    from fast_nst.io.export import read_export
    from fast_nst.io.validate import refuse_overwriting_inputs

    refuse_overwriting_inputs([Path(cfg.export.dir) / f"{cfg.export.name}.safetensors"], inputs=[init],
                              option="export", what="init_from export",
                              fix="give the new network another name (name=...)")

    objective_from_export(cfg, read_export(init))
    log.info("init_from=%s: training against its recorded loss and loss network", init)


def _apply_teacher(cfg: DictConfig) -> list[Painting] | None:
    """`teacher` set (experiment=distill): the student learns the teacher's paintings against the
    teacher's objective, as a network of the teacher's kind (johnson or cin) with the shape options
    of `model`. Returns the paintings (None without a teacher)."""
    name = cfg.get("teacher")
    if not name:
        return None
    from fast_nst.training.distill import DISTILLABLE_KINDS
    from fast_nst.io.export import read_export
    from fast_nst.stylize.stylizer import find_checkpoint

    if cfg.get("init_from"):
        raise ConfigError("teacher= and init_from= together: a distilled network starts from scratch "
                          "(drop init_from)")
    path = find_checkpoint(name)
    info = read_export(path)
    if info.kind not in DISTILLABLE_KINDS:
        raise ConfigError(f"teacher={name} is a {info.kind} network; distillation takes a per-style (johnson) "
                          f"or multi-style (cin) export, e.g. teacher=starry_night or teacher=six_paintings")
    objective_from_export(cfg, info)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model["kind"] = info.kind
    if info.kind == "cin":
        model.pop("norm", None)  # conditional instance norm: the kind's own
    cfg.model = OmegaConf.create(model)
    log.info("teacher=%s: a %s student of %s, against the teacher's loss and loss network",
             path, info.kind, ", ".join(info.style_names))
    return list(info.styles)


def model_card_of_run(cfg: DictConfig) -> dict:
    """The recipe part of a model card: config choices, the command line, seed, photos."""
    card: dict = {"seed": cfg.seed, "training_photos": {"root": str(cfg.data.get("root"))}}
    if cfg.get("teacher"):
        card["teacher"] = {"export": Path(cfg.teacher).name, "distill": OmegaConf.to_container(cfg.distill)}
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hc = HydraConfig.get()
        card["recipe"] = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items()
                          if not k.startswith("hydra/")}
        card["command"] = " ".join(["python train.py", *hc.overrides.task])
    return card


def train(cfg: DictConfig) -> dict:
    """Fit and export. Under DDP every process runs this; only global rank zero writes the export
    and logs, so on other ranks `export` is None (`rank` says which process returned)."""
    validate_train(cfg)  # bad options fail here, before the VGG, the data scan or the model
    logging.getLogger("fast_nst").setLevel(logging.INFO)
    _quiet_known_warnings()
    pl.seed_everything(cfg.seed, workers=True)
    warm = build_warm_start(cfg.get("warm_start"))
    if warm is not None:
        warm.prepare(cfg)   # the network kind and shape, the objective, init_from (add the painting)
    paintings = _apply_teacher(cfg) or run_paintings(cfg)
    apply_steps_per_style(cfg, paintings)
    _apply_init_from(cfg)
    # plain lists and dicts, not OmegaConf containers: the data module's hyperparameters go into every
    # Lightning checkpoint, which quality.py and resume read with torch.load(weights_only=True)
    datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="all")
    module = StyleTransferModule.from_config(cfg, paintings)
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c]
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c]
    for cb in callbacks:
        if isinstance(cb, ExportCallback):
            cb.model_card.update(model_card_of_run(cfg))
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
