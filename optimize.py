"""Stylize one photo by pixel optimisation (Gatys et al. 2016): python optimize.py content=IMG style=PAINTING (options: conf/optimize/optimize.yaml, --help).
The same as `fast-nst optimize` (fast_nst/entry.py)."""

import sys

from fast_nst.entry import main

if __name__ == "__main__":
    main(["optimize", *sys.argv[1:]])
