"""What the scheduler says about a sweep's jobs: sacct, squeue, or local pids.

One ``sacct`` call covers every job of a sweep; when accounting is unavailable
the queue (``squeue``) is the fallback, and a job absent from it has ended.
Local-backend jobs are process ids checked through ``/proc``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Scheduler states in which the job may still run (or run again).
ALIVE = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "RESV_DEL_HOLD",
    "PREEMPTED",
}
LOCAL_PREFIX = "local:"
LOCAL_QUEUE_PREFIX = "local-queue:"


@dataclass
class JobInfo:
    state: str  # upper-case scheduler state, first word ("CANCELLED by 0" -> "CANCELLED")
    elapsed_s: float | None = None
    nodelist: str = ""
    source: str = "sacct"

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


class SchedulerError(RuntimeError):
    """Neither sacct nor squeue answered."""


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _expand(job_field: str) -> list[str]:
    """``123_[2-4%2]`` -> 123_2, 123_3, 123_4; ``123_5`` -> 123_5; ``123`` -> 123."""
    # submitit's parser of sacct's job field; imported here because it costs 0.3 s and
    # `harness status` of a local sweep never needs it.
    from submitit.slurm.slurm import read_job_id

    ids = []
    for parts in read_job_id(job_field):
        if len(parts) == 3:
            ids += [f"{parts[0]}_{i}" for i in range(int(parts[1]), int(parts[2]) + 1)]
        else:
            ids.append("_".join(parts))
    return ids


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """``sacct -X -n -P -o JobID,State,ElapsedRaw,NodeList`` output -> job id -> info."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0] or "." in fields[0]:
            continue
        state = fields[1].split()[0] if fields[1] else "UNKNOWN"
        elapsed = float(fields[2]) if fields[2].isdigit() else None
        for job_id in _expand(fields[0]):
            jobs[job_id] = JobInfo(state, elapsed, fields[3], "sacct")
    return jobs


def parse_duration(text: str) -> float | None:
    """squeue's ``%M``: ``[days-][hours:]minutes:seconds``."""
    if not text or text in ("INVALID", "UNLIMITED"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds + (int(days) * 86400 if days else 0)


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """``squeue -h -r -o %i|%T|%M|%N`` output -> job id -> info."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0]:
            continue
        for job_id in _expand(fields[0]):
            jobs[job_id] = JobInfo(fields[1].split()[0], parse_duration(fields[2]), fields[3], "squeue")
    return jobs


def query_slurm(job_ids: list[str]) -> tuple[dict[str, JobInfo], str]:
    """Info for ``job_ids`` (``123`` or ``123_4``) and where it came from.

    sacct is asked once for all base ids. Without accounting, squeue lists the
    queue; a job missing from it has left the queue (state ``GONE``)."""
    bases = sorted({j.split("_")[0] for j in job_ids if j})
    if not bases:
        return {}, "none"
    jobs: dict[str, JobInfo] = {}
    source = ""
    try:
        out = _run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,State,ElapsedRaw,NodeList", "--jobs", ",".join(bases)]
        )
        if out.returncode == 0:
            jobs = parse_sacct(out.stdout)
            source = "sacct"
    except (OSError, subprocess.SubprocessError):
        pass
    # Accounting can lag a fresh submission, or be missing: ask the queue for the rest.
    missing = [j for j in job_ids if j not in jobs]
    if not missing:
        return {j: jobs[j] for j in job_ids}, source
    try:
        out = _run(["squeue", "--me", "-h", "-r", "-o", "%i|%T|%M|%N"])
    except (OSError, subprocess.SubprocessError) as e:
        raise SchedulerError(f"neither sacct nor squeue could be run: {e}") from e
    if out.returncode != 0:
        if source:
            return {j: jobs.get(j, JobInfo("UNKNOWN", source="sacct")) for j in job_ids}, source
        raise SchedulerError(f"sacct and squeue failed: {out.stderr.strip()}")
    queued = parse_squeue(out.stdout)
    for j in missing:
        jobs[j] = queued.get(j, JobInfo("GONE", source="squeue"))
    return {j: jobs[j] for j in job_ids}, "+".join(filter(None, [source, "squeue"]))


def pid_alive(pid: int, expect_in_cmdline: str = "") -> bool:
    """Whether ``pid`` runs and (to guard against pid reuse) its command line
    contains ``expect_in_cmdline``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # zombie: finished, not yet reaped
        return False
    return expect_in_cmdline in cmdline


def query_local(job_ids: list[str], run_names: dict[str, str]) -> dict[str, JobInfo]:
    """``local:<pid>`` is RUNNING while that process lives; ``local-queue:<pid>``
    is PENDING while the sweep's local scheduler lives."""
    jobs = {}
    for job_id in job_ids:
        if job_id.startswith(LOCAL_PREFIX):
            pid = int(job_id[len(LOCAL_PREFIX) :])
            alive = pid_alive(pid, run_names.get(job_id, ""))
            jobs[job_id] = JobInfo("RUNNING" if alive else "GONE", source="local")
        elif job_id.startswith(LOCAL_QUEUE_PREFIX):
            pid = int(job_id[len(LOCAL_QUEUE_PREFIX) :])
            alive = pid_alive(pid, "harness.launcher.local_queue")
            jobs[job_id] = JobInfo("PENDING" if alive else "GONE", source="local")
    return jobs


def is_local(job_id: str | None) -> bool:
    return bool(job_id) and str(job_id).startswith((LOCAL_PREFIX, LOCAL_QUEUE_PREFIX))


def cancel_slurm(job_ids: list[str]) -> None:
    if job_ids:
        out = _run(["scancel", *job_ids])
        if out.returncode != 0:
            raise SchedulerError(f"scancel {' '.join(job_ids)} failed: {out.stderr.strip()}")


def cancel_local(job_id: str, signal_number: int) -> bool:
    """Signal the process group of a local run; False when it had already ended."""
    if not job_id.startswith(LOCAL_PREFIX):
        return False
    pid = int(job_id[len(LOCAL_PREFIX) :])
    try:
        os.killpg(pid, signal_number)
        return True
    except ProcessLookupError:
        return False
