"""Warm starts: what a training run starts from (conf/warm_start/, `python train.py warm_start=...`).

Every run used to start from random weights, although the project ships a multi-style network
(`six_paintings`) whose convolutions already know how to paint. A warm start takes them:

  rows           (a) add the painting to the multi-style network: only its scale/shift rows train
                 (experiment=add_style's mechanism); the export holds the old paintings and the new
                 one, the old ones bit-identical.
  rows_then_all  (b) the same rows-only training for `norms_only_steps`, then every weight trains:
                 a per-style network (kind johnson) for the new painting.
  convs          (c) a per-style network whose convolutions start from the multi-style network and
                 whose norms start from a row: its paintings' mean, one of its paintings, or the
                 row an any-painting network (kind style_prediction) predicts for this painting;
                 everything trains.
  (none)         (d) random weights, as before (warm_start=null, the default of train.py).

A per-style network's instance norms are exactly one row of the multi-style network's conditional
norms, so (b)'s rows-only phase is (a)'s training, and (b) and (c) differ only in where the row
starts. docs/training/own-painting.md has the measurements that chose the schedules.

A warm start is a Hydra object (`_target_`): `prepare(cfg)` edits the run's config before anything
is built (the network kind and shape, the objective recorded in the source export, `init_from`),
`build(...)` makes the network, `parameter_groups(net, lr)` says what trains at which learning rate
and `on_train_step(net, step)` switches phases. StyleTransferModule records the warm start's config
in its hyper-parameters, so a resumed run (and quality.py on a checkpoint) rebuilds the same thing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from fast_nst.io.errors import ConfigError
from fast_nst.io.paintings import Painting

log = logging.getLogger("fast_nst")

# The transformation network's shape options, taken from the source export.
SHAPE = ("width", "upsample", "num_res_blocks", "tanh_scale")


def source_export(source: str) -> Path:
    """The export a warm start reads: a path, or a name in ./checkpoints or the project's checkpoints/."""
    from fast_nst.stylize.stylizer import find_checkpoint

    return Path(find_checkpoint(source))


def objective_from_export(cfg: DictConfig, info) -> None:
    """Train against the objective recorded in `info` (`loss`, `loss_net`): a network continued
    from an export keeps the objective its weights were trained for. The VGG weights: the run's
    `loss_net.weights` when it is a local file (e.g. an offline copy of the recorded source), else
    the recorded source, unless that is a file missing on this machine (then the run's)."""
    if info.loss:
        cfg.loss = OmegaConf.create(info.loss)
    if info.loss_net:
        weights = info.loss_net.get("weights")
        keep = cfg.loss_net.weights
        cfg.loss_net = OmegaConf.create(info.loss_net)
        if keep != weights and Path(str(keep)).is_file():
            cfg.loss_net.weights = keep
        elif weights not in ("oxford", "torchvision") and not Path(str(weights)).is_file():
            log.warning("%s: its VGG weights %s are not on this machine; using loss_net.weights=%s", info.path, weights, keep)
            cfg.loss_net.weights = keep


def _multi_style_info(source: str):
    from fast_nst.io.export import read_export

    path = source_export(source)
    info = read_export(path)
    if info.kind != "cin":
        raise ConfigError(f"warm_start.source={source}: a {info.kind} network; warm starts take a multi-style "
                          "(kind cin) export such as six_paintings")
    return path, info


def is_norm_parameter(name: str, net: torch.nn.Module) -> bool:
    """`name` (from net.named_parameters) is an instance norm's scale or shift."""
    from fast_nst.models.norms import InstanceNormBase

    module = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
    return isinstance(module, InstanceNormBase)


