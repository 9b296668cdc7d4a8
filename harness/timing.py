"""Step timing and memory figures.

The device is synchronised only at window boundaries (every LOG.EVERY_N_STEPS),
so timing adds no per-step stall: inside a window the data wait is the host time
spent in ``next(loader)``; the window's wall time over its samples gives
throughput.
"""
from __future__ import annotations

import resource
import time

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class WindowTimer:
    """Accumulates one logging window of optimizer steps."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        synchronize(self.device)
        self.start = time.perf_counter()
        self.data_wait = 0.0
        self.steps = 0
        self.samples = 0

    def add_data_wait(self, seconds: float) -> None:
        self.data_wait += seconds

    def add_step(self, samples: int) -> None:
        self.steps += 1
        self.samples += samples

    def summary(self, devices: int) -> dict[str, float]:
        """Close the window (synchronising once) and return its figures."""
        synchronize(self.device)
        wall = max(1e-9, time.perf_counter() - self.start)
        steps = max(1, self.steps)
        compute = max(1e-9, wall - self.data_wait)
        return {
            "throughput/img_per_s": self.samples / wall,
            "throughput/img_per_s_per_device": self.samples / wall / max(1, devices),
            "throughput/compute_img_per_s": self.samples / compute,
            "time/step_s": wall / steps,
            "time/data_wait_s": self.data_wait / steps,
            "time/data_wait_share": self.data_wait / wall,
            "steps": self.steps,
            "wall_s": wall,
        }


def memory_stats(device: torch.device) -> dict[str, float]:
    gib = 1024 ** 3
    # ru_maxrss is KiB on Linux: peak resident set of this process.
    stats = {"memory/rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}
    if device.type == "cuda":
        stats["memory/max_allocated_gib"] = torch.cuda.max_memory_allocated(device) / gib
        stats["memory/max_reserved_gib"] = torch.cuda.max_memory_reserved(device) / gib
    return stats
