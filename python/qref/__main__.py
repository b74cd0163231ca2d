"""``python -m qref``: the same command line as the ``qref`` console script."""

import sys

from .cli import main

sys.exit(main())
