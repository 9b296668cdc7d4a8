"""Checks made before a run directory is created: a run this machine cannot start
fails with one line and leaves nothing behind (the deeper checks in
``harness.parallel``/``harness.distributed`` stay as guards for other entry points)."""

from __future__ import annotations

import os
from pathlib import Path

from yacs.config import CfgNode as CN

from harness.devices import visible_cuda_devices
from harness.errors import MachineError, UserError


def check_machine(cfg: CN, cuda_devices: int | None = None) -> None:
    """Raise MachineError when this machine cannot run ``cfg``'s strategy and devices.

    ``cuda_devices``: the visible CUDA devices (default: ask torch, if a GPU driver exists)."""
    if cuda_devices is None:
        cuda_devices = visible_cuda_devices()
    d, strategy = cfg.DIST, cfg.DIST.STRATEGY
    if strategy == "dp" and d.GPUS > 1 and d.GPUS > cuda_devices:
        raise MachineError(
            f"DIST.STRATEGY dp with DIST.GPUS {d.GPUS} needs {d.GPUS} CUDA devices; this "
            f"machine has {cuda_devices}. Use DIST.GPUS 1, or ddp (gloo processes on the CPU)"
        )
    if strategy == "ddp" and cuda_devices and d.NODES == 1 and d.GPUS > cuda_devices:
        raise MachineError(f"DIST.GPUS {d.GPUS} for ddp but only {cuda_devices} CUDA devices are visible")
    if d.BACKEND == "nccl" and not cuda_devices:
        raise MachineError("DIST.BACKEND nccl needs CUDA; this machine has none (use auto or gloo)")
    if strategy == "ddp" and d.SYNC_BN and d.GPUS > 1 and not cuda_devices:
        raise MachineError(
            "DIST.SYNC_BN needs CUDA: PyTorch's SyncBatchNorm has no CPU kernel. "
            "Set DIST.SYNC_BN False for gloo runs on the CPU"
        )
    if cfg.TRAIN.AMP == "fp16" and not cuda_devices:
        raise MachineError("TRAIN.AMP fp16 needs CUDA (it uses a GradScaler); use TRAIN.AMP bf16 on the CPU")


def check_output_dir(cfg: CN) -> None:
    """OUTPUT_DIR must be creatable and writable (a read-only mount fails here, not mid-run)."""
    target = Path(os.path.expanduser(cfg.OUTPUT_DIR)).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"OUTPUT_DIR {target}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"OUTPUT_DIR {target} is not writable ({existing} is read-only or not yours); "
            "set OUTPUT_DIR or --output-dir to a writable directory"
        )


def check_data_root(cfg: CN) -> None:
    """A DATASET.ROOT that does not exist is named before anything is written."""
    root = str(cfg.get("DATASET", {}).get("ROOT", "") or "")
    if root and not os.path.exists(os.path.expanduser(root)):
        raise UserError(f"DATASET.ROOT {root} does not exist")


def preflight(cfg: CN) -> None:
    """Every check above; called by ``harness train`` before the run directory exists."""
    check_machine(cfg)
    check_output_dir(cfg)
    check_data_root(cfg)
