"""Kind `cin`: many paintings in one network, conditional instance norm (Dumoulin et al. 2017).

    kind.py   the kind: Johnson's network with one norm scale and shift per painting, mixing,
              and adding paintings to a trained network (add_style)
"""

from fast_nst.kinds.cin.kind import ConditionalStyleNetwork

__all__ = ["ConditionalStyleNetwork"]
