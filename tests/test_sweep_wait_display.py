"""`harness sweep --wait`: one line redrawn in place on a terminal; elsewhere a line per change."""

from __future__ import annotations

import io

from harness.launcher.cli import WaitDisplay
from harness.launcher.status import RunState


def _rows(*states: str) -> list[RunState]:
    return [RunState(name=f"run{i}", state=state) for i, state in enumerate(states)]


def test_off_a_terminal_only_changes_are_printed() -> None:
    out = io.StringIO()
    display = WaitDisplay(out)  # StringIO is not a tty
    for rows in (
        _rows("pending", "pending"),
        _rows("pending", "pending"),
        _rows("running", "pending"),
        _rows("running", "pending"),
        _rows("running", "pending"),
        _rows("completed", "running"),
        _rows("completed", "completed"),
    ):
        display.update(rows)
    display.close()
    assert out.getvalue().splitlines() == [
        "2 runs: 2 pending",
        "2 runs: 1 pending, 1 running",
        "2 runs: 1 running, 1 completed",
        "2 runs: 2 completed",
    ]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_one_line_is_redrawn() -> None:
    out = io.StringIO()
    display = WaitDisplay(out, tty=True)
    display.update(_rows("pending", "running", "completed", "failed"))
    display.update(_rows("completed", "completed", "completed", "failed"))
    display.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r\x1b[K") == 2
    last = text.rsplit("\r\x1b[K", 1)[1]
    assert last.startswith("[" + "#" * 20 + "] 4/4 finished | 4 runs:")
