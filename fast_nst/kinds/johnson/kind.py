"""Kind `johnson`: one network per painting (Johnson, Alahi & Fei-Fei 2016), conf/model/johnson*.yaml.

The module tree and state_dict are `TransformerNet`'s, so exports of every format version (and
Lightning checkpoints of runs started before network kinds existed) load unchanged.
"""

from __future__ import annotations

from fast_nst.kinds import register_kind
from fast_nst.kinds.base import StyleNetwork
from fast_nst.models.transformer import TransformerNet
from fast_nst.io.paintings import Painting


@register_kind
class JohnsonNetwork(StyleNetwork, TransformerNet):
    kind = "johnson"

    def __init__(self, styles: list[Painting], *, width: float, norm: str, upsample: str,
                 num_res_blocks: int, tanh_scale: float, outer_kernel: int = 9, block: str = "conv"):
        if norm == "conditional":
            raise ValueError("model.norm=conditional is the multi-style network: use model=cin")
        super().__init__(width=width, norm=norm, upsample=upsample, num_res_blocks=num_res_blocks,
                         tanh_scale=tanh_scale, outer_kernel=outer_kernel, block=block)
        if len(styles) > 1:
            raise ValueError(f"a johnson network learns one painting, got {len(styles)} "
                             f"({', '.join(p.name for p in styles)}); for several in one network use "
                             "experiment=multi_style (model=cin)")
        self.styles = list(styles)
