"""Small helpers for tests that run real trainings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

FER_SYNTH = "configs/fer/effnet_b0_synthetic.yaml"
REPO = Path(__file__).resolve().parents[1]


def fast_opts(root: str, out: Path, **overrides: object) -> list[str]:
    """Overrides for a quick FER run: tiny model, no progress bar, few steps, no W&B.

    W&B failures never fail a run (by design), so a W&B run that a test does not read back
    proves nothing; tests that check W&B output ask for ``LOG__WANDB__MODE="offline"``."""
    opts = {
        "DATASET.ROOT": root,
        "OUTPUT_DIR": str(out),
        "MODEL.NAME": "tiny_cnn",
        "LOG.PROGRESS": False,
        "TRAIN.EPOCHS": 2,
        "TRAIN.MAX_STEPS_PER_EPOCH": 4,
        "TRAIN.BATCH_SIZE_PER_GPU": 16,
        "LOG.EVERY_N_STEPS": 2,
        "LOG.WARMUP_STEPS": 1,
        "TRAIN.OPTIMIZER": "sgd",
        "TRAIN.LR": 0.05,
        "TRAIN.WARMUP_EPOCHS": 0.0,
        "LOG.WANDB.MODE": "disabled",
    }
    opts.update({k.replace("__", "."): v for k, v in overrides.items()})
    return [str(x) for kv in opts.items() for x in kv]


def harness_cli(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def records(run_dir: Path, kind: str | None = None) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    return [r for r in recs if kind is None or r["kind"] == kind]


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    return state["model"]
