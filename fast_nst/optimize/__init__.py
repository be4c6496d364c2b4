"""Optimisation and quality: stylize by optimising pixels, and measure trained networks with it.

    gatys.py            pixel optimisation (Gatys et al. 2016): objective, L-BFGS/Adam, initial images
    command.py          the optimize command (optimize.py, fast-nst optimize)
    quality.py          how many L-BFGS iterations one forward pass equals (Johnson et al. Fig. 5)
    quality_command.py  the quality command (fast-nst quality)

May import: fast_nst.io, fast_nst.weights, fast_nst.models, fast_nst.kinds, fast_nst.stylize,
fast_nst.training.
"""
