"""Kind `style_prediction`: any painting through a predicted style embedding (Ghiasi, Lee, Kudlur,
Dumoulin & Shlens, "Exploring the structure of a real-time, arbitrary neural artistic stylization
network", BMVC 2017), conf/model/style_prediction.yaml.

    painting -> style encoder -> global pooling -> 100-d embedding S -> gamma/beta of every
    conditional instance norm of the multi-style network (kind `cin`'s TransformerNet)

Style encoder: the paper uses Inception-v3, which cannot be fetched here. This kind uses the loss
network's frozen VGG16 (the Oxford weights, fetched and cached like the loss network), pooled to
the channel mean and standard deviation of relu1_2..relu4_3 (log-scaled, layer-normalised), then a
small trainable MLP to the embedding. Why VGG rather than a small CNN trained from scratch: its
features are pretrained on ImageNet, so paintings it never trained on still land in a meaningful
place (a CNN learned from a few dozen paintings would only tell those apart); channel means and
stds of VGG features are themselves a style descriptor (AdaIN's); and training computes those
features anyway for the style loss's Gram targets, so the encoder costs nothing extra there.
Only the MLP, the projections and the transformation network learn.

Training (experiment=style_prediction): each photo is paired with an augmented painting crop
(`fast_nst.painting_data`), the network stylizes the photo with that painting's predicted
embedding, and Johnson's perceptual loss compares the output with the photo (content) and with
that painting's Grams (style), image by image.

Inference: `condition(style_image=...)` predicts the painting's embedding once; `strength`
interpolates between the photo's own embedding (0) and the painting's (1), as in the paper.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from fast_nst.kinds import register_kind
from fast_nst.kinds.base import (StyleChoiceError, StyleNetwork, arbitrary_paintings, check_strength, embedding_feed,
                                 leave_out_of_checkpoints, paired_batch, painting_tensor)
from fast_nst.losses import gram_matrix, total_variation
from fast_nst.models.norms import PredictedInstanceNorm2d
from fast_nst.models.transformer import TransformerNet
from fast_nst.models.vgg import VGGEncoder
from fast_nst.paintings import Painting

log = logging.getLogger("fast_nst")


class StylePredictor(nn.Module):
    """VGG features of a painting -> its style embedding: per layer the channel means and stds,
    log1p-compressed (the Oxford VGG keeps Caffe's 0..255 activation scale), layer-normalised,
    then Linear -> ReLU -> Linear to `embedding_dim`."""

    def __init__(self, channels: Sequence[int], hidden: int, embedding_dim: int):
        super().__init__()
        d = 2 * sum(channels)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embedding_dim))

    @staticmethod
    def pool(feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fixed part: (B, 2 * sum(channels)) log-compressed channel means and stds."""
        pooled = []
        for f in feats:
            var, mean = torch.var_mean(f.float().flatten(2), dim=2)
            pooled += [torch.log1p(mean.clamp_min(0)), torch.log1p((var + 1e-5).sqrt())]
        return torch.cat(pooled, 1)

    def embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(pooled.to(self.norm.weight.dtype)))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.embed_pooled(self.pool(feats))


