"""Start DIST.GPUS processes on this machine as one torch.distributed world, and tie their
lives to the process that started them (the launcher).

One path for every local multi-process job: training (``harness.spawn``), evaluation
(``harness.evaluate``) and commbench. Each rank gets RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, like torchrun sets them.

How the ranks start (``rank_start_method``):

- **forkserver** on a machine without a GPU driver. Every rank would otherwise import
  torch, torch._dynamo (torch.optim's first call pulls it in) and the workload in a fresh
  interpreter: about 3.5 s of CPU each. A fork server imports them once per launcher and
  forks each rank from that clean, single-threaded interpreter. The server was started at
  the launcher's first launch, so each rank takes the launcher's *current* environment and
  working directory (``LaunchState``), not the server's.
- **spawn** (fresh interpreters) where CUDA may be used, as torch requires of processes that
  will initialise CUDA.

``HARNESS_RANK_START=spawn|forkserver`` overrides the choice (benchmarks/bench_rank_start.py
compares the two).

The launcher itself never imports torch (``RankGroup`` supervises the ranks with the
standard library, as torch.multiprocessing's ProcessContext would): under forkserver it only
decides, starts and waits, and the import would cost it 1.5 s of CPU for nothing.

No orphans: a rank asks for ``stop_signal`` when its parent dies (``die_with_parent``: the
launcher under spawn, the fork server under forkserver) and when the launcher itself ends
(``die_with_process``), because a fork server outlives its launcher while ranks it forked
still run.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.devices import gpu_driver_present
from harness.world import find_free_port

PR_SET_PDEATHSIG = 1  # linux/prctl.h
RANK_START_ENV = "HARNESS_RANK_START"
# Imported by the fork server before it forks ranks: what every training rank needs anyway.
FORKSERVER_PRELOAD = ("harness.train", "torch._dynamo")


def rank_start_method(preload: Sequence[str] = ()) -> str:
    """``forkserver`` without a GPU driver (its server importing FORKSERVER_PRELOAD and
    ``preload`` when it first starts), ``spawn`` otherwise; ``HARNESS_RANK_START=spawn``
    (or ``forkserver``) in the environment decides instead."""
    chosen = os.environ.get(RANK_START_ENV, "").strip().lower()
    if chosen and chosen not in ("spawn", "forkserver"):
        raise ValueError(f"{RANK_START_ENV} is {chosen!r}; choose spawn or forkserver")
    if chosen == "spawn" or (not chosen and gpu_driver_present()):
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload([*FORKSERVER_PRELOAD, *preload])
    return "forkserver"


@dataclass(frozen=True)
class LaunchState:
    """What every rank of one launch is started with. The environment and the working
    directory are the launcher's at launch time, not the fork server's, which may have been
    started earlier, in another environment or directory."""

    nprocs: int
    port: int
    launcher_pid: int
    stop_signal: int
    handle_stop: bool
    environ: dict[str, str]
    cwd: str

    def enter_rank(self, local_rank: int) -> None:
        """In the rank: the launcher's environment and directory, the stop signals, and the
        variables torchrun would set."""
        os.environ.clear()
        os.environ.update(self.environ)
        os.chdir(self.cwd)
        if self.handle_stop:
            from harness.preemption import install_signal_handlers

            install_signal_handlers()
        die_with_parent(self.stop_signal)
        die_with_process(self.launcher_pid, self.stop_signal)
        os.environ.update(
            {
                "RANK": str(local_rank),
                "LOCAL_RANK": str(local_rank),
                "WORLD_SIZE": str(self.nprocs),
                "LOCAL_WORLD_SIZE": str(self.nprocs),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(self.port),
            }
        )


def start_local_ranks(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    nprocs: int,
    *,
    preload: Sequence[str] = (),
    join: bool = True,
    stop_signal: int = signal.SIGTERM,
    handle_stop: bool = False,
) -> RankGroup:
    """``target(local_rank, *args)`` in ``nprocs`` local processes of one world; returns the
    ``RankGroup`` (``join=False``) or waits, raising ``RankRaised`` / ``RankExited`` when a
    rank fails (``join=True``).

    ``handle_stop``: the ranks route SIGTERM/SIGUSR2 to ``harness.preemption`` (stop at the
    next step boundary) before asking for ``stop_signal`` on the launcher's death."""
    launch = LaunchState(
        nprocs, find_free_port(), os.getpid(), stop_signal, handle_stop, dict(os.environ), os.getcwd()
    )
    context: Any = multiprocessing.get_context(rank_start_method(preload))  # typeshed: a union
    error_dir = tempfile.mkdtemp(prefix="harness-ranks-")
    error_files = [os.path.join(error_dir, f"rank{rank}.traceback") for rank in range(nprocs)]
    processes: list[Any] = []
    try:
        for rank in range(nprocs):
            entry_args = (rank, target, args, launch, error_files[rank])
            process = context.Process(target=_rank_entry, args=entry_args)
            process.start()
            processes.append(process)
    except BaseException:  # a rank that cannot start: the ones already started do not stay behind
        RankGroup(processes, error_files, error_dir).stop(grace_period=0)
        shutil.rmtree(error_dir, ignore_errors=True)
        raise
    group = RankGroup(processes, error_files, error_dir)
    while join and not group.join():
        pass
    return group


