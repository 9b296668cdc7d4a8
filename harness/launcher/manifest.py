"""``<sweep dir>/manifest.json``: the spec, the expanded runs, and every submission.

The manifest is rewritten atomically under a lock file, because the CLI and the
local scheduler (a detached process) both update it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.rundir import atomic_write_json, read_json
from harness.runformat import MANIFEST_JSON

if TYPE_CHECKING:  # `harness status` reads manifests without loading configs
    from harness.launcher.spec import RunPlan, SweepSpec

MANIFEST = MANIFEST_JSON
VERSION = 1


class ManifestError(UserError, ValueError):
    """A sweep directory without a (readable) manifest, or a conflicting re-run."""


def manifest_path(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / MANIFEST


def run_dir(sweep_dir: str | os.PathLike, name: str) -> Path:
    return Path(sweep_dir) / "runs" / name


def spec_hash(plans: list[RunPlan]) -> str:
    """Identity of what a spec expands to: run names and full configs.

    A changed base config changes it too, which is what matters for reuse."""
    payload = json.dumps(
        [[p.name, p.config, p.shape.to_dict() if p.shape else None] for p in plans],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def new_manifest(
    spec: SweepSpec, plans: list[RunPlan], sweep_dir: Path, backend: str, cluster: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "version": VERSION,
        "name": spec.name,
        "sweep_dir": str(sweep_dir),
        "spec_path": spec.path,
        "spec": spec.raw,
        "spec_hash": spec_hash(plans),
        "created_at": time.time(),
        "backend": backend,
        "cluster": cluster,
        "sbatch_calls": 0,
        "arrays": [],
        "runs": {p.name: {**p.to_dict(), "submissions": []} for p in plans},
    }


def read_manifest(sweep_dir: str | os.PathLike) -> dict[str, Any]:
    path = manifest_path(sweep_dir)
    try:
        data = read_json(path)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from e
    if data is None:
        raise ManifestError(
            f"{path} not found: {sweep_dir} is not a sweep directory (make one with `harness sweep SPEC`)"
        )
    if data.get("version") != VERSION:
        raise ManifestError(f"{path}: manifest version {data.get('version')!r}, expected {VERSION}")
    return data


def write_manifest(sweep_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    atomic_write_json(manifest_path(sweep_dir), manifest)


@contextlib.contextmanager
def locked(sweep_dir: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock for read-modify-write of the manifest."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(sweep_dir) / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def updating(sweep_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """``with updating(d) as m: m[...] = ...`` rewrites the manifest on exit."""
    with locked(sweep_dir):
        manifest = read_manifest(sweep_dir)
        yield manifest
        write_manifest(sweep_dir, manifest)


def record_submission(
    manifest: dict[str, Any],
    name: str,
    backend: str,
    job_id: str,
    array_job_id: str | None = None,
    array_index: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Append a submission to a run's history; the last one is the current job."""
    entry = {
        "backend": backend,
        "job_id": job_id,
        "array_job_id": array_job_id,
        "array_index": array_index,
        "submitted_at": time.time(),
        **extra,
    }
    run = manifest["runs"][name]
    run["submissions"].append(entry)
    run.update(
        backend=backend,
        job_id=job_id,
        array_job_id=array_job_id,
        array_index=array_index,
        submitted_at=entry["submitted_at"],
    )
    return entry
