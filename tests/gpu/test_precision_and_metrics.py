"""Real ``harness train`` runs on CUDA: fp16 (GradScaler) and bf16 autocast train without
NaN and land near fp32; the CUDA-event step times agree with the host clock; memory
metrics and MFU are sane; SyncBN under ddp runs when 2 GPUs are visible."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.gpu.helpers import harness_run, skip_without_cuda, train_records

skip_without_cuda()
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def fer_csv_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Enough synthetic FER for 60 steps of 32 (the suite's shared set has 22)."""
    from efficientnet.synth import write_synthetic_fer

    return write_synthetic_fer(str(tmp_path_factory.mktemp("fer_gpu")), n=2600, fmt="csv", seed=0)


@pytest.fixture(scope="module")
def fp32_run(fer_csv_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harness_run(fer_csv_root, tmp_path_factory.mktemp("gpu_runs"), "fp32")


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_mixed_precision_trains_and_matches_fp32_loosely(
    amp: str, fp32_run: Path, fer_csv_root: str, tmp_path: Path
) -> None:
    run = harness_run(fer_csv_root, tmp_path, amp, "TRAIN.AMP", amp)
    losses = [r["train/loss"] for r in train_records(run)]
    reference = [r["train/loss"] for r in train_records(fp32_run)]
    assert all(math.isfinite(v) for v in losses), losses
    assert len(losses) == len(reference)
    # Same data, same init: the curves may drift apart with rounding, but not far.
    assert losses[-1] == pytest.approx(reference[-1], rel=0.15, abs=0.05)
    assert losses[-1] < losses[0]


def test_cuda_step_times_memory_and_mfu_are_sane(fp32_run: Path) -> None:
    records = train_records(fp32_run)
    steady = [r for r in records if r["steady"]]
    assert len(steady) >= 3
    for before, after in zip(records, records[1:]):
        if not after["steady"]:
            continue
        steps = after["step"] - before["step"]
        host = after["time"] - before["time"]  # the run's host clock between two window ends
        events = after["time/step_s"] * steps
        assert events == pytest.approx(host, rel=0.05), (after["step"], events, host)
        parts = sum(
            after.get(f"time/{p}_s", 0.0) for p in ("data_wait", "h2d", "forward", "backward", "optimizer")
        )
        assert 0 < parts <= after["time/step_s"] * 1.01
    total_gib = torch.cuda.get_device_properties(0).total_memory / 1024**3
    for r in steady:
        allocated, reserved = r["memory/peak_allocated_gib"], r["memory/peak_reserved_gib"]
        assert 0 < allocated <= reserved <= total_gib, (allocated, reserved, total_gib)
        assert r["memory/peak_rss_gib"] > 0  # the host process
        assert 0 < r["perf/mfu"] < 1, r.get("perf/mfu")
        assert r["perf/tflops_per_s"] > 0


def test_syncbn_under_ddp_trains(fer_csv_root: str, tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("SyncBN under ddp needs 2 CUDA devices")
    run = harness_run(
        fer_csv_root, tmp_path, "syncbn", "DIST.STRATEGY", "ddp", "DIST.GPUS", "2", "DIST.SYNC_BN", "True"
    )
    assert all(math.isfinite(r["train/loss"]) for r in train_records(run))