@register_kind
class StylePredictionNetwork(StyleNetwork, TransformerNet):
    kind = "style_prediction"
    arbitrary_style = True
    strength_blends = False  # strength interpolates embeddings: 0 = the photo's own style

    def __init__(self, styles: list[Painting], *, width: float, upsample: str, num_res_blocks: int,
                 tanh_scale: float, embedding_dim: int, predictor_hidden: int, encoder_arch: str,
                 encoder_weights: str, encoder_layers: Sequence[str], style_size: int | None):
        super().__init__(width=width, norm=PredictedInstanceNorm2d, upsample=upsample,
                         num_res_blocks=num_res_blocks, tanh_scale=tanh_scale)
        self.styles = []  # takes any painting: the training paintings are data, not part of it
        self.config = dict(width=width, upsample=upsample, num_res_blocks=num_res_blocks, tanh_scale=tanh_scale,
                           embedding_dim=embedding_dim, predictor_hidden=predictor_hidden,
                           encoder_arch=encoder_arch, encoder_weights=encoder_weights,
                           encoder_layers=list(encoder_layers), style_size=style_size)
        offset = 0
        for norm in self.predicted_norms():
            norm.offset = offset
            offset += 2 * norm.num_features
        self.num_norm_params = offset
        self.style_encoder = VGGEncoder(encoder_layers, arch=encoder_arch, weights=encoder_weights)
        self.encoder_layers = list(self.style_encoder.layers)
        channels = [self._channels(l) for l in self.encoder_layers]
        self.predictor = StylePredictor(channels, predictor_hidden, embedding_dim)
        # embedding -> every norm's (gamma - 1, beta); small weights, so an untrained network
        # starts as plain instance norm (gamma 1, beta 0) with a little style-dependence
        self.projection = nn.Linear(embedding_dim, offset)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)
        ones = torch.zeros(offset)
        for norm in self.predicted_norms():
            ones[norm.offset:norm.offset + norm.num_features] = 1.0
        self.register_buffer("gamma_base", ones, persistent=False)
        # the frozen VGG is rebuilt from encoder_weights: not in exports or checkpoints
        leave_out_of_checkpoints(self, "style_encoder")

    @staticmethod
    def _channels(layer: str) -> int:
        return {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(layer[4])]

    def predicted_norms(self) -> list[PredictedInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, PredictedInstanceNorm2d)]

    # ------------------------------------------------------------------ the style path
    def embed(self, images: torch.Tensor, features: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, 3, H, W) paintings (or photos) in [0, 1] -> (B, embedding_dim). `features`: their
        VGG features when already computed (training reuses the style loss's)."""
        if features is None:
            with torch.no_grad():
                dtype = next(self.style_encoder.parameters()).dtype  # float16 after .half() on a GPU
                features = self.style_encoder(images.to(dtype), layers=self.encoder_layers)
        return self.predictor([features[l] for l in self.encoder_layers])

    def norm_parameters(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) -> (B, P): every predicted norm's gamma and beta."""
        return self.projection(embedding) + self.gamma_base

    # ------------------------------------------------------------------ inference
    def condition(self, style: str | None = None, style_weights: Mapping[str, float] | Sequence[float] | None = None,
                  style_image: Any = None, style_size: int | None = None) -> torch.Tensor:
        """The painting's embedding (1, embedding_dim), computed once; several paintings mix
        their embeddings by `style_weights` (the paper's style interpolation)."""
        size = style_size or self.config.get("style_size")
        paintings, weights = arbitrary_paintings(self.kind, style, style_weights, style_image, size)
        with torch.inference_mode():
            e = sum(w * self.embed(p.to(self.device)) for p, w in zip(paintings, weights))
        return e

    def stylize(self, x: torch.Tensor, cond: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
        check_strength(strength)
        if not isinstance(cond, torch.Tensor) or cond.dim() != 2:
            raise StyleChoiceError("a style_prediction network needs a painting: net.condition(style_image=...)")
        e = cond.to(x.device, self.projection.weight.dtype)
        if strength < 1.0:
            # the photo's own embedding, per image (Ghiasi et al. sec. 4: interpolating towards it
            # weakens the stylization while staying a rendering by the network)
            e = torch.lerp(self.embed(x), e.expand(x.shape[0], -1), float(strength))
        params = self.norm_parameters(e.expand(x.shape[0], -1) if e.shape[0] == 1 else e)
        return self(x, params.to(x.dtype))

    # ------------------------------------------------------------------ ONNX: the embedding is an input
    def graph_inputs(self) -> dict[str, int]:
        return {"embedding": self.config["embedding_dim"]}

    def graph_feed(self, x: torch.Tensor, cond: torch.Tensor, strength: float) -> dict[str, torch.Tensor]:
        return {"embedding": embedding_feed(self, x, cond, strength)}

    def graph_forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self(x, self.norm_parameters(embedding).to(x.dtype))

    # ------------------------------------------------------------------ training
    TRANSFORMER_OPTIONS = ("width", "upsample", "num_res_blocks", "tanh_scale")

    @classmethod
    def for_training(cls, config: Mapping, paintings: list[Painting], base=None) -> "StylePredictionNetwork":
        """`base` (init_from=EXPORT): a style_prediction export continues as it is; a multi-style
        (`cin`) export starts the run from that network, so a CPU budget is spent on learning to
        predict styles rather than on learning to paint (`from_multi_style`)."""
        if base is None:
            return cls(paintings, **config)
        info, tensors = base
        if info.kind not in (cls.kind, "cin"):
            raise ValueError(f"init_from={info.path}: a {info.kind} network; a style_prediction run starts from a "
                             "multi-style (cin) export or continues a style_prediction one")
        shape = {k: info.network[k] for k in cls.TRANSFORMER_OPTIONS}
        if any(config.get(k) != v for k, v in shape.items()):
            log.info("init_from: the transformation network's shape comes from %s (%s)", info.path, shape)
        if info.kind == cls.kind:
            net = cls(paintings, **{**dict(config), **info.network})
            net.load_state_dict(tensors)
            return net
        net = cls(paintings, **{**dict(config), **shape})
        net.from_multi_style(info, tensors)
        return net

    def from_multi_style(self, info, tensors: Mapping[str, torch.Tensor], fit_steps: int = 500) -> float:
        """Start from a trained multi-style network: its convolutions are copied, and the style
        predictor is fitted (`fit_steps` Adam steps, a few seconds) to map several views of each
        of its paintings (the whole painting, flipped, random crops) to that painting's norm
        scales and shifts. Paintings it never held then start at a blend of those styles.
        Returns the fit's mean squared error on the norm parameters."""
        state = self.state_dict()
        modules = dict(self.named_modules())
        targets = torch.zeros(len(info.styles), self.num_norm_params)
        for key, value in tensors.items():
            module = key.rsplit(".", 1)[0]
            norm = modules.get(module)
            if isinstance(norm, PredictedInstanceNorm2d):  # a (paintings, C) row block of the cin network
                c, o = norm.num_features, norm.offset + (norm.num_features if key.endswith(".bias") else 0)
                targets[:, o:o + c] = value.float()
            elif key in state and state[key].shape == value.shape:
                state[key] = value
            else:
                raise ValueError(f"init_from={info.path}: tensor {key} {tuple(value.shape)} does not fit this "
                                 "network (a cin export of the same width/upsample/num_res_blocks is needed)")
        self.load_state_dict(state)
        missing = [n for n, m in modules.items() if isinstance(m, PredictedInstanceNorm2d)
                   and (f"{n}.weight" not in tensors or f"{n}.bias" not in tensors)]
        if missing:
            raise ValueError(f"init_from={info.path}: no norm parameters for {missing}")
        gen = torch.Generator().manual_seed(0)
        views, rows = [], []
        for k, painting in enumerate(info.styles):
            img = painting_tensor(painting, None)
            img = torch.nn.functional.interpolate(img, scale_factor=256 / min(img.shape[-2:]), mode="bilinear",
                                                  antialias=True, align_corners=False)
            h, w = img.shape[-2:]
            crops = [img, img.flip(-1)]
            for _ in range(6):
                s = int(torch.randint(128, 257, (1,), generator=gen))
                y, x = (int(torch.randint(0, d - s + 1, (1,), generator=gen)) for d in (h, w))
                crops.append(img[..., y:y + s, x:x + s])
            with torch.no_grad():
                for c in crops:
                    f = self.style_encoder(c, layers=self.encoder_layers)
                    views.append(self.predictor.pool([f[l] for l in self.encoder_layers]))
                    rows.append(k)
        want = targets[rows] - self.gamma_base
        with torch.no_grad():
            self.projection.bias.copy_(want.mean(0))
        fit = list(self.predictor.parameters()) + list(self.projection.parameters())
        opt = torch.optim.Adam(fit, lr=1e-3)
        pooled = torch.cat(views)
        for _ in range(fit_steps):
            pred = self.projection(self.predictor.embed_pooled(pooled))
            err = (pred - want).pow(2).mean()
            opt.zero_grad()
            err.backward()
            opt.step()
        log.info("init_from=%s: style predictor fitted to its %d paintings (norm parameter mse %.2e)",
                 info.path, len(info.styles), float(err.detach()))
        return float(err.detach())

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("style_encoder.")]}]

    def build_objective(self, loss: Mapping, loss_net: Mapping, vgg_pass: str) -> nn.Module:
        """Johnson's perceptual loss on the style encoder's own VGG (one frozen copy serves both);
        the style targets are each image's painting, set per step in `training_step`."""
        from fast_nst.losses import PerceptualLoss

        if loss_net.get("arch") != self.config["encoder_arch"]:
            raise ValueError(f"loss_net.arch={loss_net.get('arch')} but the style encoder is "
                             f"{self.config['encoder_arch']}: they share one frozen VGG (set model.encoder_arch)")
        needed = set(loss["content_layers"]) | set(loss["style_layers"])
        if not needed <= set(self.encoder_layers):
            raise ValueError(f"loss layers {sorted(needed - set(self.encoder_layers))} are not among the style "
                             f"encoder's layers {self.encoder_layers} (model.encoder_layers)")
        return PerceptualLoss(self.style_encoder, loss["content_layers"], loss["style_layers"],
                              content_weight=loss["content_weight"], style_weight=loss["style_weight"],
                              tv_weight=loss["tv_weight"], vgg_pass=vgg_pass)

    def training_step(self, objective: nn.Module, batch: Any, style_index: torch.Tensor | None,
                      forward: Callable | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        photos, paintings = paired_batch(batch, self.kind)
        with torch.no_grad():
            painting_f = self.style_encoder(paintings.to(photos.dtype), layers=self.encoder_layers)
        params = self.norm_parameters(self.embed(paintings, painting_f))
        out = (forward or self)(photos, params.to(photos.dtype))
        out_f, tgt_f = objective.features(out, photos)
        per_image = 0.0
        for layer, w in objective.style.layer_weights.items():
            per_image = per_image + w * (gram_matrix(out_f[layer]) - gram_matrix(painting_f[layer])).pow(2).mean((1, 2))
        per_image = objective.style_weight * per_image
        terms = {"content": objective.content_weight * objective.content(out_f, tgt_f),
                 "style": per_image.mean(), "tv": objective.tv_weight * total_variation(out)}
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        return out, terms

    def validation_styles(self) -> list[tuple[str, int | None]]:
        return [("stylized", None)]

