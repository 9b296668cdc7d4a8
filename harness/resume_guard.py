"""Resume safety: a relaunch may continue a run only with the config that run started with.

``check_resume`` runs before anything in the run directory is written. It compares
the new config with the one the run was trained with (stored in the checkpoint;
``config.yaml`` for checkpoints written before that) over the keys that define
the run's trajectory: everything except the keys listed in ``VOLATILE`` (paths,
logging, fault injection, loader tuning, checkpoint cadence, timeouts). Any
difference refuses the resume with one line naming the keys; ``--resume force``
resumes anyway and records the keys in ``run.json`` (``resumed_with_changes``).
A completed run relaunched with the same config is left untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from harness.config import flatten_config
from harness.errors import UserError
from harness.runformat import flatten

FORCE = "force"

# Keys (exact, or a prefix ending in ".") that may change between launches of one
# run: they do not change what is trained, only where, how fast, or what is logged.
VOLATILE = (
    "OUTPUT_DIR",
    "RUN_NAME",
    "SWEEP",
    "LOG.",
    "FAULT.",
    "CHECKPOINT.",
    "EVAL.",
    "TEST.",
    "JOB.",
    "DATA.NUM_WORKERS",
    "DATA.PIN_MEMORY",
    "DATA.PREFETCH_FACTOR",
    "DATA.PERSISTENT_WORKERS",
    "DIST.BACKEND",
    "DIST.TIMEOUT_S",
    "DIST.BUCKET_CAP_MB",
    "TRAIN.COMPILE",
    "TRAIN.NAN_POLICY",
)


class ResumeError(UserError):
    """The run directory holds a run that this config must not continue."""


@dataclass
class ResumeDecision:
    checkpoint: Path | None  # what to resume from (None: start fresh)
    already_completed: bool = False
    changed: list[str] = field(default_factory=list)  # keys resumed with changes (--resume force)


def is_volatile(key: str) -> bool:
    return any(key == v or (v.endswith(".") and key.startswith(v)) for v in VOLATILE)


def flat_config(cfg: CN) -> dict[str, Any]:
    """The config as ``{"TRAIN.LR": 0.1, ...}`` with plain values (stored in checkpoints)."""
    return flatten_config(cfg)


def identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Sorted keys, outside ``VOLATILE``, whose values differ (or exist on one side only)."""
    keys = set(old) | set(new)
    return sorted(k for k in keys if not is_volatile(k) and _norm(old.get(k)) != _norm(new.get(k)))


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _previous_config(run_dir: Path, checkpoint: Path | None) -> tuple[dict[str, Any] | None, str]:
    """The config the run was trained with, and where it came from."""
    if checkpoint is not None:
        from harness.checkpoint import read_checkpoint_config

        stored = read_checkpoint_config(checkpoint)
        if stored is not None:
            return stored, str(checkpoint)
    path = run_dir / "config.yaml"
    if path.is_file():
        try:
            return flatten(yaml.safe_load(path.read_text()) or {}), str(path)
        except yaml.YAMLError as e:
            raise ResumeError(
                f"{path}: unreadable ({str(e).splitlines()[0]}); move the run directory "
                "away or pass --resume never"
            ) from e
    return None, ""


def _describe(keys: list[str], old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> str:
    shown = [f"{k} {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in keys[:limit]]
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "; ".join(shown) + more


def check_resume(cfg: CN, run_dir: str | os.PathLike, resume: str = "auto") -> ResumeDecision:
    """Decide what a launch of ``cfg`` into ``run_dir`` does, writing nothing.

    Raises ResumeError (one line) when the run directory holds a run trained with
    different identity keys and ``resume`` is not ``force``."""
    from harness.rundir import read_status, resolve_resume

    run_dir = Path(run_dir)
    checkpoint = resolve_resume("auto" if resume == FORCE else resume, run_dir)
    if resume not in ("auto", FORCE) or not run_dir.is_dir():
        # never: start over on purpose; an explicit path: the user chose the weights.
        return ResumeDecision(checkpoint)
    state = read_status(run_dir).get("state")
    old, source = _previous_config(run_dir, checkpoint)
    if old is None or (checkpoint is None and state != "completed"):
        return ResumeDecision(checkpoint)  # nothing trained that a new config could corrupt
    new = flat_config(cfg)
    changed = identity_diff(old, new)
    if not changed:
        return ResumeDecision(checkpoint, already_completed=state == "completed")
    if resume == FORCE:
        return ResumeDecision(checkpoint, changed=changed)
    what = "a completed run" if state == "completed" else "a run"
    raise ResumeError(
        f"{run_dir} holds {what} trained with a different config ({source}): {_describe(changed, old, new)}. "
        "Use another RUN_NAME or OUTPUT_DIR, or --resume force to continue it with these changes"
    )
