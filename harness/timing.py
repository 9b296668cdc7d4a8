"""Step timing, the step-time breakdown, memory peaks and the run's clocks.

The device is synchronised only at window boundaries (every LOG.EVERY_N_STEPS),
so timing adds no per-step stall. Inside a window each step is cut into parts at
marks the training loop sets (``WindowTimer.lap``):

    data_wait | h2d | forward | backward | optimizer      (then "other" until the next step)

On the CPU a mark is ``time.perf_counter()``. On CUDA it is a CUDA event recorded
on the current stream, read only when the window closes (after its one
synchronisation): a part is then the GPU-timeline time between two marks, so the
data wait is the time the GPU sat idle waiting for the host's batch, not the host's
time inside ``next(loader)`` (which overlaps queued GPU work).

For DDP, :class:`CommTimer` is a communication hook that times every bucket's
all-reduce (launch to completion); see docs/run-format.md for what ``time/comm_s``
and ``time/comm_exposed_s`` measure and their error.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import torch

from harness import distributed as du

#: The parts of a step, in loop order; with "other" (the remainder) they partition the step.
STEP_PARTS = ("data_wait", "h2d", "forward", "backward", "optimizer")
GIB = 1024**3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Marks:
    """Time stamps: host clock floats on the CPU, CUDA events (read later) on a GPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.origin: Any = None

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def restart(self) -> None:
        self.origin = self.mark()

    def seconds(self, mark: Any) -> float:
        """Seconds from the window's origin to ``mark`` (CUDA: after the window's synchronisation)."""
        if self.cuda:
            return self.origin.elapsed_time(mark) / 1e3
        return mark - self.origin


