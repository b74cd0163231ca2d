#!/usr/bin/env python
"""qref vs torch fbgemm vs plain numpy on real conv layer shapes.

A thin wrapper: the logic lives in ``qref.bench`` (also ``qref bench`` and
``python -m qref.bench``). Regenerate benchmarks/RESULTS.md with::

    python benchmarks/bench_conv2d.py --markdown benchmarks/RESULTS.md

``--quick`` runs smaller shapes with a short budget; ``--help`` lists the options.
"""

import sys

from qref.bench import main

if __name__ == "__main__":
    sys.exit(main())
