"""`python -m fast_nst COMMAND key=value ...`: the same as `fast-nst COMMAND` (fast_nst/entry.py)."""

from fast_nst.entry import main

main()