def _union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by possibly overlapping intervals."""
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


class CommTimer:
    """A DDP communication hook that all-reduces each gradient bucket (the same arithmetic as
    DDP's built-in reduction: scale by 1/world, then sum) and stamps its launch and completion.

    Per synchronising backward pass it keeps the buckets' (launch, done) marks and the mark at
    which the pass returned; :meth:`WindowTimer.summary` turns them into the busy time of the
    all-reduces (union of the intervals) and the exposed time (backward end minus the last
    launch: all gradients are ready at the last launch, so what follows is waiting)."""

    def __init__(self, process_group: Any, world_size: int):
        self.process_group = process_group
        self.world_size = world_size
        self.marks: _Marks | None = None
        self._buckets: list[list[Any]] = []
        self.steps: list[tuple[list[list[Any]], Any]] = []

    def attach(self, ddp_model: torch.nn.parallel.DistributedDataParallel) -> None:
        ddp_model.register_comm_hook(None, self._hook)

    # No annotations: DDP checks them against dist.GradBucket, and this module's are strings.
    def _hook(self, state, bucket):  # noqa: ANN001, ANN202
        import torch.distributed as dist

        stamp = [self._mark(), None]
        self._buckets.append(stamp)
        tensor = bucket.buffer()
        tensor.mul_(1.0 / self.world_size)
        future = dist.all_reduce(tensor, group=self.process_group, async_op=True).get_future()

        def done(fut: torch.futures.Future) -> torch.Tensor:
            stamp[1] = self._mark()  # CUDA: on a stream that waits for the all-reduce
            return fut.value()[0]

        return future.then(done)

    def _mark(self) -> Any:
        return self.marks.mark() if self.marks is not None else time.perf_counter()

    def close_backward(self, end_mark: Any) -> None:
        """The backward pass that ended at ``end_mark`` launched the buckets seen since the last call."""
        if self._buckets:
            self.steps.append((self._buckets, end_mark))
            self._buckets = []

    def drain(self, marks: _Marks) -> tuple[float, float]:
        """(all-reduce busy seconds, exposed seconds) summed over the closed passes; clears them."""
        busy = exposed = 0.0
        for buckets, end in self.steps:
            spans = [(marks.seconds(a), marks.seconds(b)) for a, b in buckets if b is not None]
            busy += _union_length(spans)
            last_launch = max(lo for lo, _ in spans) if spans else marks.seconds(end)
            exposed += max(0.0, marks.seconds(end) - last_launch)
        self.steps = []
        return busy, exposed


class MemoryPeaks:
    """Peak memory per window: CUDA's peak counters, or on the CPU the process's resident
    high-water mark (Linux VmHWM, reset by writing 5 to /proc/self/clear_refs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.lifetime: dict[str, float] = {}
        self.rss_resettable = _reset_rss_peak()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.rss_resettable = _reset_rss_peak()

    def read(self) -> dict[str, float]:
        stats: dict[str, float] = {}
        rss = _rss_peak_gib()
        if self.rss_resettable and rss is not None:
            stats["memory/peak_rss_gib"] = rss
        if self.device.type == "cuda":
            stats["memory/peak_allocated_gib"] = torch.cuda.max_memory_allocated(self.device) / GIB
            stats["memory/peak_reserved_gib"] = torch.cuda.max_memory_reserved(self.device) / GIB
        # The run-long peaks (the older keys) are the maxima over the windows.
        if rss is None:  # no /proc: the process's peak since start (ru_maxrss is KiB on Linux)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        lifetime_rss = rss
        for key, value in (
            ("memory/rss_gib", lifetime_rss),
            ("memory/max_allocated_gib", stats.get("memory/peak_allocated_gib")),
            ("memory/max_reserved_gib", stats.get("memory/peak_reserved_gib")),
        ):
            if value is not None:
                self.lifetime[key] = max(self.lifetime.get(key, 0.0), value)
                stats[key] = self.lifetime[key]
        return stats


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_peak_gib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    return None


class WindowTimer:
    """One logging window of optimizer steps: wall time, the step breakdown and memory peaks."""

    def __init__(
        self,
        device: torch.device,
        comm: CommTimer | None = None,
        flops_per_sample: float | None = None,
        peak_tflops: float | None = None,
    ):
        self.device = device
        self.marks = _Marks(device)
        self.comm = comm
        if comm is not None:
            comm.marks = self.marks
        self.memory = MemoryPeaks(device)
        self.flops_per_sample = flops_per_sample
        self.peak_tflops = peak_tflops
        self.reset()

    def reset(self) -> None:
        synchronize(self.device)
        self.memory.reset()
        self.start = time.perf_counter()
        self.marks.restart()
        self.steps = 0
        self.samples = 0
        self.host_data_wait = 0.0
        self._laps: list[tuple[str, Any, Any]] = []
        self._last: Any = None
        if self.comm is not None:
            self.comm.steps, self.comm._buckets = [], []

    # ---- marks, set by the training loop
    def begin_step(self) -> None:
        """The step (or micro-batch) starts: the next lap measures from here."""
        self._last = self.marks.mark()
        self._host = time.perf_counter()

    def lap(self, part: str) -> float:
        """``part`` ended now; returns its host seconds (the data wait's host time feeds the epoch)."""
        now = self.marks.mark()
        self._laps.append((part, self._last, now))
        self._last = now
        host = time.perf_counter()
        seconds, self._host = host - self._host, host
        if part == "data_wait":
            self.host_data_wait += seconds
        if part == "backward" and self.comm is not None:
            self.comm.close_backward(now)
        return seconds

    def end_step(self, samples: int) -> None:
        self.steps += 1
        self.samples += samples

    # ---- the window's figures
    def summary(self, devices: int) -> dict[str, Any]:
        """Close the window (synchronising once) and return its figures."""
        synchronize(self.device)
        wall = max(1e-9, time.perf_counter() - self.start)
        steps = max(1, self.steps)
        parts = dict.fromkeys(STEP_PARTS, 0.0)
        for part, a, b in self._laps:
            parts[part] += self.marks.seconds(b) - self.marks.seconds(a)
        parts["other"] = max(0.0, wall - sum(parts.values()))
        if self.comm is not None:
            parts["comm"], parts["comm_exposed"] = self.comm.drain(self.marks)
        compute = max(1e-9, wall - parts["data_wait"])
        stats: dict[str, Any] = {
            "throughput/img_per_s": self.samples / wall,
            "throughput/img_per_s_per_device": self.samples / wall / max(1, devices),
            "throughput/compute_img_per_s": self.samples / compute,
            "time/step_s": wall / steps,
        }
        for part, seconds in parts.items():
            stats[f"time/{part}_s"] = seconds / steps
            stats[f"time/{part}_share"] = seconds / wall
        if self.flops_per_sample:
            tflops = self.flops_per_sample * self.samples / wall / max(1, devices) / 1e12
            stats["perf/flops_per_sample"] = self.flops_per_sample
            stats["perf/tflops_per_s"] = tflops
            if self.peak_tflops:
                stats["perf/mfu"] = tflops / self.peak_tflops
        stats.update(self.memory.read())
        stats.update(steps=self.steps, wall_s=wall)
        return stats


class Meter:
    """Sum and count of a per-step scalar, kept on the device until read."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, value: torch.Tensor) -> None:
        self.total = self.total + value.detach().double()
        self.count += 1

    def merge(self, other: Meter) -> None:
        """Add ``other``'s steps to this meter (a window's into its epoch's)."""
        self.total = self.total + other.total
        self.count += other.count

    def global_mean(self) -> float:
        if self.count == 0:
            return float("nan")
        t = torch.as_tensor(self.total, dtype=torch.float64).reshape(1)
        return float(du.all_reduce_mean(t).item()) / self.count

    def state(self) -> tuple[float, int]:
        return float(self.total), self.count

    def load(self, state: tuple[float, int]) -> None:
        self.total, self.count = state


class RunClock:
    """Training wall time: the run's total (across resumes) and the current epoch's, with the
    epoch's host-side data wait. Time between :meth:`pause` and :meth:`restart` (validation)
    is not training time."""

    STATE_KEYS = ("elapsed", "epoch_time", "epoch_data_wait")

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self.elapsed = self.epoch_time = self.epoch_data_wait = 0.0
        self._last = now()

    def restart(self) -> None:
        """Count from now (start of training, end of validation)."""
        self._last = self._now()

    def tick(self) -> None:
        """Add the time since the last tick to the totals."""
        now = self._now()
        self.elapsed += now - self._last
        self.epoch_time += now - self._last
        self._last = now

    pause = tick  # before validation: what follows is not counted until restart()

    def add_data_wait(self, seconds: float) -> None:
        self.epoch_data_wait += seconds

    def new_epoch(self) -> None:
        self.epoch_time = self.epoch_data_wait = 0.0

    def state(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in self.STATE_KEYS}

    def load(self, state: dict[str, Any]) -> None:
        for key in self.STATE_KEYS:
            setattr(self, key, float(state[key]))
