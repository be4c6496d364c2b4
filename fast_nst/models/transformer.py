"""Image transformation network of Johnson, Alahi & Fei-Fei (ECCV 2016).

Layout (width multiplier 1): reflection-padded 9x9 conv 32 -> 3x3/2 conv 64 -> 3x3/2 conv 128
-> 5 residual blocks of 128 -> two x2 upsampling convs 64, 32 -> 9x9 conv 3 -> scaled tanh.
Instance norm follows Ulyanov et al. (2016), who showed it beats the paper's batch norm.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

NORMS = ("instance", "batch")
UPSAMPLES = ("transpose", "nearest")


class InstanceNorm2d(nn.InstanceNorm2d):
    """`nn.InstanceNorm2d(affine=True)` (same parameters and state_dict) with a channels_last path.

    PyTorch computes instance norm as batch norm over a (1, B*C, H, W) view, which forces a copy
    of every NHWC activation into NCHW and back (measured: ~30% of the 1024 px forward on CPU).
    For NHWC input this computes the per-image, per-channel statistics directly and applies
    them as one scale-and-shift (in place when no gradient is needed), keeping the layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() != 4 or not self.affine or self.track_running_stats
                or not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous()):
            return super().forward(x)
        b, c, h, w = x.shape
        # (B, H*W, C) view of the NHWC memory: the reductions below run along contiguous C
        # (torch.var_mean over H, W of NHWC measured ~4x slower than mean + vecdot).
        v = x.permute(0, 2, 3, 1).reshape(b, h * w, c).float()
        mean = v.mean(1)
        var = (torch.linalg.vecdot(v, v, dim=1) / (h * w) - mean * mean).clamp_min(0)
        mean, var = mean.view(b, c, 1, 1), var.view(b, c, 1, 1)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        shift = self.bias.view(1, -1, 1, 1) - mean * scale
        scale, shift = scale.to(x.dtype), shift.to(x.dtype)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return torch.addcmul(shift, x, scale)
        return x.mul_(scale).add_(shift)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ConvLayer(nn.Sequential):
    """Reflection padding keeps borders free of the dark frame zero padding leaves."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3), _norm(norm, channels), nn.ReLU(inplace=True),
            ConvLayer(channels, channels, 3), _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


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
    """Maps an RGB batch in [0, 1] to a stylized RGB batch in [0, 1] of exactly the same size."""

    def __init__(
        self,
        width: float = 1.0,
        norm: str = "instance",
        upsample: str = "transpose",
        num_res_blocks: int = 5,
        tanh_scale: float = 1.0,
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.config = dict(width=width, norm=norm, upsample=upsample,
                           num_res_blocks=num_res_blocks, tanh_scale=tanh_scale)
        self.tanh_scale = tanh_scale
        self.encoder = nn.Sequential(
            ConvLayer(3, c1, 9), _norm(norm, c1), nn.ReLU(inplace=True),
            ConvLayer(c1, c2, 3, stride=2), _norm(norm, c2), nn.ReLU(inplace=True),
            ConvLayer(c2, c3, 3, stride=2), _norm(norm, c3), nn.ReLU(inplace=True),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(c3, norm) for _ in range(num_res_blocks)))
        self.decoder = nn.Sequential(
            Upsample(c3, c2, upsample), _norm(norm, c2), nn.ReLU(inplace=True),
            Upsample(c2, c1, upsample), _norm(norm, c1), nn.ReLU(inplace=True),
            ConvLayer(c1, 3, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Two stride-2 convs need sides divisible by 4 (and >= 8 for the inner reflection pads)
        # to come back to the same size; pad up to that and crop afterwards, so any size, odd
        # ones included, round-trips exactly.
        ph, pw = max(8, h + (-h) % 4) - h, max(8, w + (-w) % 4) - w
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.decoder(self.residuals(self.encoder(x)))
        # Scaled tanh (the paper maps to [0, 255]); here it maps to [0, 1]. tanh_scale > 1 softens
        # saturation at the start of training.
        y = 0.5 * (torch.tanh(y / self.tanh_scale) + 1.0)
        return y[..., :h, :w]
