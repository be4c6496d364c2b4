"""Stylize images with a trained network: python stylize.py ckpt=NAME input=IMG (options: conf/stylize/stylize.yaml, --help).
The same as `fast-nst stylize` (fast_nst/entry.py)."""

import sys

from fast_nst.entry import main

if __name__ == "__main__":
    main(["stylize", *sys.argv[1:]])