class WarmStart:
    """Base class: how a run's network starts. The default methods are a cold start's."""

    def prepare(self, cfg: DictConfig) -> None:
        """Edit the composed run config before the network, data or objective are built."""

    def build(self, kind, net_cfg: Mapping, paintings: list[Painting], base=None):
        return kind.for_training(net_cfg, paintings, base)

    def parameter_groups(self, net: torch.nn.Module, lr: float) -> list[dict]:
        return net.parameter_groups()

    def on_train_step(self, net: torch.nn.Module, step: int) -> None:
        """Called before every training step with the global step (phases switch here)."""


class AddRows(WarmStart):
    """(a) Add the run's painting(s) to the multi-style network `source`: new rows start at the mean
    of its rows and only they train (lr x `norm_lr_scale`); the old paintings' outputs stay
    bit-identical. The export is a multi-style network with the old paintings and the new."""

    def __init__(self, source: str, norm_lr_scale: float = 10.0):
        self.source, self.norm_lr_scale = source, float(norm_lr_scale)

    def prepare(self, cfg: DictConfig) -> None:
        path, info = _multi_style_info(self.source)
        cfg.model = OmegaConf.create({"kind": "cin", **{k: info.network[k] for k in SHAPE}})
        cfg.init_from = str(path)   # the add_style path (the network continues from it)
        objective_from_export(cfg, info)

    def parameter_groups(self, net: torch.nn.Module, lr: float) -> list[dict]:
        return [{**g, "lr": lr * self.norm_lr_scale} for g in net.parameter_groups()]


class FromMultiStyle(WarmStart):
    """(b), (c): a per-style network (kind johnson, instance norm) shaped like the multi-style
    network `source`, its convolutions copied from it and its norms set from `rows`:
    `mean` (the mean of the source's rows), the name of one of the source's paintings, or an
    any-painting export (its prediction for this run's painting, `predicted_rows`).

    For the first `norms_only_steps` steps only the norms train (so (b)'s first phase is the
    rows-only training of (a)); then every weight does. Norms train at lr x `norm_lr_scale`,
    convolutions at lr x `conv_lr_scale`."""

    def __init__(self, source: str, rows: str = "mean", norms_only_steps: int = 0,
                 norm_lr_scale: float = 1.0, conv_lr_scale: float = 1.0):
        self.source, self.rows = source, str(rows)
        self.norms_only_steps = int(norms_only_steps)
        self.norm_lr_scale, self.conv_lr_scale = float(norm_lr_scale), float(conv_lr_scale)
        if self.norms_only_steps < 0:
            raise ConfigError(f"warm_start.norms_only_steps={norms_only_steps}: must be >= 0")

    def prepare(self, cfg: DictConfig) -> None:
        path, info = _multi_style_info(self.source)
        cfg.model = OmegaConf.create({"kind": "johnson", "norm": "instance", **{k: info.network[k] for k in SHAPE}})
        objective_from_export(cfg, info)
        log.info("warm start: convolutions from %s, norms from %s", path, self.rows)

    def build(self, kind, net_cfg: Mapping, paintings: list[Painting], base=None):
        from fast_nst.io.export import load_export

        if base is not None:
            raise ConfigError("warm_start and init_from both set: a warm-started network starts from warm_start.source")
        if kind.kind != "johnson":
            raise ConfigError(f"warm_start={type(self).__name__} builds a per-style (johnson) network, got model.kind={kind.kind}")
        net = kind.for_training(net_cfg, paintings, None)
        info, tensors = load_export(source_export(self.source))
        rows = self._rows(info, tensors, paintings)
        state = net.state_dict()
        for key, value in tensors.items():
            module = key.rsplit(".", 1)[0]
            if module in rows:
                continue
            if key not in state or state[key].shape != value.shape:
                raise ConfigError(f"warm_start.source={self.source}: tensor {key} {tuple(value.shape)} does not fit "
                                  "the per-style network")
            state[key] = value
        for module, (weight, bias) in rows.items():
            state[f"{module}.weight"], state[f"{module}.bias"] = weight, bias
        net.load_state_dict(state)
        return net

    def _rows(self, info, tensors: Mapping[str, torch.Tensor], paintings: list[Painting]) -> dict:
        """{norm module name: (weight (C,), bias (C,))} of the chosen starting row."""
        norms = sorted({k.rsplit(".", 1)[0] for k, v in tensors.items() if v.dim() == 2 and k.endswith(".weight")})
        if self.rows == "mean":
            return {m: (tensors[f"{m}.weight"].mean(0), tensors[f"{m}.bias"].mean(0)) for m in norms}
        if self.rows in info.style_names:
            i = info.style_names.index(self.rows)
            return {m: (tensors[f"{m}.weight"][i], tensors[f"{m}.bias"][i]) for m in norms}
        try:
            predictor = source_export(self.rows)
        except Exception:
            raise ConfigError(f"warm_start.rows={self.rows}: not `mean`, not a painting of {self.source} "
                              f"({', '.join(info.style_names)}) and not an any-painting export") from None
        if len(paintings) != 1:
            raise ConfigError("warm_start.rows=<any-painting export> predicts one painting's row; this run has "
                              f"{len(paintings)}")
        predicted = predicted_rows(predictor, paintings[0])
        missing = sorted(set(norms) - set(predicted))
        if missing:
            raise ConfigError(f"warm_start.rows={self.rows}: its network has no norm parameters for {missing[:3]}")
        return {m: predicted[m] for m in norms}

    def parameter_groups(self, net: torch.nn.Module, lr: float) -> list[dict]:
        # every weight is in a group from the start (frozen ones join when their phase begins:
        # Adam skips parameters without a gradient)
        norms, convs = [], []
        for name, p in net.named_parameters():
            p.requires_grad_(True)
            (norms if is_norm_parameter(name, net) else convs).append(p)
        self.on_train_step(net, 0)
        return [{"params": norms, "lr": lr * self.norm_lr_scale}, {"params": convs, "lr": lr * self.conv_lr_scale}]

    def on_train_step(self, net: torch.nn.Module, step: int) -> None:
        train_convs = step >= self.norms_only_steps
        for name, p in net.named_parameters():
            if not is_norm_parameter(name, net):
                p.requires_grad_(train_convs)


