"""Lightning callbacks: export the trained network, with its model card, when training ends."""

from __future__ import annotations

import copy
import datetime
import logging
import os
import platform
import time
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
import torch

from fast_nst.io.errors import TrainingStopped
from fast_nst.io.export import export_network

log = logging.getLogger("fast_nst")


def machine_description(trainer: pl.Trainer) -> dict:
    """Where a model was trained, for its model card (no host names)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    accel = "cpu"
    if trainer.strategy.root_device.type == "cuda":
        accel = f"cuda ({torch.cuda.get_device_name(trainer.strategy.root_device)})"
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "accelerator": accel, "processes": trainer.world_size, "torch": torch.__version__,
            "platform": platform.platform(terse=True)}


class ExportCallback(pl.Callback):
    """Writes `<dir>/<name>.safetensors` on rank zero at the end of fit (also after Ctrl-C or
    SIGTERM, and after NonFiniteLossGuard stopped a run whose weights are still the last good
    ones, so an interrupted run still leaves a usable model) and logs it as a W&B artifact when
    W&B is on. Every callback with a `vet_export(trainer, module)` (DivergenceGuard) may refuse
    the network first, by raising: then nothing is written.

    `model_card` (a dict the training entry fills: recipe, training photos, seed) goes into the
    export with the steps, the training wall time (summed over resumed sessions: it is part of
    this callback's checkpoint state) and the machine.
    """

    def __init__(self, dir: str, name: str, log_artifact: bool, thumbnail_size: int, onnx: Sequence[str] = ()):
        self.dir, self.name, self.log_artifact, self.thumbnail_size = Path(dir), name, log_artifact, thumbnail_size
        self.onnx = list(onnx or [])  # ONNX graphs to write beside the export (fast_nst.stylize.runtimes.GRAPHS)
        self.path: Path | None = None
        self.model_card: dict = {}
        self._seconds_before = 0.0  # training time of earlier sessions of this run
        self._t0: float | None = None

    def train_seconds(self) -> float:
        return self._seconds_before + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def state_dict(self) -> dict:
        return {"train_seconds": self.train_seconds()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._seconds_before = float(state_dict.get("train_seconds", 0.0))

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def _export(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.global_step == 0:
            return
        for cb in trainer.callbacks:  # e.g. DivergenceGuard: no network that paints one flat colour ships
            vet = getattr(cb, "vet_export", None)
            if vet is not None:
                vet(trainer, module)
        hp = module.hparams
        dm_hp = getattr(trainer.datamodule, "hparams", {})
        photos = dict(self.model_card.get("training_photos") or {})
        train_set = getattr(trainer.datamodule, "train_set", None)
        if train_set is not None:
            photos["count"] = len(train_set)
        card = {**self.model_card, "training_photos": photos, "steps": trainer.global_step,
                "image_size": dm_hp.get("image_size"), "batch_size": dm_hp.get("batch_size"),
                "train_seconds": round(self.train_seconds(), 1), "machine": machine_description(trainer),
                "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        self.path = export_network(module.net, self.dir / f"{self.name}.safetensors", loss=dict(hp.loss),
                                   loss_net=dict(hp.loss_net), vgg_weights=module.vgg_source, model_card=card,
                                   thumbnail_size=self.thumbnail_size)
        log.info("exported %s (step %d)", self.path, trainer.global_step)
        self._write_graphs(module.net)
        if self.log_artifact:
            from pytorch_lightning.loggers import WandbLogger

            for lg in trainer.loggers:
                if isinstance(lg, WandbLogger):
                    import wandb

                    art = wandb.Artifact(f"fast_nst-{self.name}", type="model",
                                         metadata={"kind": module.net.kind, "styles": module.net.style_names,
                                                   "step": trainer.global_step})
                    art.add_file(str(self.path))
                    lg.experiment.log_artifact(art)

    def _write_graphs(self, net) -> None:
        """The export's ONNX graphs beside it. Optional extras: a failure is logged, not raised."""
        if not self.onnx or not net.graph_export:
            return
        from fast_nst.io.export import read_export
        from fast_nst.stylize.runtimes import write_graphs

        try:
            for path in write_graphs(self.path, copy.deepcopy(net).cpu().float().eval(), read_export(self.path),
                                     self.onnx, say=log.info).values():
                log.info("wrote %s", path)
        except Exception as e:  # noqa: BLE001 - the .safetensors is the result; graphs can be made later
            log.warning("could not write the ONNX graphs of %s (%s: %s); the export is complete, and "
                        "`python -m fast_nst export ckpt=%s` retries them", self.path, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "", self.path)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._export(trainer, module)

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) or (
                isinstance(exception, TrainingStopped) and exception.weights_usable):
            self._export(trainer, module)
