"""The checks a submission needs, made before the manifest is written and run by the dry
run too, so ``--dry-run`` accepts exactly what the real submission accepts.

- Every run directory path fits the file system (each name within NAME_MAX, the
  whole path within PATH_MAX with room for the files a run writes).
- For Slurm: the sweep directory and job name are safe in the sbatch script, each
  array's script renders (submitit's own parameter checks), and every run's callable
  pickles as submitit will pickle it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.launcher import slurm_backend
from harness.launcher.job import SweepRun
from harness.launcher.profiles import ClusterProfile
from harness.launcher.shell_safety import check_job_name, check_sweep_dir

# Room left under PATH_MAX for what a run writes below its directory
# (checkpoints/last.pt.tmp-<pid>, wandb/offline-run-<time>-<id>/files/...).
_RUN_FILES_ROOM = 160


class SubmitCheckError(UserError, ValueError):
    """A sweep that cannot be submitted as planned; nothing has been written yet."""


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # ENAMETOOLONG: a path over PATH_MAX is not there, whatever it names
        return False


def _limits(path: Path) -> tuple[int, int]:
    existing = path
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_run_paths(sweep_dir: Path, names: list[str]) -> None:
    """Every ``<sweep dir>/runs/<name>`` can be created, with room for its files."""
    name_max, path_max = _limits(sweep_dir)
    for part in sweep_dir.parts:
        if len(os.fsencode(part)) > name_max:
            raise SubmitCheckError(
                f"sweep directory {sweep_dir}: the name {part[:40]}... is "
                f"{len(os.fsencode(part))} bytes, over this file system's {name_max}"
            )
    for name in names:
        directory = sweep_dir / "runs" / name
        if len(os.fsencode(name)) > name_max:
            raise SubmitCheckError(
                f"run name {name[:60]}... is {len(os.fsencode(name))} bytes, over this "
                f"file system's limit of {name_max}"
            )
        if len(os.fsencode(str(directory))) + _RUN_FILES_ROOM > path_max:
            raise SubmitCheckError(
                f"run directory {directory} is too long for this file system "
                f"(PATH_MAX {path_max}); use a shorter --root"
            )


def check_submission(
    sweep_dir: Path, manifest: dict[str, Any], names: list[str], profile: ClusterProfile | None
) -> None:
    """Everything the submission of ``names`` will need, checked without writing anything."""
    check_run_paths(sweep_dir, list(manifest["runs"]))
    if profile is None:
        return

    def fail(message: str) -> SubmitCheckError:
        return SubmitCheckError(message)

    check_sweep_dir(sweep_dir, fail)
    check_job_name(manifest["name"], fail)
    runs = [manifest["runs"][n] for n in names]
    for chunk in slurm_backend.group_arrays(runs, profile):
        try:
            slurm_backend.render_sbatch(sweep_dir, chunk, profile, manifest["name"])
        except (ValueError, TypeError) as e:
            raise SubmitCheckError(
                f"array of {len(chunk.runs)} run(s) ({chunk.shape.label()}): the sbatch "
                f"script cannot be made: {e}"
            ) from e
    for run in runs:
        try:
            pickle.dumps(SweepRun(str(sweep_dir), run["name"], run["base"], run["opts"]))
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            raise SubmitCheckError(f"run {run['name']}: cannot be pickled for submitit: {e}") from e
