"""The run directory: atomic JSON files, status.json and run.json (docs/run-format.md)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.runformat import CHECKPOINT_DIR, LAST_CHECKPOINT, STATES, STATUS_JSON

if TYPE_CHECKING:
    from yacs.config import CfgNode as CN


def run_dir_for(cfg: CN) -> Path:
    return Path(cfg.OUTPUT_DIR) / cfg.RUN_NAME


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, midway: Callable[[], None] | None = None
) -> None:
    """Temp file in the same directory, fsync, rename: readers never see a torn file.
    ``midway`` (fault injection) runs once half of ``data`` is on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if midway is not None:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                midway()
                data = data[len(data) // 2 :]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def read_status(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / STATUS_JSON, default={}) or {}


_STATUS_LOCK = threading.Lock()  # the heartbeat thread and the training loop both merge into status.json


def write_status(run_dir: str | os.PathLike, heartbeat: bool = True, **fields: Any) -> dict:
    """Merge ``fields`` into status.json atomically; ``heartbeat`` stamps the run's
    progress time (the launcher's own notes pass False)."""
    if "state" in fields and fields["state"] not in STATES:
        raise ValueError(f"unknown run state {fields['state']!r}; one of {STATES}")
    with _STATUS_LOCK:
        status = read_status(run_dir)
        now = time.time()
        status.update(fields)
        if heartbeat:
            status.setdefault("started_at", now)
            status["heartbeat"] = now
        status["updated_at"] = now
        atomic_write_json(Path(run_dir) / STATUS_JSON, status)
    return status


def git_commit() -> str:
    """The commit of the code being run ("" outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def environment_info() -> dict[str, str]:
    import torch

    return {
        "host": socket.gethostname(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": (torch.version.cuda or "") if torch.cuda.is_available() else "",
        "executable": sys.executable,
    }


def slurm_job_id(env: Mapping[str, str] | None = None) -> str:
    environ: Mapping[str, str] = os.environ if env is None else env
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID", "")


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """The run's resume checkpoint (``checkpoints/last.pt``)."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def resolve_resume(resume: str, run_dir: str | os.PathLike) -> Path | None:
    """``auto``: last.pt if it exists; ``never``: None; else a path that must exist."""
    if resume == "never":
        return None
    if resume == "auto":
        last = checkpoint_path(run_dir)
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint file")
    return path
