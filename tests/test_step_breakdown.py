"""The step-time breakdown, per-window memory, FLOPs per sample and the clocks (harness.timing,
harness.flops), measured on real training runs and on the pieces they are built from."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import load_config
from harness.flops import compute_precision, peak_tflops
from harness.spawn import launch
from harness.timing import STEP_PARTS, Meter, RunClock, WindowTimer, _union_length
from tests.spine_helpers import FER_SYNTH, fast_opts, records

SHARE_PARTS = (*STEP_PARTS, "other")


def _check_breakdown(rec: dict, every_part_ran: bool = True) -> None:
    """The laps and "other" partition the step: their shares sum to 1, their seconds to step_s."""
    shares = [rec[f"time/{p}_share"] for p in SHARE_PARTS]
    assert all(s >= 0 for s in shares), rec
    assert sum(shares) == pytest.approx(1.0, abs=1e-6), rec
    seconds = sum(rec[f"time/{p}_s"] for p in SHARE_PARTS)
    assert seconds == pytest.approx(rec["time/step_s"], rel=1e-6), rec
    if every_part_ran:
        assert rec["time/forward_s"] > 0 and rec["time/backward_s"] > 0 and rec["time/optimizer_s"] > 0


def test_single_run_logs_breakdown_memory_and_counted_flops(fer_csv_root: str, tmp_path: Path) -> None:
    cfg = load_config(
        FER_SYNTH,
        fast_opts(fer_csv_root, tmp_path, RUN_NAME="one", TRAIN__EPOCHS=1, LOG__WANDB__MODE="disabled"),
    )
    assert launch(cfg) == "completed"
    run_dir = tmp_path / "one"
    train = records(run_dir, "train")
    assert len(train) == 2
    for rec in train:
        _check_breakdown(rec)
        assert "time/comm_s" not in rec and "perf/mfu" not in rec  # no DDP; no GPU peak on a CPU
        assert 0 < rec["memory/peak_rss_gib"] <= rec["memory/rss_gib"]
        achieved = rec["perf/flops_per_sample"] * rec["throughput/img_per_s"] / 1e12
        assert rec["perf/tflops_per_s"] == pytest.approx(achieved, rel=1e-9)

    # FLOPs per sample: FlopCounterMode's own count of one forward + backward of the same model.
    from torch.utils.data import default_collate
    from torch.utils.flop_counter import FlopCounterMode

    from harness.tasks import get_task

    task = get_task(cfg.TASK)(cfg)
    train_set, _ = task.build_datasets()
    batch = task.prepare_batch(default_collate([train_set[(0, i)] for i in range(4)]), torch.device("cpu"))
    model = task.build_model().train()
    counter = FlopCounterMode(display=False)
    with counter:
        task.loss(task.forward(model, batch), batch).backward()
    expected = counter.get_total_flops() / 4
    assert expected > 0
    assert train[0]["perf/flops_per_sample"] == expected
    run = json.loads((run_dir / "run.json").read_text())
    assert run["flops_per_sample"] == expected and run["peak_tflops_per_device"] is None


def test_timer_parts_follow_the_laps_and_window_memory_resets() -> None:
    timer = WindowTimer(torch.device("cpu"), flops_per_sample=1e9)
    timer.begin_step()
    time.sleep(0.02)
    host_wait = timer.lap("data_wait")
    blob = np.ones(64 * 2**20 // 8)  # 64 MiB resident inside this window only
    blob[::4096] = 2.0
    time.sleep(0.03)
    timer.lap("forward")
    del blob
    timer.end_step(8)
    first = timer.summary(devices=2)
    assert host_wait >= 0.02
    assert first["time/data_wait_s"] == pytest.approx(host_wait, abs=1e-3)
    assert first["time/forward_s"] >= 0.03
    assert first["throughput/img_per_s"] == pytest.approx(8 / first["wall_s"])
    assert first["perf/tflops_per_s"] == pytest.approx(1e9 * 8 / first["wall_s"] / 2 / 1e12)
    _check_breakdown(first, every_part_ran=False)
    timer.reset()
    timer.begin_step()
    timer.lap("forward")
    timer.end_step(8)
    second = timer.summary(devices=1)
    if "memory/peak_rss_gib" in first:  # Linux: the resident peak restarts each window
        assert first["memory/peak_rss_gib"] - second["memory/peak_rss_gib"] > 0.04
        assert second["memory/rss_gib"] == first["memory/rss_gib"]  # the run-long peak stays


def test_union_of_bucket_intervals() -> None:
    assert _union_length([]) == 0.0
    assert _union_length([(0.0, 1.0), (0.5, 2.0), (3.0, 4.0)]) == pytest.approx(3.0)
    assert _union_length([(1.0, 5.0), (2.0, 3.0)]) == pytest.approx(4.0)


def test_run_clock_excludes_paused_time_and_round_trips() -> None:
    now = [0.0]
    clock = RunClock(now=lambda: now[0])
    now[0] = 2.0
    clock.tick()
    clock.add_data_wait(0.5)
    clock.pause()
    now[0] = 10.0  # validation
    clock.restart()
    now[0] = 11.0
    clock.tick()
    assert (clock.elapsed, clock.epoch_time, clock.epoch_data_wait) == (3.0, 3.0, 0.5)
    clock.new_epoch()
    assert (clock.elapsed, clock.epoch_time, clock.epoch_data_wait) == (3.0, 0.0, 0.0)
    other = RunClock()
    other.load({"elapsed": 3.0, "epoch_time": 1.0, "epoch_data_wait": 0.25, "unrelated": 1})
    assert other.state() == {"elapsed": 3.0, "epoch_time": 1.0, "epoch_data_wait": 0.25}


def test_meter_merge() -> None:
    window, epoch = Meter(), Meter()
    for v in (1.0, 3.0):
        window.add(torch.tensor(v))
    epoch.add(torch.tensor(5.0))
    epoch.merge(window)
    assert epoch.count == 3 and epoch.global_mean() == pytest.approx(3.0)


@pytest.mark.parametrize(
    "name, precision, peak",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H200", "tf32", 494.7),
        ("NVIDIA A100-SXM4-80GB", "fp32", 19.5),
        ("Tesla V100-SXM2-32GB", "fp16", 125.0),
        ("Tesla V100-PCIE-16GB", "fp16", 112.0),
        ("Tesla V100-SXM2-32GB", "bf16", None),
        ("NVIDIA L40S", "bf16", 362.0),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "bf16", None),
        ("Some Future GPU", "bf16", None),
    ],
)
def test_peak_table_matches_device_names(name: str, precision: str, peak: float | None) -> None:
    assert peak_tflops(name, precision) == peak


def test_compute_precision_on_cpu() -> None:
    assert compute_precision("bf16", torch.device("cpu")) == "bf16"
    assert compute_precision("none", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("transposed", [False, True])
def test_grouped_convolution_backward_counts_twice_the_forward(groups: int, transposed: bool) -> None:
    """grad_input and grad_weight each cost one forward; torch's own formula counts the weight
    gradient of a grouped convolution ``groups`` times (the reason for harness.flops' correction)."""
    from torch.utils.flop_counter import FlopCounterMode

    from harness.flops import flop_counter

    conv = (torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d)(16, 32, 3, groups=groups)
    x = torch.randn(2, 16, 10, 10, requires_grad=True)
    forward = FlopCounterMode(display=False)
    with forward:
        conv(x)
    corrected, plain = flop_counter(), FlopCounterMode(display=False)
    with corrected:
        conv(x).sum().backward()
    with plain:
        conv(x).sum().backward()
    assert corrected.get_total_flops() == 3 * forward.get_total_flops()
    assert plain.get_total_flops() == (1 + 1 + groups) * forward.get_total_flops()
