"""Fault injection at the points the loop cannot reach by itself (FAULT.* keys):
a real signal during validation or during a checkpoint write, and a hard kill halfway
through the checkpoint file. Only the main rank sends them; the trainer's agreement
on a stop request carries a preemption to the other ranks."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from yacs.config import CfgNode as CN

from harness import distributed as du

KILL_MARKER = ".fault-kill-done"


def preempt_in_validation(cfg: CN, epoch: int) -> None:
    if cfg.FAULT.PREEMPT_IN_VAL_AT_EPOCH == epoch and du.is_main():
        os.kill(os.getpid(), signal.SIGTERM)  # through the installed handler, as a real preemption


def checkpoint_midway(cfg: CN, run_dir: Path, step: int) -> Callable[[], None] | None:
    """What to do halfway through writing the checkpoint of ``step`` (None: nothing)."""
    if cfg.FAULT.PREEMPT_IN_CHECKPOINT_AT_STEP == step:
        return lambda: os.kill(os.getpid(), signal.SIGTERM)
    marker = run_dir / KILL_MARKER
    if cfg.FAULT.KILL_IN_CHECKPOINT_AT_STEP == step and not marker.exists():

        def kill() -> None:
            marker.touch()  # once: the relaunched run gets past it
            os.kill(os.getpid(), signal.SIGKILL)

        return kill
    return None
