"""Run names and the command-line spelling of config values.

A run's name is ``<strategy>-g<gpus>[-n<nodes>]-b<per-GPU batch>[-<key>=<value>...]-s<seed>``:
readable, stable for the same grid point, and filesystem-safe.
"""
from __future__ import annotations

import ast
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


def run_name(strategy: str, gpus: int, nodes: int, batch: int, seed: int,
             extras: list[tuple[str, Any]]) -> str:
    """``<strategy>-g<gpus>[-n<nodes>]-b<per-GPU batch>[-<key>=<value>...]-s<seed>``."""
    parts = [strategy, f"g{gpus}"]
    if nodes > 1:
        parts.append(f"n{nodes}")
    parts.append(f"b{batch}")
    parts.extend(f"{k}={format_value(v)}" for k, v in extras)
    parts.append(f"s{seed}")
    return "-".join(parts)
