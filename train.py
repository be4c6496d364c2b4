"""Train a network: python train.py style=starry_night (options: conf/train.yaml, --help).
The same as `fast-nst train` (fast_nst/entry.py)."""

import sys

from fast_nst.entry import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
