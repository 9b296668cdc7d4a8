"""Run names and the command-line spelling of config values.

A run's name is ``<strategy>-g<gpus>[-n<nodes>]-b<per-GPU batch>[-<key>=<value>...]-s<seed>``:
readable, stable for the same grid point, and filesystem-safe. A name longer than
:data:`MAX_RUN_NAME` keeps a readable prefix and gets a short hash of the full name
(``<prefix>-h<8 hex>-s<seed>``), so a long grid value never makes a path too long.
"""

from __future__ import annotations

import ast
import hashlib
import re
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def opt_value(value: Any) -> str:
    """The command-line spelling of a value that ``merge_opts`` decodes back to it."""
    if isinstance(value, str):
        try:
            decoded = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        return value if isinstance(decoded, str) else repr(value)
    return repr(value)


def format_value(value: Any) -> str:
    """A value as it appears in a run name."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "_".join(format_value(v) for v in value)
    else:
        text = str(value)
    return _SAFE.sub("_", text) or "_"


def short_name(key: str, short_names: dict[str, str]) -> str:
    return short_names.get(key) or key.rsplit(".", 1)[-1].lower()


def run_name(
    strategy: str, gpus: int, nodes: int, batch: int, seed: int, extras: list[tuple[str, Any]]
) -> str:
    """``<strategy>-g<gpus>[-n<nodes>]-b<per-GPU batch>[-<key>=<value>...]-s<seed>``."""
    parts = [strategy, f"g{gpus}"]
    if nodes > 1:
        parts.append(f"n{nodes}")
    parts.append(f"b{batch}")
    parts.extend(f"{k}={format_value(v)}" for k, v in extras)
    return bounded_name("-".join(parts), f"s{seed}")


# Well under NAME_MAX (255 bytes on Linux file systems), leaving room for W&B and Slurm
# to add their own prefixes and suffixes to the name.
MAX_RUN_NAME = 120


def bounded_name(stem: str, suffix: str, limit: int = MAX_RUN_NAME) -> str:
    """``<stem>-<suffix>``, or, when longer than ``limit``, a readable prefix of the stem,
    ``h`` + 8 hex digits of the full name's SHA-1, and the suffix."""
    full = f"{stem}-{suffix}"
    if len(full) <= limit:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    tail = f"-h{digest}-{suffix}"
    prefix = stem[: max(1, limit - len(tail))].rstrip("-_.=+")
    return f"{prefix}{tail}"


# Keys a sweep sets for every run from its own identity: a grid axis or an override on
# them would be silently replaced, so they are refused. LOG.WANDB.GROUP is honoured
# instead (it defaults to the sweep's name).
SWEEP_SET_KEYS = {
    "RUN_NAME": "each run's name is made from its grid point (use 'short_names' to shape it)",
    "OUTPUT_DIR": "runs live in <sweep dir>/runs (choose the sweep dir with --root)",
    "SWEEP": "it is the spec's 'name'",
}


def check_sweep_set_keys(grid: dict[str, Any], overrides: dict[str, Any]) -> str | None:
    """The first grid or override key that the sweep itself sets, as an error message."""
    for where, keys in (("grid", grid), ("overrides", overrides)):
        for key in keys:
            if key in SWEEP_SET_KEYS:
                return f"{where} key '{key}' cannot be set by a sweep: {SWEEP_SET_KEYS[key]}"
    return None
