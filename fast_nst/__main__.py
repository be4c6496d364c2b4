"""`python -m fast_nst train|stylize|optimize key=value ...` (see fast_nst/entry.py)."""

from fast_nst.entry import main

main()
