"""The measurements of one (model, input size, runtime): a row of the models table."""

from __future__ import annotations

import copy
import io
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.benchmodel.catalogue import ModelEntry, prepare_for_benchmark
from harness.benchmodel.runtimes import CHECKED, RuntimeUnavailable, make_runner, output_error


@dataclass
class BenchSettings:
    runtimes: tuple[str, ...]
    batches: tuple[int, ...]  # throughput batches; the largest also times the training step
    warmup: int
    iters: int
    device: torch.device
    threads: int
    train_step: bool = True


def count_flops(model: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one forward pass (``FlopCounterMode``: a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    return float(counter.get_total_flops())


def fp16_weights_mb(model: nn.Module) -> tuple[float, float]:
    """Sizes (MiB) of the state_dict saved with torch.save in fp32 and in fp16."""
    sizes = []
    for dtype in (None, torch.float16):
        state = {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
            for k, v in model.state_dict().items()
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        sizes.append(buffer.getbuffer().nbytes / 2**20)
    return sizes[0], sizes[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Any, x: torch.Tensor, device: torch.device, warmup: int, iters: int) -> np.ndarray:
    """Seconds of each of ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn(x)
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def _peak_memory_gib(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
    # Linux reports KiB; the process high-water mark, so it never goes down between rows.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process_max_rss"


def bench_entry(
    entry: ModelEntry, size: tuple[int, int], settings: BenchSettings, workdir: Path | None = None
) -> list[dict[str, Any]]:
    """One row per runtime for ``entry`` at ``size`` (height, width)."""
    torch.manual_seed(0)
    base = prepare_for_benchmark(entry.build())
    height, width = size
    generator = torch.Generator().manual_seed(0)
    check_input = torch.rand(2, entry.in_channels, height, width, generator=generator)
    example = check_input[:1]
    params = sum(p.numel() for p in base.parameters())
    flops = count_flops(base, example)
    fp32_mb, fp16_mb = fp16_weights_mb(base)
    with torch.no_grad():
        reference = base(check_input)
        reference = (reference[-1] if isinstance(reference, (list, tuple)) else reference).numpy()
    common = {
        "model": entry.name,
        "family": entry.family,
        "input": f"{height}x{width}",
        "in_channels": entry.in_channels,
        "device": settings.device.type,
        "params": params,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "weights_fp32_mb": fp32_mb,
        "weights_fp16_mb": fp16_mb,
        "warmup": settings.warmup,
        "iters": settings.iters,
        "threads": settings.threads,
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        work = Path(workdir or tmp) / f"{entry.name}-{height}x{width}"
        for runtime in settings.runtimes:
            row = {**common, "runtime": runtime}
            try:
                row.update(_bench_runtime(runtime, base, example, check_input, reference, settings, work))
            except RuntimeUnavailable as e:
                row.update({"status": "unavailable", "error": str(e)})
            except Exception as e:  # one runtime failing must not lose the others' rows
                message = str(e).splitlines()[0][:200] if str(e) else ""
                row.update({"status": "failed", "error": f"{type(e).__name__}: {message}"})
            rows.append(row)
    return rows


def _bench_runtime(
    runtime: str,
    base: nn.Module,
    example: torch.Tensor,
    check_input: torch.Tensor,
    reference: np.ndarray,
    settings: BenchSettings,
    work: Path,
) -> dict[str, Any]:
    device = settings.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = copy.deepcopy(base)
    t0 = time.perf_counter()
    runner = make_runner(runtime, model, example, device, work, settings.threads)
    error, allowed = output_error(reference, runner.infer(check_input))
    out: dict[str, Any] = {
        "precision": runner.precision,
        "check_max_abs_err": error,
        "check_allowed_err": allowed,
        "check_passed": error <= allowed,
        **runner.info,
    }
    if runtime in CHECKED and error > allowed:
        out.update(
            {
                "status": "check_failed",
                "error": f"output differs from PyTorch by {error:.3g} > {allowed:.3g}; not timed",
            }
        )
        return out
    out["setup_s"] = time.perf_counter() - t0  # export / compile / first call
    latency = time_calls(runner.infer, example, device, settings.warmup, settings.iters)
    out["latency_ms_median"] = float(np.median(latency) * 1e3)
    out["latency_ms_p90"] = float(np.percentile(latency, 90) * 1e3)
    throughput = {}
    for batch in settings.batches:
        x = torch.rand(batch, *example.shape[1:])
        seconds = time_calls(runner.infer, x, device, max(1, settings.warmup // 2), settings.iters)
        throughput[batch] = batch / float(np.median(seconds))
    out["throughput_by_batch"] = throughput
    out["throughput_batch"] = max(settings.batches)
    out["throughput_img_per_s"] = throughput[max(settings.batches)]
    if settings.train_step and runner.train_step is not None:
        batch = max(settings.batches)
        x = torch.rand(batch, *example.shape[1:])
        seconds = time_calls(runner.train_step, x, device, max(1, settings.warmup // 2), settings.iters)
        out["train_batch"] = batch
        out["train_img_per_s"] = batch / float(np.median(seconds))
    out["peak_memory_gib"], out["memory_kind"] = _peak_memory_gib(device)
    out["status"] = "ok"
    return out
