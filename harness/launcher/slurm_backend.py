"""Submit runs to Slurm through submitit: one job array per resource shape.

Runs are grouped by :class:`~harness.launcher.profiles.Shape`; each group is
split into chunks of at most the profile's ``max_array_size`` and each chunk is
one ``submit_array`` call, i.e. one ``sbatch``. The dry run renders the same
sbatch text submitit would write, without submitting.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.launcher.job import SweepRun
from harness.launcher.job_state import SchedulerError
from harness.launcher.profiles import ClusterProfile, Shape


@dataclass
class ArrayChunk:
    """Runs that go into one sbatch call."""

    shape: Shape
    runs: list[dict[str, Any]]  # manifest run entries


def group_arrays(runs: list[dict[str, Any]], profile: ClusterProfile) -> list[ArrayChunk]:
    """Group runs by shape (in first-seen order), then split by ``max_array_size``."""
    groups: dict[Shape, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(Shape.from_dict(run["shape"]), []).append(run)
    chunks = []
    for shape, members in groups.items():
        for start in range(0, len(members), profile.max_array_size):
            chunks.append(ArrayChunk(shape, members[start : start + profile.max_array_size]))
    return chunks


def executor_parameters(shape: Shape, profile: ClusterProfile, job_name: str) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters (its native names) for one array."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "nodes": shape.nodes,
        "ntasks_per_node": shape.tasks_per_node,
        "cpus_per_task": shape.cpus_per_task,
        "time": shape.timeout_min,
        "signal_delay_s": profile.signal_delay_s,
        "array_parallelism": profile.array_parallelism,
    }
    if shape.gpus_per_node:
        params["gpus_per_node"] = shape.gpus_per_node
    if shape.mem_gb is not None:
        params["mem"] = _mem(shape.mem_gb)
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(profile, key)
        if value:
            params[key] = value
    if profile.setup:
        params["setup"] = list(profile.setup)
    if profile.additional_parameters:
        params["additional_parameters"] = dict(profile.additional_parameters)
    return params


def _mem(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def python_command(profile: ClusterProfile) -> str:
    return profile.python or shlex.quote(sys.executable)


def job_folder(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir).resolve() / "slurm" / "%j"


def render_sbatch(sweep_dir: str | Path, chunk: ArrayChunk, profile: ClusterProfile, job_name: str) -> str:
    """The sbatch script submitit writes for this chunk (an array when > 1 run)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = job_folder(sweep_dir)
    command = " ".join([python_command(profile), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    params = executor_parameters(chunk.shape, profile, job_name)
    if len(chunk.runs) > 1:
        params["map_count"] = len(chunk.runs)
    return _make_sbatch_string(command=command, folder=folder, **params)


def submit_chunks(
    sweep_dir: str | Path, chunks: list[ArrayChunk], profile: ClusterProfile, job_name: str
) -> Iterator[dict[str, Any]]:
    """Submit each chunk with one ``submit_array``; yields one record per chunk as
    soon as it is submitted: ``{"array_job_id", "shape", "runs": [(name, job_id,
    index)], "submitted_at"}``. A failed sbatch raises SchedulerError."""
    import submitit
    from submitit.core.utils import FailedJobError

    for number, chunk in enumerate(chunks):
        callables = [
            SweepRun(str(Path(sweep_dir).resolve()), run["name"], run["base"], run["opts"])
            for run in chunk.runs
        ]
        try:
            # The constructor fails where srun is missing: not a Slurm machine.
            executor = submitit.SlurmExecutor(
                folder=job_folder(sweep_dir),
                max_num_timeout=profile.max_num_timeout,
                python=profile.python or None,
            )
            executor.update_parameters(**executor_parameters(chunk.shape, profile, job_name))
            jobs = executor.submit_array(callables)
        except (FailedJobError, RuntimeError, OSError) as e:
            raise SchedulerError(
                f"sbatch failed for array {number} ({len(callables)} runs, "
                f"{chunk.shape.label()}): {str(e).strip()[:2000]}"
            ) from e
        array_job_id = jobs[0].job_id.split("_")[0]
        is_array = len(jobs) > 1
        yield {
            "array_job_id": array_job_id,
            "shape": chunk.shape.to_dict(),
            "runs": [
                (run["name"], job.job_id, i if is_array else None)
                for i, (run, job) in enumerate(zip(chunk.runs, jobs))
            ],
            "submitted_at": time.time(),
        }
