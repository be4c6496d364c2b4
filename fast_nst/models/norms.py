"""Instance normalisation for the transformation networks: plain (Ulyanov et al. 2016), conditional
(Dumoulin, Shlens & Kudlur 2017: one scale and shift per painting) and predicted (Ghiasi et al.
2017: the scale and shift are computed from a painting's style embedding).

Every layer gets its per-image, per-channel statistics from one method, `InstanceNormBase.statistics`,
and then applies a scale and shift that the subclass chooses (`affine`). That split is the seam for
features that need statistics from elsewhere: tiled stylization of huge photos normalises each
tile with the statistics of the whole image (`capture_statistics` on a whole-image pass, then
`fixed_statistics` while running the tiles).

Both layouts are handled without copies: NHWC (channels_last) memory is viewed as (B, H*W, C) and
NCHW as (B, C, H*W), so the reductions run along contiguous memory. PyTorch's own instance norm
copies NHWC activations to NCHW and back (measured: ~30% of the 1024 px forward on CPU).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

Statistics = tuple[torch.Tensor, torch.Tensor]  # (mean, biased variance), float32 (B, C, 1, 1)


class InstanceNormBase(nn.Module):
    """Normalise each image's channels to zero mean and unit variance, then scale and shift.

    `forward(x, cond)`: `cond` is whatever conditions the scale and shift (ignored by the plain
    layer, a painting choice for the conditional one). Without a gradient to compute, the result is
    written into `x` (the networks feed these layers fresh conv outputs), which saves a full-size
    allocation per layer at inference.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        # Replaces `compute_statistics` when set: f(layer, x) -> (mean, var). See fixed_statistics.
        self.statistics_source: Callable[[InstanceNormBase, torch.Tensor], Statistics] | None = None
        # Set by `graph_form` while a network is exported (fast_nst.stylize.onnx): the layer is then
        # written as one ONNX InstanceNormalization (plus a Mul/Add for per-image scales) instead
        # of the dozen elementwise operators its hand-written statistics trace to.
        self.graph_form = False

    def compute_statistics(self, x: torch.Tensor) -> Statistics:
        """Mean and biased variance over H, W of each image and channel, in float32."""
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects (B, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # (B, H*W, C) view of NHWC memory: reduce along H*W with C contiguous, one pass of
            # moments (torch.var_mean over H, W of NHWC measured ~4x slower than mean + vecdot).
            # The fast path since the first exports: kept as is, so they stylize bit-identically.
            v = x.permute(0, 2, 3, 1).reshape(b, h * w, c).float()
            mean = v.mean(1)
            var = (torch.linalg.vecdot(v, v, dim=1) / (h * w) - mean * mean).clamp_min(0)
        else:
            # (B, C, H*W) view of NCHW memory: centred two-pass variance. One-pass moments here
            # drifted from PyTorch's instance norm by ~2e-4 in the loss after 3 Adam steps (the
            # plain profile is the reference the fast one is tested against); centred: < 1e-6.
            v = x.reshape(b, c, h * w).float()
            mean = v.mean(2, keepdim=True)
            d = v - mean
            var = torch.linalg.vecdot(d, d, dim=2) / (h * w)
        return mean.view(b, c, 1, 1), var.view(b, c, 1, 1)

    def statistics(self, x: torch.Tensor) -> Statistics:
        """The statistics this layer normalises `x` with: its own, unless a source is set."""
        if self.statistics_source is not None:
            return self.statistics_source(self, x)
        return self.compute_statistics(x)

    def affine(self, cond, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each (1, C) or (batch, C)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        weight, bias = self.affine(cond, x.shape[0])
        if self.graph_form:
            if type(weight.shape[0]) is int and weight.shape[0] == 1:  # (a symbolic batch is per image)
                # one scale and shift for every image: InstanceNormalization's own
                return F.instance_norm(x, weight=weight[0], bias=bias[0], eps=self.eps)
            return F.instance_norm(x, eps=self.eps) * weight[:, :, None, None] + bias[:, :, None, None]
        mean, var = self.statistics(x)
        scale = weight.float().unsqueeze(-1).unsqueeze(-1) * torch.rsqrt(var + self.eps)
        shift = bias.float().unsqueeze(-1).unsqueeze(-1) - mean * scale
        scale, shift = scale.to(x.dtype), shift.to(x.dtype)
        if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
            return torch.addcmul(shift, x, scale)
        return x.mul_(scale).add_(shift)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class InstanceNorm2d(InstanceNormBase):
    """Instance norm with one learned scale and shift per channel: the parameters and state_dict
    of `nn.InstanceNorm2d(C, affine=True)` (`weight`, `bias`), so Johnson-net exports keep loading."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def affine(self, cond, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight.unsqueeze(0), self.bias.unsqueeze(0)


class ConditionalInstanceNorm2d(InstanceNormBase):
    """One scale and shift per painting (`weight`, `bias`: (num_styles, C)); all else is shared.

    `cond` is either a LongTensor (B,) choosing one painting per image, or a float tensor (B, S) /
    (S,) of mixing weights: the scale and shift are then that combination of the paintings' rows
    (Dumoulin et al. sec. 4: convex combinations blend the styles).
    """

    def __init__(self, num_features: int, num_styles: int, eps: float = 1e-5):
        super().__init__(num_features, eps)
        if num_styles < 1:
            raise ValueError(f"a conditional instance norm needs at least one painting, got num_styles={num_styles}")
        self.num_styles = num_styles
        self.weight = nn.Parameter(torch.ones(num_styles, num_features))
        self.bias = nn.Parameter(torch.zeros(num_styles, num_features))
        # Rows [0, frozen_styles) get no gradient (adding a painting to a trained network must not
        # move the paintings it already has).
        self.frozen_styles = 0

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.frozen_styles
        if not k:
            return self.weight, self.bias
        return (torch.cat([self.weight[:k].detach(), self.weight[k:]]),
                torch.cat([self.bias[:k].detach(), self.bias[k:]]))

    def affine(self, cond, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if cond is None:
            raise ValueError("this network has one scale/shift per painting: pass a painting index "
                             "or mixing weights (e.g. Stylizer(..., style=NAME))")
        weight, bias = self._rows()
        if not torch.is_floating_point(cond):
            return weight[cond], bias[cond]
        if cond.shape[-1] != self.num_styles:
            raise ValueError(f"style weights have {cond.shape[-1]} entries for {self.num_styles} paintings")
        cond = cond.to(weight.dtype).reshape(-1, self.num_styles)  # (S,) -> (1, S)
        return cond @ weight, cond @ bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_styles={self.num_styles}, eps={self.eps}"


class PredictedInstanceNorm2d(InstanceNormBase):
    """Instance norm whose scale and shift are a slice of the predicted parameters: `cond` is the
    (B or 1, P) tensor of every layer's gamma and beta; this layer reads
    cond[:, offset : offset + C] (gamma) and cond[:, offset + C : offset + 2C] (beta)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps)
        self.offset = -1  # set by the network that owns it: where its slice starts, in module order

    def affine(self, cond, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not (isinstance(cond, torch.Tensor) and torch.is_floating_point(cond) and cond.dim() == 2):
            raise ValueError("a network with predicted norms needs the predicted norm parameters (B, P): use "
                             "net.stylize(x, net.condition(style_image=...))")
        c, o = self.num_features, self.offset
        return cond[:, o:o + c], cond[:, o + c:o + 2 * c]

    def extra_repr(self) -> str:
        return f"{self.num_features}, offset={self.offset}, eps={self.eps}"


def instance_norms(net: nn.Module) -> list[InstanceNormBase]:
    """Every instance-norm layer of `net`, in module order (= forward order for the Johnson net)."""
    return [m for m in net.modules() if isinstance(m, InstanceNormBase)]


@contextmanager
def graph_form(net: nn.Module) -> Iterator[None]:
    """Every instance-norm layer of `net` in its export form while the block runs (see
    `InstanceNormBase.graph_form`); same outputs to rounding."""
    layers = instance_norms(net)
    for layer in layers:
        layer.graph_form = True
    try:
        yield
    finally:
        for layer in layers:
            layer.graph_form = False


@contextmanager
def capture_statistics(net: nn.Module) -> Iterator[dict[InstanceNormBase, Statistics]]:
    """Record the statistics every instance-norm layer computes during the block:
    `with capture_statistics(net) as stats: net(whole_image)`. Detached, one entry per layer."""
    stats: dict[InstanceNormBase, Statistics] = {}

    def record(layer: InstanceNormBase, x: torch.Tensor) -> Statistics:
        mean, var = layer.compute_statistics(x)
        stats[layer] = (mean.detach(), var.detach())
        return mean, var

    with _statistics_source(net, record):
        yield stats


@contextmanager
def fixed_statistics(net: nn.Module, stats: dict[InstanceNormBase, Statistics]) -> Iterator[None]:
    """Normalise with the given statistics (from `capture_statistics`) instead of each input's own,
    e.g. every tile of a huge photo with the statistics of the whole photo."""
    missing = [l for l in instance_norms(net) if l not in stats]
    if missing:
        raise ValueError(f"fixed_statistics: no statistics for {len(missing)} of the network's instance-norm layers")
    with _statistics_source(net, lambda layer, x: stats[layer]):
        yield


@contextmanager
def _statistics_source(net: nn.Module, source) -> Iterator[None]:
    layers = instance_norms(net)
    previous = [l.statistics_source for l in layers]
    for l in layers:
        l.statistics_source = source
    try:
        yield
    finally:
        for l, p in zip(layers, previous):
            l.statistics_source = p
