"""Markdown tables with numbers at a precision a reader can take in."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

MISSING = "—"


def number(value: Any, digits: int = 3) -> str:
    """Significant digits for floats, thousands separators for large values, — for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 10**digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def fixed(digits: int) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        return f"{float(value):.{digits}f}"

    return fmt


def percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{100 * float(value):.1f}%"


def escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, str]] | None = None,
    formats: dict[str, Callable[[Any], str]] | None = None,
) -> str:
    """``columns``: (column, header) pairs; ``formats``: column -> formatter."""
    if frame.empty:
        return "_(none)_\n"
    columns = list(columns or [(c, c) for c in frame.columns])
    formats = formats or {}
    lines = [
        "| " + " | ".join(escape(h) for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for record in frame.to_dict("records"):
        cells = []
        for column, _ in columns:
            value = record.get(column)
            value = value.item() if hasattr(value, "item") else value
            cells.append(escape(formats.get(column, number)(value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bullet_list(items: Sequence[str]) -> str:
    return "".join(f"- {item}\n" for item in items) if items else "_(none)_\n"
