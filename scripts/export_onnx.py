#!/usr/bin/env python
"""Kept for old commands: the same as `python -m fast_nst export` (conf/export/export.yaml), which
writes an export's ONNX graphs beside it and checks them against PyTorch.

    python scripts/export_onnx.py ckpt=starry_night      # -> checkpoints/starry_night.onnx, starry_night_int8.onnx
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fast_nst.entry import export  # noqa: E402

if __name__ == "__main__":
    export()