class RankError(Exception):
    """A local rank failed: ``error_index`` is its rank, ``error_pid`` its process id."""

    def __init__(self, message: str, error_index: int, error_pid: int | None) -> None:
        super().__init__(message)
        self.error_index = error_index
        self.error_pid = error_pid


class RankRaised(RankError):
    """A rank raised an exception; the message ends with its traceback."""


class RankExited(RankError):
    """A rank exited with a non-zero code, or was killed by a signal (``exit_code`` < 0)."""

    def __init__(self, message: str, error_index: int, error_pid: int | None, exit_code: int) -> None:
        super().__init__(message, error_index, error_pid)
        self.exit_code = exit_code


class RankGroup:
    """The ranks of one launch. ``join`` waits for them; once one fails it gives the others
    ``grace_period`` to stop, then SIGTERM, then (another grace period, 30 s without one)
    SIGKILL, and raises for the first failure (torch.multiprocessing's rules)."""

    def __init__(self, processes: list[Any], error_files: list[str], error_dir: str) -> None:
        self.processes = processes
        self._error_files = error_files
        self._error_dir = error_dir
        self._running = {process.sentinel: rank for rank, process in enumerate(processes)}

    def join(self, timeout: float | None = None, grace_period: float | None = None) -> bool:
        """True once every rank exited 0; False if some still run after ``timeout``."""
        if not self._running:
            return True
        failed = None
        for sentinel in mp_connection.wait(list(self._running), timeout=timeout):
            rank = self._running.pop(sentinel)
            self.processes[rank].join()
            if self.processes[rank].exitcode != 0:
                failed = rank
                break
        if failed is None:
            if not self._running:
                shutil.rmtree(self._error_dir, ignore_errors=True)
            return not self._running
        self.stop(grace_period)
        raise self._failure(failed)

    def stop(self, grace_period: float | None = None) -> None:
        """Wait ``grace_period`` for the ranks still running, then SIGTERM, then SIGKILL."""
        if grace_period is not None:
            self._join_all(grace_period)
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        self._join_all(30.0 if grace_period is None else grace_period)
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join()
        self._running.clear()

    def _join_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))

    def _failure(self, rank: int) -> RankError:
        process = self.processes[rank]
        try:
            with open(self._error_files[rank], encoding="utf-8") as f:
                trace = f.read()
        except OSError:
            trace = None
        finally:
            shutil.rmtree(self._error_dir, ignore_errors=True)
        if trace is not None:
            return RankRaised(f"\n\n-- rank {rank} raised:\n{trace}", rank, process.pid)
        code = process.exitcode
        how = f"signal {signal_name(-code)}" if code < 0 else f"exit code {code}"
        return RankExited(f"rank {rank} terminated with {how}", rank, process.pid, code)


def signal_name(number: int) -> str:
    """SIGKILL for 9; ``signal N`` for a number no signal has."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _rank_entry(
    local_rank: int, target: Callable[..., Any], args: tuple[Any, ...], launch: LaunchState, error_file: str
) -> None:
    try:
        launch.enter_rank(local_rank)
        target(local_rank, *args)
    except KeyboardInterrupt:
        pass  # SIGINT from the launcher stopping this rank
    except Exception:
        # The traceback goes to the launcher, which raises it as RankRaised.
        with open(error_file, "w", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        sys.exit(1)


def die_with_parent(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> None:
    """Have this process receive ``sig`` when its parent dies (no orphaned ranks).

    Linux: prctl(PR_SET_PDEATHSIG) through ctypes; elsewhere (or if prctl fails) a
    daemon thread polls the parent pid. SIGTERM lets a rank stop at the next step
    boundary and checkpoint, as on a preemption."""
    parent = os.getppid() if parent_pid is None else parent_pid
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), sig)

        threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def die_with_process(pid: int, sig: int = signal.SIGTERM) -> None:
    """Have this process receive ``sig`` when process ``pid`` (not necessarily its parent) ends.

    A pidfd (Linux 5.3+) wakes a daemon thread the moment ``pid`` exits; elsewhere the thread
    polls once a second. A ``pid`` already gone delivers ``sig`` at once."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), sig)
        return
    except (AttributeError, OSError):  # no pidfd_open here
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while pid_alive(pid):
                time.sleep(1.0)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name=f"harness-watch-{pid}", daemon=True).start()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
