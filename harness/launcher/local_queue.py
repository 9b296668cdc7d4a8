"""Run a sweep on this machine, detached from the launching terminal.

``start_scheduler`` spawns ``python -m harness.launcher.local_queue SWEEP_DIR
RUN...`` in a new session (a closed terminal sends it no SIGHUP). That process
takes the sweep's scheduler lock (so two of them never compete), then runs the
runs: with GPUs, each on its own disjoint set of free GPUs, concurrently when
they fit and queued otherwise; without GPUs, one after another (ddp as local
gloo processes). Each run is ``python -m harness.launcher.run_one`` in its own
process group, with stdout and stderr appended to ``<run dir>/train.log``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.devices import gpu_driver_present
from harness.launcher.job_state import LOCAL_PREFIX, LOCAL_QUEUE_PREFIX
from harness.launcher.manifest import locked, read_manifest, record_submission, run_dir, updating
from harness.rundir import read_status, write_status
from harness.runformat import TRAIN_LOG, devices_from_config

POLL_S = 0.5


def start_scheduler(sweep_dir: str | Path, names: list[str]) -> int:
    """Spawn the detached scheduler for ``names``; returns its pid."""
    sweep_dir = Path(sweep_dir).resolve()
    log_dir = sweep_dir / "local"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "scheduler.log", "ab") as log:
        command = [sys.executable, "-m", "harness.launcher.local_queue", str(sweep_dir), *names]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def queue_job_id(pid: int) -> str:
    return f"{LOCAL_QUEUE_PREFIX}{pid}"


def gpus_needed(run: dict[str, Any]) -> int:
    return devices_from_config(run["config"])


def visible_gpus() -> list[str]:
    """GPU ids this process may hand out (respects CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    if not gpu_driver_present():
        return []
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA install means: no GPUs to pack
        return []


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _current_jobs(sweep_dir: Path) -> dict[str, str | None]:
    with locked(sweep_dir):  # the submitter records our job id under this lock
        return {name: run.get("job_id") for name, run in read_manifest(sweep_dir)["runs"].items()}


def _still_ours(sweep_dir: Path, name: str, job_id: str, jobs: dict[str, str | None]) -> bool:
    """A run is skipped when it was cancelled or resubmitted since it was queued."""
    return jobs.get(name) == job_id and read_status(run_dir(sweep_dir, name)).get("state") != "cancelled"


def _start(sweep_dir: Path, name: str, gpus: list[str]) -> subprocess.Popen:
    directory = run_dir(sweep_dir, name)
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    started = time.time()
    with open(directory / TRAIN_LOG, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.launcher.run_one", str(sweep_dir), name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    # The process's own start: `harness status` ELAPSED includes start-up, like sacct's.
    write_status(directory, heartbeat=False, job_started_at=started, job_ended_at=None)
    with updating(sweep_dir) as manifest:
        record_submission(manifest, name, "local", f"{LOCAL_PREFIX}{proc.pid}", gpus=gpus)
    _log(f"started {name} pid {proc.pid} gpus {gpus or 'cpu'}")
    return proc


def _finished(sweep_dir: Path, name: str, returncode: int) -> None:
    """A run that died without saying so (import error, kill -9) is marked failed."""
    directory = run_dir(sweep_dir, name)
    state = read_status(directory).get("state")
    _log(f"finished {name} exit {returncode} state {state}")
    write_status(directory, heartbeat=False, job_ended_at=time.time())
    if returncode != 0 and state in (None, "pending", "running"):
        log = directory / TRAIN_LOG
        text = log.read_text(errors="replace") if log.is_file() else ""
        lines = [x for x in text.splitlines() if x.strip()]
        tail = lines[-1] if lines else ""
        write_status(
            directory,
            state="failed",
            error=f"process exited with code {returncode}: {tail}"[:500],
            traceback="\n".join(lines[-40:]),
        )


def plan_starts(
    needs: list[tuple[str, int]], free: list[str], gpu_mode: bool, any_running: bool
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Which queued runs start now, on which GPUs; and the GPUs left free.

    GPU mode: in queue order, every run whose GPU count fits the free GPUs gets a
    disjoint set of them (a smaller run may pass a larger one that must wait).
    CPU mode: one run at a time, in queue order."""
    if not gpu_mode:
        return ([(needs[0][0], [])] if needs and not any_running else []), free
    starts = []
    for name, need in needs:
        if need <= len(free):
            starts.append((name, free[:need]))
            free = free[need:]
    return starts, free


def run_queue(sweep_dir: str | Path, names: Sequence[str]) -> int:
    """Run ``names`` to the end (blocking); the body of the detached scheduler."""
    sweep_dir = Path(sweep_dir).resolve()
    my_job_id = queue_job_id(os.getpid())
    (sweep_dir / "local").mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / "local" / "scheduler.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one scheduler per sweep at a time
        runs = read_manifest(sweep_dir)["runs"]
        gpus = visible_gpus()
        _log(f"scheduler {os.getpid()}: {len(names)} runs, gpus {gpus or 'none (cpu, one run at a time)'}")
        queue = list(names)
        free = list(gpus)
        running: dict[str, tuple[subprocess.Popen, list[str]]] = {}
        while queue or running:
            jobs = _current_jobs(sweep_dir) if queue else {}
            for name in list(queue):
                if not _still_ours(sweep_dir, name, my_job_id, jobs):
                    queue.remove(name)
                    _log(f"skipped {name} (cancelled or resubmitted)")
                elif gpus and gpus_needed(runs[name]) > len(gpus):
                    queue.remove(name)
                    write_status(
                        run_dir(sweep_dir, name),
                        state="failed",
                        error=f"needs {gpus_needed(runs[name])} GPUs; this machine has {len(gpus)}",
                    )
            needs = [(name, gpus_needed(runs[name]) if gpus else 0) for name in queue]
            starts, free = plan_starts(needs, free, bool(gpus), bool(running))
            for name, taken in starts:
                running[name] = (_start(sweep_dir, name, taken), taken)
                queue.remove(name)
            for name, (proc, taken) in list(running.items()):
                if proc.poll() is not None:
                    _finished(sweep_dir, name, proc.returncode)
                    free += taken
                    del running[name]
            time.sleep(POLL_S)
    _log("scheduler done")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m harness.launcher.local_queue SWEEP_DIR RUN...", file=sys.stderr)
        return 2
    return run_queue(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main())
