"""Efficiency arithmetic on run directories with known throughputs."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.load import load_run_dirs
from analysis.pipeline import Options, analyze
from tests.analysis_fixtures import write_run, write_sweep


def scaling_of(*paths, **options) -> pd.DataFrame:
    return analyze(load_run_dirs(paths), Options(**options)).scaling


def row(table: pd.DataFrame, **match) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for key, value in match.items():
        mask &= table[key] == value
    rows = table[mask]
    assert len(rows) == 1, f"{len(rows)} rows match {match}:\n{table}"
    return rows.iloc[0]


@pytest.fixture(scope="module")
def weak_sweep(tmp_path_factory):
    """DP and DDP, 1/2/4 GPUs, 32/GPU, two seeds each, one failed run."""
    root = tmp_path_factory.mktemp("weak")
    x = {
        ("dp", 1): (100, 110),
        ("dp", 2): (150, 170),
        ("dp", 4): (260, 300),
        ("ddp", 1): (100, 120),
        ("ddp", 2): (200, 220),
        ("ddp", 4): (400, 440),
    }
    runs = [
        dict(strategy=s, gpus=g, seed=seed, throughput=x[(s, g)][seed], jitter=0.05)
        for (s, g) in x
        for seed in (0, 1)
    ]
    runs.append(
        dict(strategy="ddp", gpus=8, seed=0, throughput=900, state="failed", error="NCCL timeout\nmore")
    )
    return write_sweep(root, "weak", runs, scaling="weak")


def test_weak_scaling_dp_and_ddp_against_their_own_baselines(weak_sweep):
    table = scaling_of(weak_sweep)
    assert set(table["scaling"]) == {"weak"}
    dp4 = row(table, strategy="dp", gpus=4)
    assert dp4["n_runs"] == 2
    assert dp4["throughput_median"] == pytest.approx(280)
    assert dp4["speedup"] == pytest.approx(280 / 105)
    assert dp4["efficiency"] == pytest.approx(280 / 105 / 4)
    ddp2 = row(table, strategy="ddp", gpus=2)
    assert ddp2["efficiency"] == pytest.approx(210 / 110 / 2)
    # DDP/DP at every GPU count, on both rows.
    assert row(table, strategy="ddp", gpus=4)["ddp_over_dp"] == pytest.approx(420 / 280)
    assert dp4["ddp_over_dp"] == pytest.approx(420 / 280)
    assert row(table, strategy="dp", gpus=1)["ddp_over_dp"] == pytest.approx(110 / 105)
    assert "multi-node" not in ";".join(table["flags"])


def test_repeats_give_median_and_iqr_over_runs(weak_sweep):
    ddp1 = row(scaling_of(weak_sweep), strategy="ddp", gpus=1)
    # Run medians 100 and 120: quartiles by linear interpolation.
    assert ddp1["throughput_median"] == pytest.approx(110)
    assert ddp1["throughput_q1"] == pytest.approx(105)
    assert ddp1["throughput_q3"] == pytest.approx(115)
    assert ddp1["iqr_over"] == "runs"


def test_single_run_iqr_is_over_steady_records_and_warmup_is_excluded(tmp_path):
    # 12 windows of 5 steps, the first 3 in warmup (at a third of the speed): 9 steady records.
    write_run(
        tmp_path,
        strategy="ddp",
        gpus=1,
        throughput=100,
        jitter=0.1,
        warmup_steps=15,
        epochs=1,
        steps_per_epoch=60,
        log_every=5,
    )
    table = scaling_of(tmp_path)
    only = row(table, gpus=1)
    assert only["throughput_median"] == pytest.approx(100)
    assert only["throughput_q1"] == pytest.approx(90)
    assert only["throughput_q3"] == pytest.approx(110)
    assert only["iqr_over"] == "steps"
    assert only["flags"] == ""


def test_no_steady_records_fall_back_and_are_flagged(tmp_path):
    write_run(tmp_path, throughput=100, mark_steady=False, warmup_steps=0)
    only = scaling_of(tmp_path).iloc[0]
    assert only["throughput_median"] == pytest.approx(100)
    assert "no-steady-state" in only["flags"]


def test_failed_run_is_excluded_and_listed(weak_sweep):
    analysis = analyze(load_run_dirs([weak_sweep]))
    assert 8 not in set(analysis.scaling["gpus"])
    excluded = analysis.runset.excluded
    assert list(excluded["run_name"]) == ["fer-ddp-g8-b32-s0"]
    assert excluded.iloc[0]["error"] == "NCCL timeout"
    assert "state failed" in excluded.iloc[0]["exclude_reason"]


def test_strong_scaling_uses_same_global_batch_at_one_gpu(tmp_path):
    runs = [
        dict(strategy="ddp", gpus=1, batch_size_per_gpu=128, throughput=200),
        dict(strategy="ddp", gpus=2, batch_size_per_gpu=64, throughput=360),
        dict(strategy="ddp", gpus=4, batch_size_per_gpu=32, throughput=560),
    ]
    table = scaling_of(write_sweep(tmp_path, "strong", runs, scaling="strong"))
    assert set(table["scaling"]) == {"strong"}
    four = row(table, gpus=4)
    t1, t4 = 128 / 200, 128 / 560  # seconds per step at global batch 128
    assert four["efficiency"] == pytest.approx(t1 / (4 * t4))
    assert four["speedup"] == pytest.approx(2.8)
    assert four["global_batch"] == 128


def test_missing_baseline_is_reported_not_invented(tmp_path):
    runs = [
        dict(strategy="single", gpus=1, throughput=100),  # not the DP baseline
        dict(strategy="dp", gpus=2, throughput=150),
        dict(strategy="dp", gpus=4, throughput=250),
    ]
    table = scaling_of(write_sweep(tmp_path, "nobase", runs, scaling="weak"))
    dp4 = row(table, strategy="dp", gpus=4)
    assert math.isnan(dp4["efficiency"]) and math.isnan(dp4["speedup"])
    assert "missing-baseline" in dp4["flags"]
    assert dp4["baseline"] == "not measured"
    assert dp4["diagnosis"].startswith("unknown")


def test_superlinear_point_is_flagged(tmp_path):
    runs = [dict(gpus=1, throughput=100), dict(gpus=2, throughput=230), dict(gpus=4, throughput=380)]
    table = scaling_of(write_sweep(tmp_path, "super", runs, scaling="weak"))
    assert row(table, gpus=2)["efficiency"] == pytest.approx(1.15)
    assert "superlinear-suspect" in row(table, gpus=2)["flags"]
    assert row(table, gpus=2)["diagnosis"] == "suspect (E > 1)"
    assert "superlinear-suspect" not in row(table, gpus=4)["flags"]


def test_mode_is_inferred_without_manifest(tmp_path):
    # Per-GPU batch 32 at 1/2/4 GPUs (weak) plus global batch 128 at 1 GPU (strong baseline of g4).
    for g, x in ((1, 100), (2, 190), (4, 360)):
        write_run(tmp_path, gpus=g, batch_size_per_gpu=32, throughput=x)
    write_run(tmp_path, gpus=1, batch_size_per_gpu=128, throughput=150)
    table = scaling_of(tmp_path)
    assert row(table, gpus=4, scaling="weak")["efficiency"] == pytest.approx(0.9)
    assert row(table, gpus=4, scaling="strong")["efficiency"] == pytest.approx(360 / (4 * 150))
    assert row(table, gpus=2, scaling="weak")["efficiency"] == pytest.approx(0.95)
    assert (table[table["gpus"] == 2]["scaling"] == "weak").all()  # global 64 has no 1-GPU run


def test_multi_node_only_when_ranks_report_several_hosts(tmp_path):
    write_run(tmp_path, "base", gpus=1, throughput=100)
    write_run(tmp_path, "two-hosts", gpus=4, nodes=2, throughput=300, hosts=["node1", "node2"])
    write_run(tmp_path, "one-host", gpus=4, nodes=2, throughput=320, seed=1, hosts=["localhost"])
    analysis = analyze(load_run_dirs([tmp_path]))
    assert set(analysis.runset.runs["n_hosts"]) == {1, 2}
    table = analysis.scaling
    # Same config apart from the seed, but the runs are not pooled: one spanned two hosts.
    assert row(table, gpus=4, n_hosts=2)["flags"] == "multi-node"
    single = row(table, gpus=4, n_hosts=1)
    assert single["flags"] == "single-host (2 nodes on one host)"
    assert single["throughput_median"] == pytest.approx(320)


def test_diagnosis_data_bound_and_communication_bound(tmp_path):
    runs = [
        dict(strategy="ddp", gpus=1, throughput=100, data_wait_share=0.05),
        dict(strategy="ddp", gpus=4, throughput=200, data_wait_share=0.05),  # compute-only E 0.5 too
        dict(strategy="dp", gpus=1, throughput=100, data_wait_share=0.05),
        dict(strategy="dp", gpus=4, throughput=300, data_wait_share=0.35),
    ]
    table = scaling_of(write_sweep(tmp_path, "diag", runs, scaling="weak"), data_bound_threshold=0.2)
    assert row(table, strategy="ddp", gpus=4)["diagnosis"] == "communication-bound"
    assert row(table, strategy="dp", gpus=4)["diagnosis"] == "data-bound"
    assert row(table, strategy="ddp", gpus=1)["diagnosis"] == "baseline"
    # Compute-only throughput scales (0.95) while the total (0.6) does not: the loader is the limit.
    write_run(tmp_path / "c", gpus=1, throughput=100, compute_throughput=100, data_wait_share=0.0)
    write_run(tmp_path / "c", gpus=4, throughput=240, compute_throughput=380, data_wait_share=0.1)
    assert row(scaling_of(tmp_path / "c"), gpus=4)["diagnosis"] == "data-bound"


def test_scaling_columns_follow_the_contract(weak_sweep):
    table = scaling_of(weak_sweep)
    assert list(table.columns[:15]) == [
        "workload",
        "strategy",
        "scaling",
        "nodes",
        "gpus",
        "batch_size_per_gpu",
        "global_batch",
        "n_runs",
        "throughput_median",
        "throughput_q1",
        "throughput_q3",
        "speedup",
        "efficiency",
        "ddp_over_dp",
        "flags",
    ]
