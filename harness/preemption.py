"""A stop request that the trainer honours at the next step boundary.

Signal handlers only set a flag (async-signal-safe); the training loop agrees on
it across ranks, writes a checkpoint at the current step, and returns
"preempted". Submitit jobs install their own handler that calls
``request_stop`` (see harness.launcher.job).
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

_reason: str | None = None


def request_stop(reason: str) -> None:
    global _reason
    if _reason is None:
        _reason = reason


def stop_requested() -> str | None:
    return _reason


def clear() -> None:
    global _reason
    _reason = None


def _handler(signum: int, frame: object) -> None:
    request_stop(f"signal {signal.Signals(signum).name}")


def install_signal_handlers(signals: Iterable[int] = (signal.SIGTERM, signal.SIGUSR2)) -> dict[int, object]:
    """Route ``signals`` to ``request_stop``; returns the previous handlers."""
    previous: dict[int, object] = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, _handler)
        except ValueError:  # not the main thread
            pass
    return previous
