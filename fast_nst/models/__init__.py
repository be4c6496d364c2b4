"""Building blocks every kind and the optimiser share.

    stats.py        Gram matrices, channel mean and std (the statistics losses and networks share)
    norms.py        instance norms: plain, conditional (one row per painting), predicted
    transformer.py  Johnson's transformation network, with its padding rule
    vgg.py          the frozen VGG loss network: one pass returns every layer the losses ask for
    losses.py       content, Gram style, TV and their weighted sum, `PerceptualLoss`

May import: fast_nst.io, fast_nst.weights.
"""
