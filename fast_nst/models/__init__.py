from fast_nst.models.transformer import TransformerNet
from fast_nst.models.vgg import VGGEncoder

__all__ = ["TransformerNet", "VGGEncoder"]
