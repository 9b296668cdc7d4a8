"""Shared by the fault tests: run directories' bytes, and waiting for processes and files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.spine_helpers import REPO

# DIST.TIMEOUT_S for fault tests that wait on heartbeats. A rank beats every tenth of the
# timeout (at most every 10 s, harness.watchdog.intervals): 30 s beats every 3 s, so a test
# sees both ranks train within seconds instead of waiting out a 10 s beat.
BEAT_TIMEOUT_S = 30


def snapshot(
    run_dir: Path,
    names: tuple[str, ...] = (
        "status.json",
        "config.yaml",
        "run.json",
        "metrics.jsonl",
        "checkpoints/last.pt",
    ),
) -> dict:
    """Bytes of the run directory's files: equal snapshots mean nothing was written."""
    return {name: (run_dir / name).read_bytes() for name in names if (run_dir / name).is_file()}


def status(run_dir: Path) -> dict:
    path = run_dir / "status.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def wait_for(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.2) -> object:
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def start_train(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """``harness train ARGS`` in the background (its own session, so a test can kill it alone)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "harness", "train", *args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    finally:
        if log:
            out.close()


def heartbeat(run_dir: Path, rank: int) -> dict | None:
    try:
        return json.loads((run_dir / "heartbeat" / f"rank{rank}.json").read_text())
    except (OSError, ValueError):
        return None
