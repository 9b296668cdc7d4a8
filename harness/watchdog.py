"""Liveness of a run's ranks: per-rank heartbeat files and a watchdog thread.

Every rank runs one daemon thread that, every ``interval_s``:

- rewrites ``<run dir>/heartbeat/rank<R>.json`` (time, pid, host, step). The thread
  keeps beating while the rank waits in a collective, so a stale file means the
  process itself is frozen (``kill -STOP``), dead or cut off, not merely waiting;
- checks the other ranks' files: a rank silent for ``silent_after_s``
  (DIST.TIMEOUT_S / 2, so before the process group's own timeout fires) fails the
  run with a message naming it: status.json says failed with ``failed_rank``, a
  silent process on this host is killed, and this process exits (its main thread
  is stuck in a collective that would otherwise wait out DIST.TIMEOUT_S);
- on rank 0, stamps status.json's ``heartbeat`` (and ``step``) when the step has
  advanced, so ``harness status`` can tell a run that progresses from a stalled one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.rundir import atomic_write_json, write_status

HEARTBEAT_DIR = "heartbeat"
EXIT_SILENT_PEER = 75  # exit code of a rank that gave up on a silent peer

log = logging.getLogger("harness")


def heartbeat_path(run_dir: str | os.PathLike, rank: int) -> Path:
    return Path(run_dir) / HEARTBEAT_DIR / f"rank{rank}.json"


def read_heartbeat(run_dir: str | os.PathLike, rank: int) -> dict[str, Any] | None:
    try:
        return json.loads(heartbeat_path(run_dir, rank).read_text())
    except (OSError, ValueError):
        return None


def intervals(timeout_s: float) -> tuple[float, float]:
    """(beat interval, silence limit) for a process-group timeout of ``timeout_s``."""
    silent_after = max(1.0, timeout_s / 2)
    return max(0.2, min(10.0, silent_after / 5)), silent_after


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (a stopped process counts as running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class Watchdog:
    def __init__(
        self, run_dir: Path, rank: int, world_size: int, timeout_s: float, step: Callable[[], int] = lambda: 0
    ) -> None:
        self.run_dir, self.rank, self.world_size = Path(run_dir), rank, world_size
        self.interval_s, self.silent_after_s = intervals(timeout_s)
        self.step = step
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()
        self._last_step: int | None = None

    # ---- lifecycle
    def start(self) -> Watchdog:
        self._started = time.time()
        self._beat()
        self._thread = threading.Thread(target=self._run, name="harness-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
                if self.rank == 0:
                    self._progress()
                silent = self.silent_peers()
            except Exception as e:  # a full disk must not kill the run from this thread
                log.warning("heartbeat: %s", e)
                continue
            if silent and not self._stop.is_set():
                self._fail(silent)

    # ---- beats
    def _beat(self) -> None:
        atomic_write_json(
            heartbeat_path(self.run_dir, self.rank),
            {
                "rank": self.rank,
                "pid": os.getpid(),
                "host": self.host,
                "time": time.time(),
                "step": self.step(),
            },
        )

    def _progress(self) -> None:
        step = self.step()
        if step != self._last_step:
            if self._last_step is not None:
                write_status(self.run_dir, step=step)
            self._last_step = step

    # ---- peers
    def silent_peers(self) -> list[tuple[int, float, dict[str, Any] | None]]:
        """Peers without a beat for ``silent_after_s``: (rank, seconds silent, last beat)."""
        now = time.time()
        silent = []
        for peer in range(self.world_size):
            if peer == self.rank:
                continue
            beat = read_heartbeat(self.run_dir, peer)
            # A file older than this watchdog is a previous attempt's: count from our start.
            last = max(float(beat["time"]) if beat else 0.0, self._started)
            if now - last > self.silent_after_s:
                silent.append((peer, now - last, beat))
        return silent

    def dead_peers(self) -> list[int]:
        """Peers on this host whose process is gone (for a rank's own error report)."""
        dead = []
        for peer in range(self.world_size):
            beat = read_heartbeat(self.run_dir, peer)
            if peer != self.rank and beat and beat.get("host") == self.host and not pid_running(beat["pid"]):
                dead.append(peer)
        return dead

    def _fail(self, silent: list[tuple[int, float, dict[str, Any] | None]]) -> None:
        peer, age, beat = silent[0]
        where = f" (pid {beat['pid']} on {beat['host']}, last at step {beat.get('step')})" if beat else ""
        message = (
            f"rank {peer}{where} sent no heartbeat for {age:.0f}s (limit {self.silent_after_s:.0f}s = "
            f"DIST.TIMEOUT_S/2): it is frozen, dead or cut off; rank {self.rank} stops the run"
        )
        log.error(message)
        try:
            write_status(
                self.run_dir,
                state="failed",
                error=message,
                failed_rank=peer,
                silent_rank=peer,
                step=beat.get("step") if beat else self.step(),
            )
        except OSError:
            pass
        for _, _, b in silent:  # a frozen process on this host would hold its devices for good
            if b and b.get("host") == self.host and pid_running(b["pid"]):
                try:
                    os.kill(b["pid"], signal.SIGKILL)
                except OSError:
                    pass
        for handler in log.handlers:
            handler.flush()
        os._exit(EXIT_SILENT_PEER)
