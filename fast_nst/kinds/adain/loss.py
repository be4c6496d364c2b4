"""AdaIN's decoder loss (Huang & Belongie 2017, sec. 6.2): content at relu4_1 against the AdaIN
target the image was decoded from, and a mean/std style loss at relu1_1..relu4_1 against the
painting it was stylized with. Its weights and layers live in conf/loss/adain.yaml (`paper`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from fast_nst.models.losses import ContentLoss, Features, layer_weights
from fast_nst.models.stats import channel_mean_std

# Where the encoder's features feed the losses: relu4_1 is also where AdaIN's target lives.
ADAIN_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYER = "relu4_1"


class MeanStdStyleLoss(nn.Module):
    """AdaIN's style loss (Huang & Belongie 2017, eq. 12): at each layer, the mean squared
    difference of the channel means plus that of the channel stds, between the output and the
    painting it was stylized with. Targets come per batch (each photo is paired with its own
    painting), unlike `StyleLoss`'s fixed Gram targets."""

    def __init__(self, layers: Mapping[str, float] | list[str]):
        super().__init__()
        self.layer_weights = layer_weights(layers)

    def forward(self, output: Features, style: Features) -> torch.Tensor:
        loss = 0.0
        for l, w in self.layer_weights.items():
            out_mean, out_std = channel_mean_std(output[l])
            with torch.no_grad():
                tgt_mean, tgt_std = channel_mean_std(style[l])
            loss = loss + w * (F.mse_loss(out_mean, tgt_mean) + F.mse_loss(out_std, tgt_std))
        return loss



class AdaINLoss(nn.Module):
    """The AdaIN decoder's training loss: content_weight * content + style_weight * style.

    content: mean squared distance at relu4_1 between the decoded image's features and the AdaIN
    target it was decoded from (not the photo's features: the decoder must invert AdaIN).
    style: `MeanStdStyleLoss` at relu1_1..relu4_1 against the painting's features.
    Both come from one encoder pass over the decoded image. The paper's weights (content 1,
    style 10) are conf/loss/adain.yaml's: `AdaINLoss.paper(encoder)`. `forward(output, target,
    style_features)` returns {content, style, loss}.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        content_weight: float,
        style_weight: float,
        style_layers: Mapping[str, float] | Sequence[str] = ADAIN_STYLE_LAYERS,
        content_layer: str = CONTENT_LAYER,
    ):
        super().__init__()
        self.encoder = encoder
        self.content_layer = content_layer
        self.content = ContentLoss([content_layer])
        self.style = MeanStdStyleLoss(style_layers)
        self.content_weight, self.style_weight = content_weight, style_weight

    @classmethod
    def paper(cls, encoder: nn.Module) -> "AdaINLoss":
        """The loss of conf/loss/adain.yaml (the paper's weights), on `encoder`."""
        from fast_nst.io.paths import group_config

        loss = group_config("loss", "adain")
        return cls(encoder, style_layers=dict(loss["style_layers"]), content_weight=float(loss["content_weight"]),
                   style_weight=float(loss["style_weight"]))

    @property
    def layers(self) -> list[str]:
        return sorted(set(self.style.layer_weights) | {self.content_layer})

    def forward(self, output: torch.Tensor, target: torch.Tensor, style_features: Features
                ) -> dict[str, torch.Tensor]:
        out_f = self.encoder(output, layers=self.layers)
        terms = {
            "content": self.content_weight * self.content(out_f, {self.content_layer: target}),
            "style": self.style_weight * self.style(out_f, style_features),
        }
        terms["loss"] = terms["content"] + terms["style"]
        return terms
