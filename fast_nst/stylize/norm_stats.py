"""Instance-norm statistics that come from somewhere else than the tensor being normalised.

Tiling a huge photo needs every tile normalised with the statistics of the *whole* image (per-tile
statistics give each tile its own contrast and colour cast, and the seams show). This module
records the per-layer, per-channel mean and variance of one forward pass and replays them in later
passes.

fast_nst's networks normalise in `fast_nst.models.norms.InstanceNormBase` layers (plain and
conditional instance norm), whose statistics come from one hook, `statistics_source`: the override
sets it for the duration of a `with` block, so each layer still applies its own scale and shift
(per painting, for the conditional one). Networks written with `torch.nn.InstanceNorm2d` (e.g. a
reference Johnson net) have no such hook: their `forward` is swapped instead. `_instance_norm_layers`
and `_override` are the only places that know how a network normalises.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from fast_nst.models.norms import InstanceNormBase

NormLayer = InstanceNormBase | nn.InstanceNorm2d


@dataclass
class Moments:
    """Per-channel mean and (biased) variance of one norm layer's input, shape (B, C, 1, 1)."""
    mean: torch.Tensor
    var: torch.Tensor


@dataclass
class NormStatistics:
    """Moments of each instance-norm layer of one network, in `net.modules()` order."""
    layers: list[Moments] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.layers)

    def select(self, index: int) -> "NormStatistics":
        """The statistics of image `index` of the batch they were recorded on."""
        return NormStatistics([Moments(m.mean[index:index + 1], m.var[index:index + 1]) for m in self.layers])


def _instance_norm_layers(net: nn.Module) -> list[NormLayer]:
    layers = [m for m in net.modules() if isinstance(m, (InstanceNormBase, nn.InstanceNorm2d))]
    for m in layers:
        if getattr(m, "track_running_stats", False):
            raise ValueError(f"{type(m).__name__} with track_running_stats=True normalises with running "
                             "statistics already; whole-image statistics do not apply")
    return layers


def norm_layer_count(net: nn.Module) -> int:
    return len(_instance_norm_layers(net))


def _normalise(layer: nn.InstanceNorm2d, x: torch.Tensor, moments: Moments) -> torch.Tensor:
    """What the layer computes, with the given moments instead of x's own (any memory layout)."""
    scale = torch.rsqrt(moments.var + layer.eps)
    shift = -moments.mean * scale
    if layer.affine:
        w = layer.weight.view(1, -1, 1, 1)
        scale, shift = scale * w, shift * w + layer.bias.view(1, -1, 1, 1)
    return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


def _moments(x: torch.Tensor) -> Moments:
    var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
    return Moments(mean, var)


def _own_moments(layer: NormLayer, x: torch.Tensor) -> Moments:
    """The moments the layer itself would normalise x with (InstanceNormBase: its own reduction,
    so recording passes stay bit-identical to plain ones)."""
    if isinstance(layer, InstanceNormBase):
        return Moments(*layer.compute_statistics(x))
    return _moments(x)


@contextmanager
def _patched(net: nn.Module, moments_for) -> Iterator[None]:
    """Inside the block, norm layer i normalises x with `moments_for(i, layer)(x)` (a Moments)
    instead of x's own, and otherwise computes what it always does."""
    layers = _instance_norm_layers(net)
    if not layers:
        raise ValueError(f"{type(net).__name__} has no instance-norm layers; tiling with whole-image "
                         "statistics needs a network that normalises per image")
    previous = [getattr(layer, "statistics_source", None) for layer in layers]
    try:
        for i, layer in enumerate(layers):
            _override(layer, moments_for(i, layer))
        yield
    finally:
        for layer, p in zip(layers, previous):
            if isinstance(layer, InstanceNormBase):
                layer.statistics_source = p
            else:
                layer.__dict__.pop("forward", None)


def _override(layer: NormLayer, moments_of) -> None:
    if isinstance(layer, InstanceNormBase):
        def source(_layer: InstanceNormBase, x: torch.Tensor):
            m = moments_of(x)
            return m.mean, m.var
        layer.statistics_source = source  # the layer's own hook; its scale/shift are untouched
    else:
        # instance attribute shadows the class's forward
        layer.forward = lambda x: _normalise(layer, x, moments_of(x))


@contextmanager
def recording(net: nn.Module) -> Iterator[NormStatistics]:
    """Inside the block, forward passes normalise as usual and the moments of every instance-norm
    layer are recorded (the last pass wins)."""
    stats = NormStatistics([None] * len(_instance_norm_layers(net)))

    def moments_for(i: int, layer: NormLayer):
        def moments(x: torch.Tensor) -> Moments:
            m = _own_moments(layer, x)
            stats.layers[i] = Moments(m.mean.detach(), m.var.detach())
            return m
        return moments

    with _patched(net, moments_for):
        yield stats
    if any(m is None for m in stats.layers):
        raise RuntimeError("a recording pass did not run every instance-norm layer; run one full forward "
                           "pass inside `recording(net)`")


