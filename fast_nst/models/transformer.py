"""Image transformation network of Johnson, Alahi & Fei-Fei (ECCV 2016).

Layout (width multiplier 1): reflection-padded 9x9 conv 32 -> 3x3/2 conv 64 -> 3x3/2 conv 128
-> 5 residual blocks of 128 -> two x2 upsampling convs 64, 32 -> 9x9 conv 3 -> scaled tanh.
Instance norm follows Ulyanov et al. (2016), who showed it beats the paper's batch norm; the
conditional variant (one scale/shift per painting) is Dumoulin, Shlens & Kudlur (2017).
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import nn
import torch.nn.functional as F

from fast_nst.models.norms import ConditionalInstanceNorm2d, InstanceNorm2d, InstanceNormBase

NORMS = ("instance", "conditional", "batch")
UPSAMPLES = ("transpose", "nearest")
BLOCKS = ("conv", "separable")
# Shape options beyond the paper's layout, with the values that give the paper's network. A
# network's `config` records one of these only when it differs, so the exports of every network
# built before these options existed keep their metadata (and load with these defaults).
SHAPE_DEFAULTS = {"outer_kernel": 9, "block": "conv"}

# A norm by name (NORMS), or a factory `channels -> module` for a network kind's own layer.
Norm = Union[str, Callable[[int], nn.Module]]


def _norm(norm: Norm, channels: int, num_styles: int | None) -> nn.Module:
    if callable(norm):  # a kind's own layer, e.g. an instance norm whose scale/shift are predicted
        return norm(channels)
    if norm == "instance":
        return InstanceNorm2d(channels)
    if norm == "conditional":
        if not num_styles:
            raise ValueError("norm=conditional needs num_styles (the number of paintings)")
        return ConditionalInstanceNorm2d(channels, num_styles)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be one of {NORMS} or a callable channels -> module, got {norm!r}")


def shape_options(**options) -> dict:
    """The shape options (`SHAPE_DEFAULTS`' keys) that differ from the paper's network: what a
    network's `config` records."""
    unknown = sorted(set(options) - set(SHAPE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown shape option(s) {unknown}; known: {sorted(SHAPE_DEFAULTS)}")
    return {k: v for k, v in options.items() if v != SHAPE_DEFAULTS[k]}


def _run(layers: nn.Sequential, x: torch.Tensor, cond) -> torch.Tensor:
    """`layers(x)`, handing the style condition to the layers that take one."""
    for layer in layers:
        x = layer(x, cond) if isinstance(layer, (InstanceNormBase, ResidualBlock)) else layer(x)
    return x


class ConvLayer(nn.Sequential):
    """Reflection padding keeps borders free of the dark frame zero padding leaves."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class SeparableConvLayer(nn.Sequential):
    """A 3x3 depthwise conv (reflection-padded) then a 1x1 pointwise conv: (9 + C_out) x C_in
    multiply-adds per pixel instead of 9 x C_in x C_out (MobileNet's factorisation)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cin, kernel, groups=cin),
                         nn.Conv2d(cin, cout, 1))


class ResidualBlock(nn.Module):
    """Two 3x3 convs, each followed by a norm (ReLU between them), added to the input.
    `block="separable"`: each conv is depthwise 3x3 + pointwise 1x1 (`SeparableConvLayer`)."""

    def __init__(self, channels: int, norm: Norm, num_styles: int | None = None, block: str = "conv"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        conv = ConvLayer if block == "conv" else SeparableConvLayer
        self.body = nn.Sequential(
            conv(channels, channels, 3), _norm(norm, channels, num_styles), nn.ReLU(inplace=True),
            conv(channels, channels, 3), _norm(norm, channels, num_styles),
        )

    def forward(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        return x + _run(self.body, x, cond)


class Upsample(nn.Module):
    """x2 upsampling. `transpose` is the paper's fractionally-strided conv; `nearest` (resize then
    conv, Odena et al. 2016) avoids its checkerboard artefacts."""

    def __init__(self, cin: int, cout: int, mode: str):
        super().__init__()
        if mode == "transpose":
            self.op = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        elif mode == "nearest":
            self.op = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(cin, cout, 3))
        else:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class TransformerNet(nn.Module):
    """Maps an RGB batch in [0, 1] to a stylized RGB batch in [0, 1] of exactly the same size.

    `norm="conditional"` puts a conditional instance norm with `num_styles` rows wherever the
    paper's network has a norm (Dumoulin et al. 2017); `forward(x, cond)` then needs `cond`, the
    painting index per image or mixing weights (see `ConditionalInstanceNorm2d`). `norm` may also
    be a callable `channels -> module`, for kinds that bring their own norm layer (an
    `InstanceNormBase` there receives `cond` too); `self.config` then records `norm="custom"`,
    and the kind's own `config` is what an export stores. The module tree, and so the
    state_dict keys, are the same for every norm: `encoder.1.weight` is the first norm's scale
    whether it has shape (C,) or (num_styles, C).

    Shape options for small, fast networks (conf/model/compact.yaml): `width` scales every
    channel count (0.25: 8/16/32); `outer_kernel` is the first and last conv's kernel (the
    paper's 9); `block="separable"` makes the residual convs depthwise-separable. The defaults
    are the paper's network, and `config` lists these options only when they differ from
    `SHAPE_DEFAULTS`.
    """

    def __init__(
        self,
        width: float = 1.0,
        norm: Norm = "instance",
        upsample: str = "transpose",
        num_res_blocks: int = 5,
        tanh_scale: float = 1.0,
        num_styles: int | None = None,
        outer_kernel: int = 9,
        block: str = "conv",
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if outer_kernel < 1 or outer_kernel % 2 == 0:
            raise ValueError(f"outer_kernel must be an odd size >= 1 (the paper: 9), got {outer_kernel}")
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        # JSON only: a norm factory is recorded as "custom" (its kind records what rebuilds it)
        self.config = dict(width=width, norm="custom" if callable(norm) else norm, upsample=upsample,
                           num_res_blocks=num_res_blocks, tanh_scale=tanh_scale)
        if norm == "conditional":
            self.config["num_styles"] = num_styles
        self.config.update(shape_options(outer_kernel=outer_kernel, block=block))
        self.tanh_scale = tanh_scale

        def nrm(c: int) -> nn.Module:
            return _norm(norm, c, num_styles)

        self.encoder = nn.Sequential(
            ConvLayer(3, c1, outer_kernel), nrm(c1), nn.ReLU(inplace=True),
            ConvLayer(c1, c2, 3, stride=2), nrm(c2), nn.ReLU(inplace=True),
            ConvLayer(c2, c3, 3, stride=2), nrm(c3), nn.ReLU(inplace=True),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(c3, norm, num_styles, block) for _ in range(num_res_blocks)))
        self.decoder = nn.Sequential(
            Upsample(c3, c2, upsample), nrm(c2), nn.ReLU(inplace=True),
            Upsample(c2, c1, upsample), nrm(c1), nn.ReLU(inplace=True),
            ConvLayer(c1, 3, outer_kernel),
        )

    def forward(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Two stride-2 convs need sides divisible by 4 (and >= 8 for the inner reflection pads)
        # to come back to the same size; pad up to that and crop afterwards, so any size, odd
        # ones included, round-trips exactly.
        ph, pw = max(8, h + (-h) % 4) - h, max(8, w + (-w) % 4) - w
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = _run(self.decoder, _run(self.residuals, _run(self.encoder, x, cond), cond), cond)
        # Scaled tanh (the paper maps to [0, 255]); here it maps to [0, 1]. tanh_scale > 1 softens
        # saturation at the start of training.
        y = 0.5 * (torch.tanh(y / self.tanh_scale) + 1.0)
        return y[..., :h, :w]
