"""Kind `cin`: many paintings in one network (Dumoulin, Shlens & Kudlur, ICLR 2017), conf/model/cin.yaml.

Johnson's network with a conditional instance norm wherever it has instance norm: each painting
owns only a scale and shift per norm channel (`weight`, `bias`: (num_paintings, C)), everything
else is shared. Mixing paintings is a convex combination of those rows. Training draws a painting
per image; adding a painting to a trained network (`init_from`, experiment=add_style) trains only
the new rows, so the old paintings' outputs stay bit-identical.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from fast_nst.kinds import register_kind
from fast_nst.kinds.base import StyleChoiceError, StyleNetwork
from fast_nst.models.norms import ConditionalInstanceNorm2d
from fast_nst.models.transformer import TransformerNet, shape_options
from fast_nst.io.paintings import Painting

log = logging.getLogger("fast_nst")


@register_kind
class ConditionalStyleNetwork(StyleNetwork, TransformerNet):
    kind = "cin"
    draws_styles = True

    def __init__(self, styles: list[Painting], *, width: float, upsample: str, num_res_blocks: int,
                 tanh_scale: float, outer_kernel: int = 9, block: str = "conv"):
        if not styles:
            raise ValueError("a cin network needs at least one painting (styles=[...])")
        super().__init__(width=width, norm="conditional", upsample=upsample, num_res_blocks=num_res_blocks,
                         tanh_scale=tanh_scale, num_styles=len(styles), outer_kernel=outer_kernel, block=block)
        self.styles = list(styles)
        self.config = dict(width=width, upsample=upsample, num_res_blocks=num_res_blocks, tanh_scale=tanh_scale,
                           **shape_options(outer_kernel=outer_kernel, block=block))
        self._trained = list(range(len(styles)))

    def conditional_norms(self) -> list[ConditionalInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]

    # ------------------------------------------------------------------ inference
    def default_condition(self):
        raise StyleChoiceError(
            f"this network holds {len(self.styles)} paintings: choose one with style=NAME "
            f"({', '.join(self.style_names)}), mix them with style_weights={{{self.style_names[0]}: 0.5, ...}}, "
            "or write every painting with stylize.py style=all")

    def style_condition(self, index: int) -> torch.Tensor:
        return torch.tensor([index], device=self.device)

    def mixed_condition(self, weights: list[float]) -> torch.Tensor:
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ ONNX: the mixing weights are an input
    def graph_inputs(self) -> dict[str, int]:
        return {"style_weights": len(self.styles)}

    def graph_feed(self, x: torch.Tensor, cond: torch.Tensor, strength: float) -> dict[str, torch.Tensor]:
        w = cond.cpu()
        if not torch.is_floating_point(w):  # one painting: its row
            w = torch.nn.functional.one_hot(w, len(self.styles))
        return {"style_weights": w.float().reshape(-1, len(self.styles)).expand(x.shape[0], -1)}

    def graph_forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return self(x, style_weights)

    def single_style(self, style: str) -> StyleNetwork:
        """The per-style (johnson) network of one painting: every shared weight copied, and each
        conditional norm's row for `style` as a plain instance norm's scale and shift. It computes
        exactly what this network does with style=`style` (its ONNX export needs no style input)."""
        from fast_nst.kinds import get_kind

        if style not in self.style_names:
            raise StyleChoiceError(f"style={style}: this network knows {', '.join(self.style_names)}")
        i = self.style_names.index(style)
        cfg = {k: v for k, v in self.config.items()}
        net = get_kind("johnson")([self.styles[i]], norm="instance", **cfg)
        rows = {id(m) for m in self.conditional_norms()}
        norms = {f"{name}.{p}" for name, m in self.named_modules() if id(m) in rows for p in ("weight", "bias")}
        state = {k: (v[i] if k in norms else v).detach().clone() for k, v in self.state_dict().items()}
        net.load_state_dict(state)
        return net.to(self.device)

    # ------------------------------------------------------------------ adding paintings
    @classmethod
    def for_training(cls, config: Mapping, paintings: list[Painting], base=None) -> "ConditionalStyleNetwork":
        if base is None:
            return cls(paintings, **config)
        info, tensors = base
        if info.kind != cls.kind:
            raise ValueError(f"init_from={info.path}: a {info.kind} network; adding paintings needs a "
                             f"multi-style ({cls.kind}) export")
        old = {p.name: p for p in info.styles}
        clash = [p.name for p in paintings if p.name in old]
        if clash:
            raise ValueError(f"init_from={info.path} already has {clash}; add_style trains new paintings only "
                             "(give a new painting another name with {name: ..., image: ...})")
        if dict(config) != info.network:
            log.info("add_style: network config from %s (%s); model.* options are ignored", info.path, info.network)
        net = cls(list(info.styles) + list(paintings), **info.network)
        k = len(info.styles)
        state = net.state_dict()
        for key, value in tensors.items():
            if key not in state:
                raise ValueError(f"init_from={info.path}: unexpected tensor {key}")
            if state[key].shape == value.shape:
                state[key] = value
            else:  # a norm's (old paintings, C) rows; new rows start at the old paintings' mean
                state[key] = torch.cat([value, value.mean(0, keepdim=True).expand(len(paintings), -1)])
        net.load_state_dict(state)
        net.freeze_paintings(k)
        return net

    def freeze_paintings(self, k: int) -> None:
        """Train only paintings k.. : every shared weight and the first k rows stay fixed."""
        for p in self.parameters():
            p.requires_grad_(False)
        for norm in self.conditional_norms():
            norm.weight.requires_grad_(True)
            norm.bias.requires_grad_(True)
            norm.frozen_styles = k
        self._trained = list(range(k, len(self.styles)))

    def training_style_indices(self) -> list[int]:
        return list(self._trained)

    def parameter_groups(self) -> list[dict]:
        groups = super().parameter_groups()
        if self._trained and self._trained[0] > 0:
            # The frozen rows get exactly zero gradient, so Adam leaves them unchanged, but weight
            # decay would still shrink them: none for these groups.
            for g in groups:
                g["weight_decay"] = 0.0
        return groups
