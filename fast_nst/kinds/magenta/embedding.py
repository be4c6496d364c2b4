"""`EmbeddingStyleNetwork`: any painting through a style embedding (Ghiasi et al. 2017).

    painting -> StylePredictor -> 100-d embedding -> StyleParameters -> the scale and shift of
    every predicted instance norm -> transformation network(photo)

What the kinds built on it share: `condition` embeds the painting(s) once (several mix by
`style_weights`, a weighted sum of embeddings); `stylize`'s `strength` interpolates between the
photo's own embedding (0) and the painting's (1), the paper's control; training pairs every photo
with a painting crop (`fast_nst.training.data.paintings`) and scores the output against that painting's
Grams on the run's loss network (`PerceptualLoss.paired_terms`). A subclass builds `predictor`,
`style_params` and `transform(x, params)`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fast_nst.kinds.base import (StyleChoiceError, StyleNetwork, arbitrary_paintings, check_strength,
                                 embedding_feed, paired_batch)
from fast_nst.kinds.magenta.networks import StyleParameters, StylePredictor


def fit_long_side(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """(B, 3, H, W) resized (antialiased) so the long side is `size`; unchanged when None."""
    if not size or max(images.shape[-2:]) == size:
        return images
    s = size / max(images.shape[-2:])
    hw = (max(1, round(images.shape[-2] * s)), max(1, round(images.shape[-1] * s)))
    return F.interpolate(images, size=hw, mode="bilinear", antialias=True, align_corners=False)


class EmbeddingStyleNetwork(StyleNetwork):
    arbitrary_style = True
    strength_blends = False  # strength interpolates embeddings: 0 is the photo's own style, rendered

    predictor: StylePredictor
    style_params: StyleParameters
    train_predictor: bool = False

    def transform(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) photos and (B or 1, P) norm parameters -> stylized (B, 3, H, W)."""
        raise NotImplementedError

    @property
    def style_size(self) -> int | None:
        """The long side paintings (and photos, for `strength`) are embedded at."""
        return self.config.get("style_size")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 100) style embeddings, at the predictor's scale."""
        images = fit_long_side(images, self.style_size)
        dtype = self.predictor.stem.weight.dtype  # float16 after .half() on a GPU
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_predictor):
            return self.predictor(images.to(dtype))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """`cond`: the embedding, (1, 100) for every image or (B, 100) one each."""
        if not (isinstance(cond, torch.Tensor) and cond.dim() == 2):
            raise StyleChoiceError(f"a {self.kind} network needs a painting: net.stylize(x, net.condition(style_image=...))")
        params = self.style_params(cond.to(self.style_params.linear.weight.dtype))
        return self.transform(x, params.to(x.dtype))

    # ------------------------------------------------------------------ inference
    def condition(self, style: str | None = None, style_weights: Mapping[str, float] | Sequence[float] | None = None,
                  style_image: Any = None, style_size: int | None = None) -> torch.Tensor:
        """The painting's embedding (1, 100), computed once; several paintings mix their
        embeddings by `style_weights` (the paper's style interpolation). `style_size` caps the
        painting's long side before it is embedded at the predictor's scale (`style_size` of the
        config)."""
        paintings, weights = arbitrary_paintings(self.kind, style, style_weights, style_image,
                                                 style_size or self.style_size)
        with torch.inference_mode():
            return sum(w * self.embed(p.to(self.device)) for p, w in zip(paintings, weights))

    def stylize(self, x: torch.Tensor, cond: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
        check_strength(strength)
        if not (isinstance(cond, torch.Tensor) and cond.dim() == 2):
            raise StyleChoiceError(f"a {self.kind} network needs a painting: net.stylize(x, net.condition(style_image=...))")
        e = cond.to(x.device, self.style_params.linear.weight.dtype).expand(x.shape[0], -1)
        if strength < 1.0:
            # each photo's own embedding (Ghiasi et al. sec. 4: interpolating towards it weakens the
            # stylization while staying a rendering by the network)
            e = torch.lerp(self.embed(x).to(e.dtype), e, float(strength))
        return self(x, e)

    # ------------------------------------------------------------------ ONNX: the embedding is an input
    def graph_inputs(self) -> dict[str, int]:
        return {"embedding": self.style_params.linear.in_features}

    def graph_feed(self, x: torch.Tensor, cond: torch.Tensor, strength: float) -> dict[str, torch.Tensor]:
        return {"embedding": embedding_feed(self, x, cond, strength)}  # the predictor stays in PyTorch

    def graph_forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self(x, embedding)

    # ------------------------------------------------------------------ training
    def parameter_groups(self) -> list[dict]:
        frozen = () if self.train_predictor else tuple(self.predictor.parameters())
        return [{"params": [p for p in self.parameters()
                            if p.requires_grad and not any(p is f for f in frozen)]}]

    def build_objective(self, loss: Mapping, loss_net: Mapping, vgg_pass: str) -> nn.Module:
        """The run's perceptual loss; the style targets are each image's own painting, set per step
        in `training_step`."""
        from fast_nst.models.losses import PerceptualLoss

        return PerceptualLoss.build(loss, loss_net, vgg_pass=vgg_pass)

    def training_step(self, objective: nn.Module, batch: Any, style_index: torch.Tensor | None,
                      forward: Callable | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        photos, paintings = paired_batch(batch, self.kind)
        out = (forward or self)(photos, self.embed(paintings))
        return out, objective.paired_terms(out, photos, paintings)

    def validation_styles(self) -> list[tuple[str, int | None]]:
        return [("stylized", None)]
