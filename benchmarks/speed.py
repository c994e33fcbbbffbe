"""Speed benchmark of training and whole-volume inference, variant by variant: ``mrisr bench`` as a script.

    python benchmarks/speed.py --volume ../shared/data/knee_dess_sample --markdown docs/benchmarks.md   # GPU
    python benchmarks/speed.py --preset cpu --volume ../shared/data/knee_dess_sample                     # CPU

Prints the tables, writes JSON (``--json``, default ``runs/bench/bench-<time>.json``) and appends the tables to
``--markdown``. What is measured and how: `mrisr.bench`.
"""

import sys

from mrisr.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
