"""Kind `johnson`: one network per painting (Johnson, Alahi & Fei-Fei 2016).

    kind.py   the kind: Johnson's transformation network (fast_nst.models.transformer), trained
              against the Gram targets of one painting (fast_nst.models.losses.PerceptualLoss)
"""

from fast_nst.kinds.johnson.kind import JohnsonNetwork

__all__ = ["JohnsonNetwork"]
