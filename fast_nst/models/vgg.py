"""Frozen VGG loss network: one forward pass returns every named layer the losses ask for."""

from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import nn

from fast_nst.weights.convert import IMAGENET_MEAN, IMAGENET_STD
from fast_nst.weights.vgg import load_vgg_state_dict

# Convs per block (Simonyan & Zisserman 2015, configurations D and E).
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
CHANNELS = (64, 128, 256, 512, 512)


def layer_names(arch: str) -> list[str]:
    """Names of torchvision's `features` modules in order: conv1_1, relu1_1, ..., pool1, ..."""
    if arch not in BLOCKS:
        raise ValueError(f"loss_net.arch must be one of {sorted(BLOCKS)}, got {arch!r}")
    names = []
    for b, n in enumerate(BLOCKS[arch], start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


class VGGEncoder(nn.Module):
    """VGG16/19 features cut after the deepest requested layer, frozen and always in eval mode.

    Input: RGB in [0, 1]; ImageNet normalisation happens inside, so every caller agrees on it.
    `forward` returns {layer name: activation} for `layers` only.

    `padding="zeros"` with floor pooling is torchvision's VGG. `padding="reflect"` with
    `ceil_mode=True` is the normalised VGG19 as the AdaIN decoder was trained against it
    (Huang & Belongie's Torch code: reflection padding, ceil-mode max pooling); the weights
    are the same, only the borders differ.
    """

    def __init__(
        self,
        layers: Iterable[str],
        arch: str = "vgg16",
        weights: str | os.PathLike | None = "oxford",
        pooling: str = "max",
        padding: str = "zeros",
        ceil_mode: bool = False,
    ):
        super().__init__()
        names = layer_names(arch)
        self.layers = sorted(set(layers), key=names.index) if layers else []
        unknown = [l for l in set(layers) if l not in names]
        if unknown or not self.layers:
            raise ValueError(f"unknown {arch} layers {unknown or '(none given)'}; choose from {names}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if padding not in ("zeros", "reflect"):
            raise ValueError(f"padding must be 'zeros' or 'reflect', got {padding!r}")
        self.arch, self.pooling, self.padding, self.ceil_mode = arch, pooling, padding, ceil_mode
        last = names.index(self.layers[-1])
        modules, cin = [], 3
        for name in names[: last + 1]:
            if name.startswith("conv"):
                cout = CHANNELS[int(name[4]) - 1]
                modules.append(nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding))
                cin = cout
            elif name.startswith("relu"):
                modules.append(nn.ReLU(inplace=False))
            else:
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                modules.append(pool(2, 2, ceil_mode=ceil_mode))
        self.features = nn.Sequential(*modules)
        self._names = names[: last + 1]
        self.weights_source = "random"
        if weights is not None:
            state, self.weights_source = load_vgg_state_dict(arch, weights)
            own = self.features.state_dict()
            missing = [k for k in own if f"features.{k}" not in state]
            if missing:
                raise ValueError(
                    f"VGG weights from {self.weights_source} lack {missing[:4]}; the layers up to "
                    f"{self.layers[-1]} need them (normalised VGG19 stops at conv5_1)")
            self.features.load_state_dict({k: state[f"features.{k}"] for k in own})
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGEncoder":
        # Frozen loss network: Lightning's model.train() must not flip it.
        return super().train(False)

    def forward(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """`layers` (default: all of `self.layers`) also sets where the pass stops, so content
        targets at relu2_2 never pay for relu4_3."""
        wanted = set(self.layers if layers is None else layers)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, module in zip(self._names, self.features):
            x = module(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def forward_concat(self, output: torch.Tensor, content: torch.Tensor,
                       content_layers: Iterable[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One batched pass over `cat([output, content])` up to the deepest content layer, then
        the output half alone continues to the deepest of `self.layers`.

        Returns (features of `output` at `self.layers`, features of `content` at
        `content_layers`, detached). Same values as two separate passes, up to float rounding.
        """
        content_layers = set(content_layers)
        n = output.shape[0]
        last_content = max(self._names.index(l) for l in content_layers)
        wanted = set(self.layers)
        x = torch.cat([output, content.to(output.dtype)])
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out, tgt = {}, {}
        for i, (name, module) in enumerate(zip(self._names, self.features)):
            x = module(x)
            if i <= last_content:  # x holds both halves
                if name in content_layers:
                    tgt[name] = x[n:].detach()
                if i == last_content:
                    x = x[:n]
            if name in wanted:
                out[name] = x[:n]
                if len(out) == len(wanted):
                    break
        return out, tgt
