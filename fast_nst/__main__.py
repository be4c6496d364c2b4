"""`python -m fast_nst train|stylize|optimize|export key=value ...` (see fast_nst/entry.py)."""

from fast_nst.entry import main

main()
