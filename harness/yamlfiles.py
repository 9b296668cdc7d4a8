"""YAML mappings and their ``_BASE_`` chains: one reader for run configs, sweep specs
and cluster profiles."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import yaml

BASE_KEY = "_BASE_"


def read_yaml_mapping(
    path: str | os.PathLike,
    error: type[Exception] = ValueError,
    what: str = "config file",
    seen: tuple[str, ...] = (),
) -> dict:
    """A YAML file whose top level is a mapping; any problem raises ``error``
    naming the file (and the file whose ``_BASE_`` named it, if ``seen``)."""
    path = os.fspath(path)
    if path in seen:
        raise error(f"_BASE_ cycle: {' -> '.join(seen + (path,))}")
    if not os.path.isfile(path):
        where = f" (named as _BASE_ by {seen[-1]})" if seen else ""
        raise error(f"{what} not found: {path}{where}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise error(f"{what} {path}: invalid YAML: {e}") from e
    if data is None:
        # An empty file is a wrong path or a failed write far more often than "all defaults".
        raise error(f"{what} {path} is empty (no keys); write the keys it sets, or `_BASE_: <parent>`")
    if not isinstance(data, dict):
        raise error(f"{what} {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def read_yaml_chain(
    path: str | os.PathLike,
    error: type[Exception] = ValueError,
    what: str = "config file",
    prepare: Callable[[dict[str, Any], str], None] | None = None,
) -> dict[str, Any]:
    """The YAML at ``path`` merged over its ``_BASE_`` chain (a path or a list, relative
    to the naming file), as a plain dict. ``prepare(data, file)`` may rewrite each
    file's mapping before merging (e.g. resolve paths against that file's directory)."""
    return _chain(os.path.abspath(os.fspath(path)), (), error, what, prepare)


def _chain(
    path: str,
    seen: tuple[str, ...],
    error: type[Exception],
    what: str,
    prepare: Callable[[dict[str, Any], str], None] | None,
) -> dict[str, Any]:
    data = read_yaml_mapping(path, error, what, seen)
    if prepare is not None:
        prepare(data, path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        deep_update(merged, _chain(os.path.normpath(base_path), seen + (path,), error, what, prepare))
    deep_update(merged, data)
    return merged


def deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Merge ``src`` into ``dst``: nested mappings merge key by key, anything else replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            deep_update(dst[key], value)
        else:
            dst[key] = value
