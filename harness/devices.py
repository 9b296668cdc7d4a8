"""Whether this machine has a GPU driver, answered without importing torch."""

from __future__ import annotations

import glob
import os

# Device nodes of the NVIDIA and ROCm drivers: without them torch sees no GPU.
GPU_DEVICE_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd")


def gpu_driver_present() -> bool:
    """Whether a GPU driver's device node exists. False means torch would find no GPU,
    known without the torch import (seconds of CPU per process)."""
    return any(glob.glob(pattern) for pattern in GPU_DEVICE_NODES)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_cuda_devices() -> int:
    """How many CUDA devices torch sees; 0 without a GPU driver, answered without torch."""
    if not gpu_driver_present():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
