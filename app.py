"""The web page: python app.py, then open http://127.0.0.1:7860 (options: conf/app/app.yaml, --help).
The same as `fast-nst app` (fast_nst/entry.py)."""

import sys

from fast_nst.entry import main

if __name__ == "__main__":
    main(["app", *sys.argv[1:]])
