"""Reading config.yaml quickly.

A sweep of 1000 runs has 1000 frozen configs of ~120 keys, and PyYAML's
constructor (even over libyaml) spends ~4 ms on each. The configs are block-style
mappings as ``yaml.safe_dump`` writes them, and most scalar texts recur from run
to run, so this reader walks the lines itself and has PyYAML resolve each
distinct scalar text once. Anything outside that simple form (multi-line
strings, anchors, tags, comments, nested sequences) goes to PyYAML unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_KEY = re.compile(r"^( *)([A-Za-z_][A-Za-z0-9_.\-]*):(?: (.*))?$")
_ITEM = re.compile(r"^( *)- (.*)$")
_SPECIAL_START = (*"|>&*!%@`?#", "- ")
_scalars: dict[str, Any] = {}


class _NotSimple(Exception):
    pass


def load_config_text(text: str) -> Any:
    """The YAML document in ``text`` (same result as ``yaml.safe_load``)."""
    try:
        return _parse_block_mapping(text)
    except _NotSimple:
        return yaml.load(text, Loader=_Loader)


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


def _parse_block_mapping(text: str) -> dict:
    root: dict = {}
    stack: list[tuple[int, dict]] = [(0, root)]  # (indent of the keys, mapping)
    open_key: tuple[int, dict, str] | None = None  # a key whose value starts on the next line
    items: tuple[int, list] | None = None  # the block sequence being read
    for line in text.splitlines():
        if not line.strip():
            continue
        item = _ITEM.match(line)
        if item:
            indent = len(item[1])
            if open_key is not None and indent >= open_key[0]:
                items = (indent, [])
                open_key[1][open_key[2]] = items[1]
                open_key = None
            if items is None or indent != items[0]:
                raise _NotSimple(line)
            items[1].append(_scalar(item[2]))
            continue
        key = _KEY.match(line)
        if not key:
            raise _NotSimple(line)
        indent, name, rest = len(key[1]), key[2], key[3]
        items = None
        if open_key is not None:
            if indent > open_key[0]:
                child: dict = {}
                open_key[1][open_key[2]] = child
                stack.append((indent, child))
            else:
                open_key[1][open_key[2]] = None
            open_key = None
        while stack[-1][0] > indent:
            stack.pop()
        if stack[-1][0] != indent:
            raise _NotSimple(line)
        mapping = stack[-1][1]
        if name in mapping:
            raise _NotSimple(line)
        if rest is None or not rest.strip():
            open_key = (indent, mapping, name)
        else:
            mapping[name] = _scalar(rest)
    if open_key is not None:
        open_key[1][open_key[2]] = None
    return root
