"""Perceptual losses (Johnson et al. 2016; Gatys et al. 2016) as
composable modules.

Every loss reads a dict {layer: activation} produced by one shared `VGGEncoder` pass, so a
training step runs the loss network once no matter how many terms it has. A kind with a loss of
its own keeps it in its package (AdaIN's: fast_nst/kinds/adain/loss.py).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from fast_nst.models.stats import gram_matrix

Features = Mapping[str, torch.Tensor]


def layer_weights(layers: Mapping[str, float] | list[str]) -> dict[str, float]:
    if isinstance(layers, Mapping):
        return {str(k): float(v) for k, v in layers.items()}
    return {str(k): 1.0 for k in layers}


class ContentLoss(nn.Module):
    """Feature reconstruction loss: mean squared distance of activations."""

    def __init__(self, layers: Mapping[str, float] | list[str]):
        super().__init__()
        self.layer_weights = layer_weights(layers)

    def forward(self, output: Features, target: Features) -> torch.Tensor:
        return sum(w * F.mse_loss(output[l].float(), target[l].float().detach())
                   for l, w in self.layer_weights.items())


class StyleLoss(nn.Module):
    """Gram-matrix style reconstruction loss against fixed target Grams.

    Targets are set once per run, either blended (`set_targets`: several paintings mixed by
    weight into one Gram per layer, Gatys-style mixing) or one per painting
    (`set_targets_per_style`: a multi-style network, where `forward(output, style_index)` compares
    each image with the Grams of the painting it was drawn with).
    """

    def __init__(self, layers: Mapping[str, float] | list[str]):
        super().__init__()
        self.layer_weights = layer_weights(layers)
        for l in self.layer_weights:
            self.register_buffer(f"target_{l}", torch.empty(0), persistent=False)

    @torch.no_grad()
    def set_targets(self, style_feats: list[Features], blend: list[float] | None = None) -> None:
        blend = blend or [1.0] * len(style_feats)
        if len(blend) != len(style_feats):
            raise ValueError(f"{len(style_feats)} style images but {len(blend)} blend weights")
        total = float(sum(blend))
        for l in self.layer_weights:
            g = sum(w / total * gram_matrix(f[l]).mean(0, keepdim=True) for f, w in zip(style_feats, blend))
            setattr(self, f"target_{l}", g)

    @torch.no_grad()
    def set_targets_per_style(self, style_feats: list[Features]) -> None:
        """Row s of every layer's target is painting s's Gram: (S, C, C)."""
        for l in self.layer_weights:
            setattr(self, f"target_{l}", torch.cat([gram_matrix(f[l]).mean(0, keepdim=True) for f in style_feats]))

    def target(self, layer: str) -> torch.Tensor:
        return getattr(self, f"target_{layer}")

    def paired(self, output: Features, style: Features) -> torch.Tensor:
        """(B,) per-image loss against each image's own style features (not the fixed targets)."""
        return sum(w * (gram_matrix(output[l]) - gram_matrix(style[l]).detach()).pow(2).mean((1, 2))
                   for l, w in self.layer_weights.items())

    def forward(self, output: Features, style_index: torch.Tensor | None = None) -> torch.Tensor:
        """The loss averaged over the batch; with `style_index` (B,), the per-image loss (B,)
        against each image's own painting."""
        loss = 0.0
        for l, w in self.layer_weights.items():
            t = self.target(l)
            if t.numel() == 0:
                raise RuntimeError("StyleLoss.set_targets() was never called")
            g = gram_matrix(output[l])
            if style_index is None:
                loss = loss + w * F.mse_loss(g, t.expand_as(g))
            else:
                loss = loss + w * (g - t[style_index]).pow(2).mean((1, 2))
        return loss


