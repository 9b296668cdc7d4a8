"""Reading config.yaml quickly.

A sweep of 1000 runs has 1000 frozen configs of ~120 keys, and PyYAML's
constructor (even over libyaml) spends ~4 ms on each. The configs are block-style
mappings as ``yaml.safe_dump`` writes them, and most lines recur from run to run,
so this reader walks the lines itself, parses each distinct line once (PyYAML
resolves its scalar) and builds the dotted keys the analysis uses directly.
Anything outside that simple form (multi-line strings, anchors, tags, comments,
nested sequences) goes to PyYAML and ``flatten`` unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from harness.runformat import flatten

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_KEY = re.compile(r"^( *)([A-Za-z_][A-Za-z0-9_.\-]*):(?: (.*))?$")
_ITEM = re.compile(r"^( *)- (.*)$")
_SPECIAL_START = (*"|>&*!%@`?#", "- ")
_scalars: dict[str, Any] = {}
# line text -> (kind, indent, key, value); the lines of a sweep's configs mostly recur.
_lines: dict[str, tuple[str, int, str, Any]] = {}
_MAX_CACHED = 200_000


class _NotSimple(Exception):
    pass


def load_config_flat(text: str) -> Any:
    """``flatten(yaml.safe_load(text), lists_as_tuples=True)`` for a mapping document, read
    without building the nested mapping; any other document is returned as loaded."""
    try:
        return _parse_flat(text)
    except _NotSimple:
        data = yaml.load(text, Loader=_Loader)
        return flatten(data, lists_as_tuples=True) if isinstance(data, dict) else data


def _line(line: str) -> tuple[str, int, str, Any]:
    """(``item``|``key``|``open``, indent, key, value) of one line, cached by its text."""
    hit = _lines.get(line)
    if hit is not None:
        return hit
    item = _ITEM.match(line)
    if item:
        hit = ("item", len(item[1]), "", _scalar(item[2]))
    else:
        key = _KEY.match(line)
        if not key:
            raise _NotSimple(line)
        rest = key[3]
        if rest is None or not rest.strip():
            hit = ("open", len(key[1]), key[2], None)
        else:
            hit = ("key", len(key[1]), key[2], _scalar(rest))
    if len(_lines) < _MAX_CACHED:
        _lines[line] = hit
    return hit


def _parse_flat(text: str) -> dict[str, Any]:
    if not text.strip():
        raise _NotSimple(text)  # an empty document is None, not an empty mapping
    flat: dict[str, Any] = {}
    stack: list[tuple[int, str]] = [(0, "")]  # (indent of the keys, dotted prefix)
    open_key: tuple[int, str] | None = None  # a key whose value starts on the next line
    items: tuple[int, list] | None = None  # the block sequence being read
    sequences: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        kind, indent, name, value = _line(line)
        if kind == "item":
            if open_key is not None and indent >= open_key[0]:
                items = (indent, [])
                flat[open_key[1]] = items[1]
                sequences.append(open_key[1])
                open_key = None
            if items is None or indent != items[0]:
                raise _NotSimple(line)
            items[1].append(value)
            continue
        items = None
        if open_key is not None:
            if indent > open_key[0]:
                stack.append((indent, open_key[1] + "."))
            else:
                flat[open_key[1]] = None
            open_key = None
        while stack[-1][0] > indent:
            stack.pop()
        if stack[-1][0] != indent:
            raise _NotSimple(line)
        full = stack[-1][1] + name
        if full in flat or "." in name:  # a dotted key could collide with a nested one
            raise _NotSimple(line)
        if kind == "open":
            open_key = (indent, full)
        else:
            _store(flat, full, value, line)
    if open_key is not None:
        flat[open_key[1]] = None
    for key in sequences:
        flat[key] = tuple(flat[key])
    return flat


def _store(flat: dict[str, Any], full: str, value: Any, line: str) -> None:
    if isinstance(value, list):  # a flow sequence, e.g. [0.5, 0.5]
        flat[full] = tuple(value)
    elif isinstance(value, dict):  # a flow mapping, e.g. {} or {a: 1}
        nested = flatten(value, full + ".", lists_as_tuples=True)
        if nested.keys() & flat.keys():
            raise _NotSimple(line)
        flat.update(nested)
    else:
        flat[full] = value


def _scalar(text: str) -> Any:
    text = text.strip()
    if text in _scalars:
        return _scalars[text]
    if text[:1] in ("'", '"'):
        if len(text) < 2 or text[-1] != text[0]:  # a quoted string that goes on to the next line
            raise _NotSimple(text)
    elif text.startswith(_SPECIAL_START) or text == "-" or " #" in text or ": " in text:
        raise _NotSimple(text)
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        raise _NotSimple(text) from None
    if isinstance(value, (dict, list)) and not text.startswith(("[", "{")):
        raise _NotSimple(text)
    _scalars[text] = value
    return value
