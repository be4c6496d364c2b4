"""`python -m fast_nst.dataset key=value ...`: the same as `fast-nst stylize-dataset` (see fast_nst/dataset/__init__.py)."""

from fast_nst.entry import stylize_dataset

stylize_dataset()