def total_variation(img: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels (Mahendran & Vedaldi's beta=2 TV)."""
    dh = img[..., 1:, :] - img[..., :-1, :]
    dw = img[..., :, 1:] - img[..., :, :-1]
    return dh.float().pow(2).mean() + dw.float().pow(2).mean()


VGG_PASSES = ("separate", "concat", "full")


class PerceptualLoss(nn.Module):
    """content_weight * content + style_weight * style + tv_weight * TV, from one VGG pass.

    `forward(output, content)` returns a dict with `loss` and each weighted term.

    `vgg_pass` chooses how the loss network sees the two batches (all give the same loss up to
    float rounding; `benchmarks/bench.py` measures them):

    * ``separate`` (default): one pass over the output to the deepest loss layer, plus a
      no-grad pass over the content that stops at the deepest *content* layer (relu2_2).
    * ``concat``: output and content concatenated along the batch go through the shared layers
      in one call (bigger convs), then only the output half continues to the deeper style layers.
      Costs an input-gradient backward over the content half of the shared layers.
    * ``full``: two full passes to the deepest layer, as pytorch/examples does (the bench's
      ``plain`` profile).
    """

    def __init__(
        self,
        encoder: nn.Module,
        content_layers: Mapping[str, float] | list[str],
        style_layers: Mapping[str, float] | list[str],
        content_weight: float = 1.0,
        style_weight: float = 1.0,
        tv_weight: float = 0.0,
        vgg_pass: str = "separate",
    ):
        super().__init__()
        if vgg_pass not in VGG_PASSES:
            raise ValueError(f"vgg_pass must be one of {VGG_PASSES}, got {vgg_pass!r}")
        self.vgg_pass = vgg_pass
        self.encoder = encoder
        self.content = ContentLoss(content_layers)
        self.style = StyleLoss(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        # per-painting multipliers of style_weight (set_styles); a buffer so it follows .to(device)
        self.register_buffer("style_multipliers", torch.empty(0), persistent=False)

    @property
    def layers(self) -> list[str]:
        return sorted(set(self.content.layer_weights) | set(self.style.layer_weights))

    @torch.no_grad()
    def set_style(self, style_images: list[torch.Tensor], blend: list[float] | None = None) -> None:
        self.style.set_targets([self.encoder(s) for s in style_images], blend)

    @torch.no_grad()
    def set_styles(self, style_images: list[torch.Tensor], multipliers: list[float]) -> None:
        """One target per painting (multi-style training) and each painting's multiplier of
        `style_weight`; `forward(..., style_index=)` then picks them per image."""
        if len(multipliers) != len(style_images):
            raise ValueError(f"{len(style_images)} paintings but {len(multipliers)} style-weight multipliers")
        self.style.set_targets_per_style([self.encoder(s) for s in style_images])
        self.style_multipliers = torch.tensor(multipliers, dtype=torch.float32, device=self.style_multipliers.device)

    def features(self, output: torch.Tensor, content: torch.Tensor) -> tuple[Features, Features]:
        """(loss-layer features of the output, content-layer features of the content)."""
        content = content.to(output.dtype)
        if self.vgg_pass == "concat" and hasattr(self.encoder, "forward_concat"):
            return self.encoder.forward_concat(output, content, self.content.layer_weights)
        # One pass over the output serves every term.
        out_f = self.encoder(output)
        if self.vgg_pass == "full":
            return out_f, self.encoder(content)
        # The content targets need no gradient and stop at the deepest content layer (relu2_2:
        # a fraction of the cost of relu4_3).
        with torch.no_grad():
            tgt_f = self.encoder(content, layers=self.content.layer_weights)
        return out_f, tgt_f

    @classmethod
    def build(cls, loss: Mapping, loss_net: Mapping, style_weight_scale: float = 1.0,
              weights: str | None = None, vgg_pass: str = "separate") -> "PerceptualLoss":
        """From the `loss` and `loss_net` config groups: a VGG encoder cut at the deepest loss
        layer, and the weighted terms. `style_weight_scale` is the painting's own multiplier
        (`style.weight`); `weights` overrides `loss_net.weights`."""
        from fast_nst.models.vgg import VGGEncoder

        encoder = VGGEncoder(set(loss["content_layers"]) | set(loss["style_layers"]), arch=loss_net["arch"],
                             weights=weights or loss_net["weights"], pooling=loss_net["pooling"])
        return cls(encoder, loss["content_layers"], loss["style_layers"],
                   content_weight=loss["content_weight"],
                   style_weight=loss["style_weight"] * style_weight_scale,
                   tv_weight=loss["tv_weight"], vgg_pass=vgg_pass)

    def weighted_terms(self, out_f: Features, tgt_f: Features, output: torch.Tensor,
                       style_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss dict from the output's features, the content targets and the output image.

        With `style_index` (per-painting targets, `set_styles`), each image's style term uses its
        painting's Grams and multiplier, and the dict also holds `style_per_image` (B,), weighted.
        """
        if style_index is None:
            style = self.style_weight * self.style(out_f)
            per_image = None
        else:
            per_image = self.style_weight * self.style_multipliers[style_index] * self.style(out_f, style_index)
            style = per_image.mean()
        terms = {
            "content": self.content_weight * self.content(out_f, tgt_f),
            "style": style,
            "tv": self.tv_weight * total_variation(output),
        }
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        if per_image is not None:
            terms["style_per_image"] = per_image
        return terms

    def forward(self, output: torch.Tensor, content: torch.Tensor,
                style_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out_f, tgt_f = self.features(output, content)
        return self.weighted_terms(out_f, tgt_f, output, style_index)

    def paired_terms(self, output: torch.Tensor, content: torch.Tensor, paintings: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss dict when every image has a painting of its own (arbitrary-style training):
        image i's style term compares it with the Grams of `paintings[i]`, computed here in the same
        loss network. Also holds `style_per_image` (B,), weighted."""
        out_f, tgt_f = self.features(output, content)
        with torch.no_grad():
            painting_f = self.encoder(paintings.to(output.dtype), layers=self.style.layer_weights)
        per_image = self.style_weight * self.style.paired(out_f, painting_f)
        terms = {"content": self.content_weight * self.content(out_f, tgt_f), "style": per_image.mean(),
                 "tv": self.tv_weight * total_variation(output)}
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        terms["style_per_image"] = per_image
        return terms