def predicted_rows(export: str | Path, painting: Painting) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The norm rows an any-painting export gives for `painting`: {norm module name: (weight, bias)},
    named as in the per-style network (`encoder.1`, `residuals.0.body.1`, ...).

    A kind provides them with `norm_rows(style_image=PATH)`; embedding kinds built on Johnson's
    network with predicted norms (kind `style_prediction`: Magenta's embedding mapped to every
    norm's scale and shift) are read through their `style_params` and `transformer`."""
    from fast_nst.kinds import load_network
    from fast_nst.models.norms import PredictedInstanceNorm2d
    from fast_nst.io.paintings import locate_painting

    net, info = load_network(export)
    image = str(locate_painting(painting))
    with torch.no_grad():
        if hasattr(net, "norm_rows"):
            return {k: (w.float().cpu(), b.float().cpu()) for k, (w, b) in net.norm_rows(style_image=image).items()}
        transformer = getattr(net, "transformer", None)
        if hasattr(net, "style_params") and transformer is not None:
            params = net.style_params(net.condition(style_image=image))[0].float().cpu()
            return {name: (params[m.offset:m.offset + m.num_features],
                           params[m.offset + m.num_features:m.offset + 2 * m.num_features])
                    for name, m in transformer.named_modules() if isinstance(m, PredictedInstanceNorm2d)}
    raise ConfigError(f"warm_start.rows={export}: a {info.kind} network, which predicts no norm rows for "
                      "Johnson's network (give a style_prediction export, `mean`, or a painting of the source)")


def build_warm_start(spec: Any) -> WarmStart | None:
    """The warm start of a `warm_start` config (None: random weights)."""
    if not spec:
        return None
    from hydra.utils import instantiate

    spec = OmegaConf.create(spec) if not isinstance(spec, DictConfig) else spec
    return instantiate(spec)
