"""harness commbench (real gloo processes) and the per-topology communication model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.commbench_data import (
    SCHEMA,
    bus_factor,
    comm_time_s,
    ddp_buckets,
    fit_alpha_beta,
    fit_for_topology,
    load_commbench,
)
from analysis.commmodel import GRAD_BYTES_PER_PARAM, fit_comm_model, predict_ddp_step, ring_step_time
from analysis.load import load_run_dirs
from analysis.pipeline import Options, analyze
from analysis.report_text import headline, model_section
from harness.commbench import message_sizes, parse_bytes
from tests.analysis_fixtures import write_sweep

REPO = Path(__file__).resolve().parents[1]
PARAMS = 4_000_000
GRAD_BYTES = PARAMS * GRAD_BYTES_PER_PARAM


def test_bus_factors_follow_nccl_tests():
    assert bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    assert bus_factor("all_gather", 4) == pytest.approx(3 / 4)
    assert bus_factor("reduce_scatter", 2) == pytest.approx(1 / 2)
    assert bus_factor("broadcast", 16) == 1.0
    assert bus_factor("all_reduce", 1) == 0.0
    with pytest.raises(ValueError, match="unknown collective"):
        bus_factor("all_to_all", 2)


def test_sizes_parse_and_double_up_to_the_maximum():
    assert parse_bytes("4K") == 4096 and parse_bytes("256M") == 256 * 2**20 and parse_bytes("1000") == 1000
    assert message_sizes(4096, 65536) == [4096, 8192, 16384, 32768, 65536]
    assert message_sizes(4096, 20000) == [4096, 8192, 16384, 20000]
    with pytest.raises(Exception, match="not a byte size"):
        parse_bytes("lots")


def test_alpha_beta_fit_recovers_latency_and_bandwidth():
    sizes = np.array([2.0**k for k in range(12, 25)])
    alpha, beta = 250e-6, 37.5e6  # 300 Mbit/s
    times = (alpha + bus_factor("all_reduce", 4) * sizes / beta) * np.tile([1.01, 0.99], 7)[:13]
    fit = fit_alpha_beta(sizes, times, bus_factor("all_reduce", 4))
    assert fit["bandwidth_identified"] and fit["n_points"] == 13 and fit["dropped_bytes"] == []
    assert fit["beta_bytes_per_s"] == pytest.approx(beta, rel=0.02)
    assert fit["alpha_s"] == pytest.approx(alpha, rel=0.1)
    assert fit["rel_rms_error"] == pytest.approx(0.01, abs=0.005)
    expected = alpha + bus_factor("all_reduce", 4) * 16e6 / beta
    assert comm_time_s(fit, "all_reduce", 16e6, 4) == pytest.approx(expected, rel=0.02)


def test_alpha_beta_fit_keeps_the_bandwidth_despite_a_burst_outlier():
    sizes = np.array([2.0**k for k in range(16, 25)])
    beta = 37.5e6
    times = 1e-4 + sizes / beta
    times[0] /= 4  # a token bucket's burst: a small message through at wire speed
    fit = fit_alpha_beta(sizes, times, bus_factor("all_reduce", 2))
    assert fit["beta_bytes_per_s"] == pytest.approx(beta, rel=1e-3)
    assert fit["dropped_bytes"] == [65536] and fit["n_points"] == len(sizes) - 1


def test_alpha_beta_fit_says_not_identified_when_the_data_cannot_tell():
    flat = fit_alpha_beta([4096, 8192, 16384], [1e-3, 1e-3, 1e-3], 1.0)  # no cost per byte
    one_size = fit_alpha_beta([4096, 4096], [1e-3, 1.1e-3], 1.0)
    world_one = fit_alpha_beta([4096, 8192], [1e-5, 2e-5], bus_factor("all_reduce", 1))
    for fit in (flat, one_size, world_one):
        assert not fit["bandwidth_identified"] and fit["beta_bytes_per_s"] is None
        assert np.isnan(comm_time_s(fit, "all_reduce", 1e6, 2))


def test_ddp_prediction_adds_only_the_exposed_share():
    fit = {"alpha_s": 1e-3, "beta_bytes_per_s": 1e8}
    assert ddp_buckets(GRAD_BYTES) == 1 and ddp_buckets(60e6) == 3
    full = predict_ddp_step(0.5, GRAD_BYTES, fit, 2)
    assert full["comm_s"] == pytest.approx(1e-3 + GRAD_BYTES / 1e8)
    assert full["predicted_step_s"] == pytest.approx(0.5 + full["comm_s"]) and not full["overlap_measured"]
    half = predict_ddp_step(0.5, GRAD_BYTES, fit, 2, exposed_fraction=0.5)
    assert half["predicted_step_s"] == pytest.approx(0.5 + full["comm_s"] / 2) and half["overlap_measured"]


def test_flat_step_times_report_bandwidth_not_identified_never_infinite():
    gpus = np.array([1, 2, 4])
    fit = fit_comm_model(gpus, [0.3, 0.3, 0.3], GRAD_BYTES)
    assert np.isnan(fit.bandwidth_bytes_per_s) and not np.isinf(fit.bandwidth_bytes_per_s)


@pytest.mark.slow  # three Python processes importing torch: ~15 s idle, more on a busy machine
def test_commbench_with_two_gloo_processes_writes_the_result(tmp_path: Path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "commbench",
            "--gpus",
            "2",
            "--min-bytes",
            "4K",
            "--max-bytes",
            "64K",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
            "--label",
            "loopback",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "commbench.json").read_text())
    assert data["schema"] == SCHEMA and data["backend"] == "gloo" and data["launcher"] == "spawn"
    assert (data["world_size"], data["nodes"], data["gpus_per_node"]) == (2, 1, 2)
    ops = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
    assert {r["op"] for r in data["results"]} == set(ops) and set(data["fits"]) == set(ops)
    for row in data["results"]:
        assert row["bytes"] in (4096, 8192, 16384, 32768, 65536) and row["time_s"] > 0
        assert row["algbw_gb_per_s"] == pytest.approx(row["bytes"] / row["time_s"] / 1e9)
        assert row["busbw_gb_per_s"] == pytest.approx(row["algbw_gb_per_s"] * bus_factor(row["op"], 2))
    assert "all_reduce" in result.stdout and "wrote" in result.stdout
    [loaded] = load_commbench([tmp_path])  # found inside a directory, as `harness analyze` does
    assert loaded["label"] == "loopback"


def _topology_sweep(root: Path) -> Path:
    """1-node DDP at 1, 2 and 4 GPUs on a fast link, and one slow 2-node point."""
    fast = dict(t_compute_s=0.25, grad_bytes=GRAD_BYTES, bandwidth_bytes_per_s=2.0e9, latency_s=3e-3)
    runs = [
        dict(gpus=g, throughput=32 * g / float(ring_step_time([g], **fast)[0]), num_params=PARAMS)
        for g in (1, 2, 4)
    ]
    slow_step = 0.25 + 5e-3 + GRAD_BYTES / 37.5e6  # a 300 Mbit/s link between the nodes
    runs.append(
        dict(gpus=2, nodes=2, throughput=64 / slow_step, num_params=PARAMS, name="fer-ddp-g2-n2-b32-s0")
    )
    return write_sweep(root, "topology", runs, scaling="weak")


def _commbench_file(directory: Path, nodes: int, gpus_per_node: int, alpha: float, beta: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fit = {
        "alpha_s": alpha,
        "beta_bytes_per_s": beta,
        "bandwidth_identified": True,
        "rel_rms_error": 0.01,
        "n_points": 9,
        "bytes_factor": 1.0,
    }
    data = {
        "schema": SCHEMA,
        "created_at": 1.0,
        "label": "tbf 300mbit",
        "backend": "gloo",
        "device_type": "cpu",
        "world_size": nodes * gpus_per_node,
        "nodes": nodes,
        "gpus_per_node": gpus_per_node,
        "hosts": [f"node{i + 1}" for i in range(nodes)],
        "results": [],
        "fits": {"all_reduce": fit},
    }
    path = directory / "commbench.json"
    path.write_text(json.dumps(data))
    return path


def test_two_node_point_is_never_merged_into_the_one_node_fit(tmp_path: Path):
    analysis = analyze(load_run_dirs([_topology_sweep(tmp_path)]), Options(predict_gpus=[8]))
    fit = analysis.model_fit
    one_node = fit[(fit["nodes"] == 1) & (fit["kind"] == "measured")]
    assert one_node["bandwidth_bytes_per_s"].iloc[0] == pytest.approx(2.0e9, rel=1e-3)
    two_node = fit[fit["nodes"] == 2]
    assert list(two_node["kind"]) == ["underdetermined"] and "harness commbench" in two_node["note"].iloc[0]
    assert not np.isinf(fit["bandwidth_bytes_per_s"].astype(float)).any()
    assert any("2 GPUs on 2 nodes" in line for line in headline(analysis))
    text = model_section(analysis, {}, ["png"])
    assert "(32/GPU), 2 nodes: fit underdetermined" in text and "| nodes | GPUs/node |" in text
    assert "| 1 | 1–4 | fit |" in text  # the 1-node fit spans 1 to 4 GPUs per node


def test_commbench_result_predicts_its_topology(tmp_path: Path):
    sweep = _topology_sweep(tmp_path)
    bench = _commbench_file(tmp_path / "bench", nodes=2, gpus_per_node=1, alpha=5e-3, beta=37.5e6)
    analysis = analyze(load_run_dirs([sweep]), Options(commbench=[str(bench)]))
    assert fit_for_topology(analysis.commbench, 2, 1)["beta_bytes_per_s"] == 37.5e6
    assert fit_for_topology(analysis.commbench, 1, 2) is None  # another topology: not used
    fit = analysis.model_fit
    row = fit[(fit["nodes"] == 2)].iloc[0]
    assert row["source"] == "commbench" and row["kind"] == "measured"
    # compute = the 1-GPU step (0.25 s); comm = one bucket: alpha + G/beta; no overlap measured.
    assert row["predicted_step_s"] == pytest.approx(0.25 + 5e-3 + GRAD_BYTES / 37.5e6, rel=1e-3)
    assert row["predicted_step_s"] == pytest.approx(row["measured_step_s"], rel=1e-3)
    assert "no overlap measured" in row["note"]
    assert fit[fit["nodes"] == 1]["source"].eq("fit").all()
    text = model_section(analysis, {}, ["png"])
    assert "Measured interconnect" in text and "0.3" in text  # 37.5e6 B/s = 0.3 Gbit/s


@pytest.mark.slow  # a whole report with plots: ~20 s on a busy machine
def test_analyze_command_reads_commbench_results(tmp_path: Path):
    sweep = _topology_sweep(tmp_path)
    _commbench_file(sweep / "commbench" / "n2", nodes=2, gpus_per_node=1, alpha=5e-3, beta=37.5e6)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "analyze",
            str(sweep),
            "--out",
            str(tmp_path / "r"),
            "--format",
            "png",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Measured interconnect" in report and "commbench" in report


@pytest.mark.slow  # a local sweep run: scheduler + two gloo processes
def test_commbench_sweep_run_on_the_local_backend(tmp_path: Path):
    import io

    import yaml

    from harness.launcher.sweep_ops import launch_sweep, wait_for_sweep

    spec = yaml.safe_load((REPO / "configs" / "sweeps" / "commbench.yaml").read_text())
    spec.update(base=str(REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml"), grid={"gpus": [2]})
    spec["overrides"]["JOB"]["ARGS"] = [
        "--min-bytes",
        "4K",
        "--max-bytes",
        "16K",
        "--iters",
        "1",
        "--ops",
        "all_reduce",
    ]
    path = tmp_path / "commbench.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep_dir = launch_sweep(str(path), backend="local", root=str(tmp_path), out=io.StringIO())
    rows = wait_for_sweep(sweep_dir, poll_s=1, timeout_s=240)
    assert [(r.name, r.state) for r in rows] == [("ddp-g2-b32-s0", "completed")]
    [result] = load_commbench([sweep_dir])
    assert (result["world_size"], result["nodes"], result["gpus_per_node"]) == (2, 1, 2)
    assert [r["bytes"] for r in result["results"]] == [4096, 8192, 16384]


def test_measured_overlap_shrinks_the_predicted_communication(tmp_path: Path):
    from analysis.commmodel import model_fit_table

    sweep = _topology_sweep(tmp_path)
    bench = _commbench_file(tmp_path / "bench", nodes=2, gpus_per_node=1, alpha=5e-3, beta=37.5e6)
    analysis = analyze(load_run_dirs([sweep]), Options(commbench=[str(bench)]))
    scaling = analysis.scaling.copy()
    two_nodes = scaling["nodes"] == 2
    scaling.loc[two_nodes, "comm_share"], scaling.loc[two_nodes, "comm_exposed_share"] = 0.6, 0.3
    row = model_fit_table(scaling, commbench=analysis.commbench).query("nodes == 2").iloc[0]
    comm = 5e-3 + GRAD_BYTES / 37.5e6
    assert row["exposed_fraction"] == pytest.approx(0.5)
    assert row["predicted_step_s"] == pytest.approx(0.25 + comm / 2, rel=1e-3)
    assert "measured exposed share 0.50" in row["note"]
