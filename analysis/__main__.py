"""``python -m analysis``: the same as ``harness analyze``."""

import sys

from analysis.cli import main

sys.exit(main())
