"""Start a run: in this process, or as DIST.GPUS local processes for ddp when no
distributed environment exists (like detectron2's ``launch``)."""

from __future__ import annotations

import multiprocessing.connection as mp_connection
import os
import signal
import sys
from pathlib import Path
from typing import Any

from yacs.config import CfgNode as CN

from harness.local_ranks import RankError, RankExited, signal_name, start_local_ranks
from harness.preflight import check_machine
from harness.resume_guard import check_resume
from harness.rundir import read_status, run_dir_for, write_status
from harness.tasks import task_module
from harness.world import world_info_from_env

GRACE_S = 5.0  # after one rank fails, how long the others get to stop before SIGTERM, then SIGKILL


def needs_spawn(cfg: CN) -> bool:
    return cfg.DIST.STRATEGY == "ddp" and cfg.DIST.GPUS > 1 and not world_info_from_env().distributed


def launch(cfg: CN, resume: str = "auto") -> str:
    """Run ``cfg`` to the end; returns "completed" or "preempted".

    A launcher that starts ranks imports no torch (the ranks do); a single process trains here."""
    if not needs_spawn(cfg):
        from harness.train import run_training

        return run_training(cfg, resume)
    if cfg.DIST.NODES > 1:
        raise RuntimeError(
            f"DIST.NODES {cfg.DIST.NODES}: a multi-node run needs one launcher per node; "
            "submit it with `harness sweep --backend slurm` or start it with torchrun"
        )
    nprocs = cfg.DIST.GPUS
    check_machine(cfg)  # what `harness train` checked before; here for callers of launch() too
    if check_resume(cfg, run_dir_for(cfg), resume).already_completed:  # refuse here, before any rank starts
        print(f"run {cfg.RUN_NAME} already completed ({run_dir_for(cfg)}); nothing to do", file=sys.stderr)
        return "completed"
    context = start_local_ranks(
        _worker,
        (cfg, resume),
        nprocs,
        preload=[task_module(cfg.TASK)],
        join=False,
        handle_stop=True,
    )
    forward = _forward_signals([p.pid for p in context.processes])
    try:
        first = _first_failure(context.processes)
        while not context.join(timeout=1, grace_period=GRACE_S):
            pass
    except RankError as e:
        if first is not None and first[1] < 0:  # killed by a signal: the cause, whatever failed next
            raise RankFailed(_record_rank_death(run_dir_for(cfg), *first)) from None
        if isinstance(e, RankExited):
            raise RankFailed(_record_rank_death(run_dir_for(cfg), e.error_index, e.exit_code)) from None
        # The rank wrote status.json and its traceback itself; report its last line.
        last = [line for line in str(e).splitlines() if line.strip()]
        raise RankFailed(f"rank {e.error_index} failed: {last[-1] if last else e}") from None
    finally:
        for sig, handler in forward.items():
            signal.signal(sig, handler)
    return read_status(run_dir_for(cfg)).get("state", "completed")


class RankFailed(RuntimeError):
    """A local rank died or raised; status.json says failed (one line)."""


def _first_failure(processes: list[Any]) -> tuple[int, int] | None:
    """Wait until every rank ended or one failed: (rank, exit code) of the first failure,
    a rank killed by a signal first (its peers' errors follow from it)."""
    while True:
        failed = [(i, p.exitcode) for i, p in enumerate(processes) if p.exitcode not in (None, 0)]
        if failed:
            return sorted(failed, key=lambda f: f[1] >= 0)[0]
        alive = [p.sentinel for p in processes if p.exitcode is None]
        if not alive:
            return None
        mp_connection.wait(alive, timeout=1)


def _record_rank_death(run_dir: Path, rank: int, exit_code: int) -> str:
    """status.json: failed, with the rank, the signal (or exit code) and the last step."""
    status = read_status(run_dir)
    step = status.get("step")
    killed_by = signal_name(-exit_code) if exit_code < 0 else None
    how = f"was killed by {killed_by}" if killed_by else f"exited with code {exit_code}"
    message = f"rank {rank} {how} at step {step}"
    if status.get("state") == "failed" and status.get("silent_rank") is not None:
        return status.get("error") or message  # a watchdog already named the silent rank
    if status.get("state") in (None, "pending", "running", "failed"):
        write_status(
            run_dir,
            heartbeat=False,
            state="failed",
            error=message,
            failed_rank=rank,
            signal=killed_by,
            exit_code=exit_code,
        )
    return message


def _forward_signals(pids: list[int]) -> dict[int, Any]:
    """Preemption signals sent to the launcher reach every worker."""

    def forward(signum: int, frame: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        previous[sig] = signal.signal(sig, forward)
    return previous


def _worker(local_rank: int, cfg: CN, resume: str) -> None:
    from harness.train import run_training

    run_training(cfg, resume)
