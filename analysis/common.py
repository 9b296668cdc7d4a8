"""Light names the analysis modules and their CLI share (no pandas, no matplotlib), so
that building the ``harness`` command parser stays fast."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming where W&B runs are cached as JSON.
CACHE_ENV = "HARNESS_CACHE"


class AnalysisError(ValueError):
    """Bad input to the analysis; the message names the file, key or option."""


def default_cache_dir() -> Path:
    """``$HARNESS_CACHE``, else ``~/.cache/harness-analysis``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "harness-analysis")
