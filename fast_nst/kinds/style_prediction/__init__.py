"""Kind `style_prediction`: Johnson's full-width network driven by Magenta's style embedding
(Ghiasi et al. 2017): any painting in one pass.

    kind.py   the kind: a trained map from the embedding to every instance norm's scale and shift;
              the predictor and the embedding base come from fast_nst.kinds.magenta
"""

from fast_nst.kinds.style_prediction.kind import StylePredictionNetwork

__all__ = ["StylePredictionNetwork"]