class MomentSums:
    """Running per-channel sums of each norm layer's input over chosen regions of many passes, to
    turn into the statistics of the whole they partition (tiles of an image too big for one pass).

    Before each pass set `region = (top, bottom, left, right)` (the part of this pass's input that
    this pass owns) and `padded = (H, W)` (the input size the network actually convolves, after its
    own padding): a layer whose input is k times smaller than `padded` sums the region divided by k.
    Region borders must be multiples of the network's total stride."""

    def __init__(self, n_layers: int):
        self.s1: list[torch.Tensor | None] = [None] * n_layers
        self.s2: list[torch.Tensor | None] = [None] * n_layers
        self.count = [0] * n_layers
        self.region: tuple[int, int, int, int] | None = None
        self.padded: tuple[int, int] | None = None

    def add(self, i: int, x: torch.Tensor) -> None:
        if self.region is None or self.padded is None:
            raise RuntimeError("set MomentSums.region and .padded before each pass")
        top, bottom, left, right = self.region
        kh, kw = self.padded[0] // x.shape[2], self.padded[1] // x.shape[3]
        part = x[:, :, top // kh: bottom // kh, left // kw: right // kw].double()
        s1, s2 = part.sum((2, 3), keepdim=True), (part * part).sum((2, 3), keepdim=True)
        self.s1[i] = s1 if self.s1[i] is None else self.s1[i] + s1
        self.s2[i] = s2 if self.s2[i] is None else self.s2[i] + s2
        self.count[i] += part.shape[2] * part.shape[3]

    def moments(self, i: int) -> Moments:
        """Mean and variance of layer i's input over everything summed (float64 sums, so the
        E[x^2] - E[x]^2 of millions of pixels keeps its precision)."""
        if self.count[i] == 0:
            raise RuntimeError(f"no pixels summed for norm layer {i}; the regions cover nothing")
        mean = self.s1[i] / self.count[i]
        return Moments(mean.float(), (self.s2[i] / self.count[i] - mean * mean).clamp_min(0).float())


class _StopForward(Exception):
    """Raised inside a norm layer to end a forward pass once the layer being measured is summed."""


@torch.inference_mode()
def measure_layer(net: nn.Module, x: torch.Tensor, known: NormStatistics, layer: int, sums: MomentSums) -> None:
    """Run `net(x)` only as far as norm layer `layer` (in `net.modules()` order): the layers before
    it normalise with `known`, its input is added to `sums` (at index `layer`), and the pass stops
    there, which saves the rest of the network. Layers must run in module order."""
    layers = _instance_norm_layers(net)

    def moments_for(i: int, layer_module: NormLayer):
        def moments(t: torch.Tensor) -> Moments:
            if i == layer:
                sums.add(i, t)
                raise _StopForward
            m = known.layers[i]
            if m is None or i > layer:
                raise RuntimeError(f"norm layer {i} ran before layer {layer} was measured; progressive "
                                   "statistics need norm layers that run in module order")
            return Moments(m.mean.to(t.device), m.var.to(t.device))
        return moments

    if not 0 <= layer < len(layers):
        raise IndexError(f"norm layer {layer} out of range ({len(layers)} layers)")
    try:
        with _patched(net, moments_for):
            net(x)
    except _StopForward:
        return
    raise RuntimeError(f"norm layer {layer} never ran in a forward pass of {type(net).__name__}")


@contextmanager
def replaying(net: nn.Module, stats: NormStatistics, sums: MomentSums | None = None) -> Iterator[None]:
    """Inside the block, every instance-norm layer normalises with the recorded moments instead of
    its input's own. The batch must have as many images as the recording, or one of them. With
    `sums`, each layer's input (before normalisation) is also added to them."""
    layers = _instance_norm_layers(net)
    if len(stats) != len(layers):
        raise ValueError(f"statistics for {len(stats)} norm layers, but {type(net).__name__} has {len(layers)}; "
                         "record them with the same network")

    def moments_for(i: int, layer: NormLayer):
        m = stats.layers[i]

        def moments(x: torch.Tensor) -> Moments:
            if m.mean.shape[1] != x.shape[1]:
                raise ValueError(f"norm layer {i}: recorded {m.mean.shape[1]} channels, input has {x.shape[1]}")
            if sums is not None:
                sums.add(i, x)
            return Moments(m.mean.to(x.device), m.var.to(x.device))
        return moments

    with _patched(net, moments_for):
        yield
