"""The state of every run of a sweep: runs' status.json plus the scheduler.

A run's own status.json is the first source of truth (it says completed,
failed, preempted...). The scheduler (sacct, else squeue; pids for the local
backend) adds what a run cannot say itself: that its job is still queued, was
cancelled, or died without a word (``lost``: status says running, the heartbeat
is older than ``lost_after_s`` and the job is not in the queue). A run whose job is
alive but whose heartbeat (rank 0 stamps it when the step advances, see
harness.watchdog) is older than ``stalled_after_s`` is ``stalled``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.launcher.job_state import JobInfo, SchedulerError, is_local, query_local, query_slurm
from harness.launcher.manifest import read_manifest, run_dir
from harness.rundir import read_status

STATES = (
    "pending",
    "running",
    "stalled",
    "requeued",
    "preempted",
    "completed",
    "failed",
    "cancelled",
    "lost",
)
TERMINAL = {"completed", "failed", "cancelled", "lost", "preempted"}
# Scheduler end states that mean the job died before the run could say so.
_JOB_FAILED = {"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE"}
DEFAULT_LOST_AFTER_S = 600.0
# No step for this long while the job lives: stalled (a long validation can legitimately take minutes).
DEFAULT_STALLED_AFTER_S = 1800.0


@dataclass
class RunState:
    name: str
    state: str
    detail: str = ""
    job_id: str = ""
    scheduler_state: str = ""
    elapsed_s: float | None = None
    epoch: int | None = None
    step: int | None = None
    img_per_s: float | None = None
    primary_metric: str = ""
    best: float | None = None
    requeues: int = 0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def derive_state(
    status: dict[str, Any],
    job: JobInfo | None,
    lost_after_s: float,
    now: float,
    stalled_after_s: float = DEFAULT_STALLED_AFTER_S,
) -> tuple[str, str]:
    """(state, error) from a run's status.json and its job's scheduler info
    (None: no job known)."""
    written = status.get("state")
    alive = job is not None and job.alive
    if written == "completed":
        return "completed", ""
    if written == "failed":
        return "failed", status.get("error") or ""
    if written == "cancelled" or (job is not None and job.state == "CANCELLED"):
        return "cancelled", ""
    if written == "preempted":
        return ("requeued" if alive else "preempted"), ""
    if written == "running":
        if job is not None and job.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD"):
            return "requeued", ""
        silent_s = now - float(status.get("heartbeat") or 0)
        if silent_s > lost_after_s and not alive:
            return "lost", ""
        if silent_s > stalled_after_s and alive:
            return "stalled", ""
        return "running", ""
    # pending, or no status.json yet
    if job is None:
        return "pending", ""
    if job.state == "RUNNING":
        return "running", ""
    if alive:
        return "pending", ""
    if job.state in _JOB_FAILED:
        return "failed", f"job ended {job.state} before the run wrote its status (see the job's log)"
    return "lost", ""


def _detail(row: RunState, status: dict[str, Any], now: float) -> str:
    if row.state == "running":
        parts = []
        if row.epoch is not None:
            parts.append(f"epoch {row.epoch}")
        if row.step is not None:
            parts.append(f"step {row.step}")
        if row.img_per_s is not None:
            parts.append(f"{row.img_per_s:.1f} img/s")
        return " ".join(parts) or "starting"
    if row.state == "completed":
        if row.best is None:
            return "done"
        return f"{row.primary_metric or 'best'}={row.best:.4g}"
    if row.state == "failed":
        return row.error.splitlines()[0] if row.error else "failed"
    if row.state in ("requeued", "preempted"):
        where = f"step {row.step}, " if row.step is not None else ""
        return f"{where}requeues {row.requeues}"
    if row.state == "stalled":
        return f"no step for {now - float(status.get('heartbeat') or 0):.0f}s at step {row.step}, job alive"
    if row.state == "lost":
        heartbeat = status.get("heartbeat")
        return f"no heartbeat for {now - heartbeat:.0f}s, job gone" if heartbeat else "job gone, no status"
    return ""


def sweep_status(
    sweep_dir: str | Path,
    lost_after_s: float = DEFAULT_LOST_AFTER_S,
    manifest: dict[str, Any] | None = None,
    stalled_after_s: float = DEFAULT_STALLED_AFTER_S,
) -> tuple[list[RunState], str]:
    """One row per run (manifest order) and where scheduler info came from."""
    manifest = manifest if manifest is not None else read_manifest(sweep_dir)
    runs = manifest["runs"]
    job_ids = {name: run.get("job_id") or "" for name, run in runs.items()}
    slurm_ids = [j for j in job_ids.values() if j and not is_local(j)]
    local_ids = [j for j in job_ids.values() if is_local(j)]
    jobs: dict[str, JobInfo] = {}
    source = "none"
    if slurm_ids:
        try:
            found, source = query_slurm(slurm_ids)
            jobs.update(found)
        except SchedulerError as e:
            source = f"unavailable ({e})"
    if local_ids:
        jobs.update(query_local(local_ids, {job_ids[n]: n for n in runs if is_local(job_ids[n])}))
        source = "local" if source == "none" else f"{source}+local"
    now = time.time()
    rows = []
    for name in runs:
        status = read_status(run_dir(sweep_dir, name))
        job = jobs.get(job_ids[name]) if job_ids[name] else None
        state, error = derive_state(status, job, lost_after_s, now, stalled_after_s)
        row = RunState(
            name=name,
            state=state,
            job_id=job_ids[name],
            scheduler_state=job.state if job else "",
            epoch=status.get("epoch"),
            step=status.get("step"),
            img_per_s=status.get("last_img_per_s"),
            primary_metric=status.get("primary_metric", ""),
            best=status.get("best"),
            requeues=int(status.get("requeues") or 0),
            error=error or (status.get("error") or "" if state == "failed" else ""),
        )
        started = status.get("started_at")
        if job is not None and job.elapsed_s is not None:
            row.elapsed_s = job.elapsed_s  # the scheduler's: the current job, start-up included
        elif status.get("job_started_at") is not None:
            # The local scheduler's own clock for the current process: start-up included, as sacct.
            end = status.get("job_ended_at") or (now if job is not None and job.alive else None)
            end = end or float(status.get("heartbeat") or now)
            row.elapsed_s = max(0.0, float(end) - float(status["job_started_at"]))
        elif started is not None and status.get("state") not in (None, "pending"):
            end = now if state == "running" else float(status.get("heartbeat") or now)
            row.elapsed_s = max(0.0, end - float(started))
        row.detail = _detail(row, status, now)
        rows.append(row)
    return rows, source


def summary(rows: list[RunState]) -> dict[str, int]:
    counts = {state: 0 for state in STATES}
    for row in rows:
        counts[row.state] += 1
    return {"total": len(rows), **{k: v for k, v in counts.items() if v}}


def summary_line(rows: list[RunState]) -> str:
    counts = summary(rows)
    parts = [f"{v} {k}" for k, v in counts.items() if k != "total"]
    return f"{counts['total']} runs: " + ", ".join(parts)


def all_finished(rows: list[RunState]) -> bool:
    return all(row.state in TERMINAL for row in rows)


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def format_table(rows: list[RunState]) -> str:
    header = ("RUN", "STATE", "DETAIL", "REQ", "JOB", "ELAPSED")
    body = [
        (r.name, r.state, r.detail, str(r.requeues), r.job_id or "-", _elapsed(r.elapsed_s)) for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    widths[2] = min(widths[2], 60)

    def line(cells: tuple[str, ...]) -> str:
        cells = tuple(c if len(c) <= widths[i] else c[: widths[i] - 1] + "…" for i, c in enumerate(cells))
        return "  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(header)] + [line(b) for b in body])


def status_json(rows: list[RunState], source: str, sweep_dir: str | Path) -> str:
    return json.dumps(
        {
            "sweep_dir": str(sweep_dir),
            "scheduler": source,
            "summary": summary(rows),
            "runs": [r.to_dict() for r in rows],
        },
        indent=2,
    )
