"""Atomic checkpoints: ``checkpoints/last.pt`` holds everything needed to resume
at the exact step (model, optimizer, scaler, scheduler state, step in epoch, RNG)."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import UserError
from harness.rundir import atomic_write_bytes


class CheckpointError(UserError):
    """A checkpoint that cannot be read, or does not fit the model; the message is one line."""


def save_checkpoint(
    path: str | os.PathLike, state: dict[str, Any], midway: Callable[[], None] | None = None
) -> None:
    """Write ``state`` atomically: a process killed mid-write leaves the previous file
    intact and only a ``.last.pt.*.tmp`` beside it, which nothing ever loads (and the
    next save removes). ``midway`` runs after half the bytes are written (fault tests)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a process killed while writing; only rank 0 writes
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue(), midway=midway)


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # weights_only=False: the checkpoint holds RNG states and plain Python values.
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {_first_line(e)}); "
            "delete it or pass --resume never"
        ) from e


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The flat config stored in a checkpoint (None for checkpoints that predate it).
    Memory-mapped: the tensors are not read."""
    config = load_checkpoint(path, mmap=True).get("config")
    return dict(config) if isinstance(config, dict) else None


def check_model_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike
) -> None:
    """Raise a one-line CheckpointError when ``state`` cannot load into ``model``: it
    counts the missing, unexpected and mis-shaped tensors (never a multi-KB key dump)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [
            f"{len(v)} {what} (e.g. {v[0]})"
            for v, what in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "with another shape"))
            if v
        ]
        raise CheckpointError(
            f"checkpoint {source} does not fit the model: {', '.join(parts)} tensors; "
            "it was written for another MODEL config"
        )


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
