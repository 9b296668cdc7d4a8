"""Sweeps on the real local Slurm cluster (slurm/local-cluster.sh), through submitit.

The cluster fixtures skip these tests with a reason where Slurm cannot be
installed (and fail in CI). Runs use the synthetic FER set and tiny settings.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.launcher.profiles import Shape, load_profile
from harness.launcher.slurm_backend import ArrayChunk, render_sbatch
from harness.launcher.sweep_ops import launch_sweep, resubmit, wait_for_sweep

REPO = Path(__file__).resolve().parents[1]
SYNTH_SWEEP = REPO / "configs" / "sweeps" / "fer_synthetic.yaml"
WAIT_S = 300


# ------------------------------------------------------------------ helpers
def write_spec(
    directory: Path, name: str, data_root: str, grid: dict[str, Any] | None = None, **overrides: Any
) -> Path:
    """A spec on top of the shipped synthetic FER sweep, reading ``data_root``."""
    spec: dict[str, Any] = {
        "_BASE_": str(SYNTH_SWEEP),
        "name": name,
        "overrides": {"DATASET.ROOT": data_root, "LOG.WANDB.MODE": "disabled", **overrides},
    }
    if grid is not None:
        spec["grid"] = grid
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    return json.loads((sweep_dir / "manifest.json").read_text())


def read_status(sweep_dir: Path, run: str) -> dict[str, Any]:
    path = sweep_dir / "runs" / run / "status.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def val_records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, filter(None, lines)) if r["kind"] == "val"]


def sacct_states(job_ids: list[str], timeout_s: float = 60) -> dict[str, str]:
    """sacct's state of each job, once none is still running (or at the timeout)."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    deadline = time.time() + timeout_s
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "--jobs", ",".join(bases)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        states = dict(line.split("|")[:2] for line in out.splitlines() if line)
        found = {j: states.get(j, "") for j in job_ids}
        if time.time() > deadline or not any(
            s in ("", "PENDING", "RUNNING", "COMPLETING") for s in found.values()
        ):
            return found
        time.sleep(1)


def harness(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """The harness command in this process: (exit code, stdout)."""
    from harness.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def _client_profile(cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> str:
    """Point this process's Slurm clients at ``cluster`` and write a profile for it."""
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    data = yaml.safe_load((REPO / "slurm" / "clusters" / "local.yaml").read_text())
    data.update(name=name, partition=cluster.partition)
    profile = tmp_path / f"{name}.yaml"
    profile.write_text(yaml.safe_dump(data))
    return str(profile)


@pytest.fixture()
def cluster(slurm_cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The cluster's client environment in this process, and a profile for it."""
    return _client_profile(slurm_cluster, monkeypatch, tmp_path, "test-local")


# -------------------------------------------------------------------- tests
def test_sweep_completes_one_array_per_shape(
    cluster: str, tmp_path: Path, fer_csv_root: str, capsys: pytest.CaptureFixture
) -> None:
    spec = write_spec(tmp_path, "slurm_sweep", fer_csv_root)
    root = tmp_path / "sweeps"
    sweep_dir = launch_sweep(str(spec), backend="slurm", cluster=cluster, root=str(root), out=io.StringIO())
    rows = wait_for_sweep(sweep_dir, poll_s=1, timeout_s=WAIT_S)
    names = ("ddp-g1-b16-s0", "ddp-g1-b32-s0", "ddp-g2-b16-s0", "ddp-g2-b32-s0")
    assert {r.name: r.state for r in rows} == dict.fromkeys(names, "completed")
    manifest = read_manifest(sweep_dir)
    assert manifest["sbatch_calls"] == 2 and len(manifest["arrays"]) == 2
    shapes = {
        a["array_job_id"]: (a["shape"]["tasks_per_node"], sorted(a["runs"])) for a in manifest["arrays"]
    }
    assert sorted(shapes.values()) == [
        (1, ["ddp-g1-b16-s0", "ddp-g1-b32-s0"]),
        (2, ["ddp-g2-b16-s0", "ddp-g2-b32-s0"]),
    ]
    job_ids = sorted(run["job_id"] for run in manifest["runs"].values())
    assert all(re.fullmatch(r"\d+_[01]", j) for j in job_ids)
    for name, run in manifest["runs"].items():  # each run links its job's task logs
        logs = sweep_dir / "runs" / name / "slurm-logs"
        assert logs.resolve() == sweep_dir / "slurm" / run["job_id"]
        assert (logs / f"{run['job_id']}_0_log.out").is_file()

    # The scheduler's own accounting knows every job, and they completed (a job
    # outlives its run's "completed" by the moments it takes to exit).
    assert sacct_states(job_ids) == dict.fromkeys(job_ids, "COMPLETED")

    # What was submitted is what the dry run prints.
    profile = load_profile(cluster)
    for array in manifest["arrays"]:
        submitted = (
            sweep_dir / "slurm" / array["array_job_id"] / f"{array['array_job_id']}_submission.sh"
        ).read_text()
        runs = [manifest["runs"][n] for n in array["runs"]]
        assert submitted == render_sbatch(
            sweep_dir, ArrayChunk(Shape(**array["shape"]), runs), profile, "slurm_sweep"
        )

    # The CLI tells the same; a second `harness sweep` submits nothing.
    code, out = harness(capsys, "status", str(sweep_dir), "--json")
    assert code == 0 and json.loads(out)["summary"] == {"total": 4, "completed": 4}
    out = io.StringIO()
    launch_sweep(str(spec), backend="slurm", cluster=cluster, root=str(root), out=out)
    assert "0 to submit, 4 skipped" in out.getvalue()
    assert read_manifest(sweep_dir)["sbatch_calls"] == 2


def test_failed_run_shows_traceback_and_resubmit_reruns_only_it(
    cluster: str, tmp_path: Path, fer_csv_root: str, capsys: pytest.CaptureFixture
) -> None:
    spec = write_spec(
        tmp_path,
        "crash",
        fer_csv_root,
        grid={"gpus": [1], "batch_size_per_gpu": [16], "FAULT.CRASH_AT_STEP": [-1, 2]},
    )
    sweep_dir = launch_sweep(
        str(spec), backend="slurm", cluster=cluster, root=str(tmp_path), out=io.StringIO()
    )
    rows = {r.name: r for r in wait_for_sweep(sweep_dir, poll_s=1, timeout_s=WAIT_S)}
    ok, bad = "ddp-g1-b16-crash_at_step=-1-s0", "ddp-g1-b16-crash_at_step=2-s0"
    assert rows[ok].state == "completed" and rows[bad].state == "failed"
    status = read_status(sweep_dir, bad)
    assert status["error"] == "RuntimeError: FAULT.CRASH_AT_STEP: injected crash at step 2"
    assert "Traceback (most recent call last)" in status["traceback"]
    code, out = harness(capsys, "status", str(sweep_dir))
    assert code == 0 and re.search(rf"{re.escape(bad)}\s+failed\s+\S", out), out

    chosen = resubmit(sweep_dir, only="failed", overrides=["FAULT.CRASH_AT_STEP=-1"], out=io.StringIO())
    assert chosen == [bad]
    rows = {r.name: r for r in wait_for_sweep(sweep_dir, poll_s=1, timeout_s=WAIT_S)}
    assert rows[bad].state == "completed" and rows[ok].state == "completed"
    runs = read_manifest(sweep_dir)["runs"]
    assert len(runs[ok]["submissions"]) == 1 and len(runs[bad]["submissions"]) == 2
    assert runs[bad]["opts"][-2:] == ["FAULT.CRASH_AT_STEP", "-1"]


def _wandb_ids(run_dir: Path) -> list[str]:
    return [p.name.rsplit("-", 1)[-1] for p in sorted((run_dir / "wandb").glob("offline-run-*"))]


def test_preemption_signal_requeues_and_resumes_mid_epoch(
    cluster: str, tmp_path: Path, fer_csv_root: str
) -> None:
    # One epoch of 40 steps: the signal, sent at step 2, lands well inside it.
    settings = {
        "TRAIN.EPOCHS": 1,
        "TRAIN.MAX_STEPS_PER_EPOCH": 40,
        "LOG.WANDB.MODE": "offline",
        "LOG.EVERY_N_STEPS": 1,
    }
    grid = {"gpus": [1], "batch_size_per_gpu": [8]}
    reference = write_spec(tmp_path, "reference", fer_csv_root, grid=grid, **settings)
    interrupted = write_spec(tmp_path, "interrupted", fer_csv_root, grid=grid, **settings)
    root = tmp_path / "sweeps"
    ref_dir, int_dir = (
        launch_sweep(str(spec), backend="slurm", cluster=cluster, root=str(root), out=io.StringIO())
        for spec in (reference, interrupted)
    )
    run = "ddp-g1-b8-s0"
    job_id = read_manifest(int_dir)["runs"][run]["job_id"]
    deadline = time.time() + WAIT_S
    while read_status(int_dir, run).get("state") != "running" or read_status(int_dir, run).get("step", 0) < 2:
        assert time.time() < deadline, f"run never reached step 2: {read_status(int_dir, run)}"
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)

    for sweep_dir in (ref_dir, int_dir):
        rows = wait_for_sweep(sweep_dir, poll_s=1, timeout_s=WAIT_S)
        assert [r.state for r in rows] == ["completed"]
    status = read_status(int_dir, run)
    assert status["requeues"] == 1 and status["step"] == 40
    log = (int_dir / "runs" / run / "train.log").read_text()
    resumed = re.search(r"resumed from \S+ at epoch 0, step (\d+)", log)
    assert resumed and 0 < int(resumed.group(1)) < 40, f"not resumed mid-epoch:\n{log[-2000:]}"

    reference_val = val_records(ref_dir / "runs" / run)
    interrupted_val = val_records(int_dir / "runs" / run)
    metrics = [k for k in reference_val[-1] if k.startswith("val/")]
    assert metrics and [{k: r[k] for k in metrics} for r in interrupted_val] == [
        {k: r[k] for k in metrics} for r in reference_val
    ]

    ids = _wandb_ids(int_dir / "runs" / run)
    assert len(ids) == 2 and len(set(ids)) == 1, ids  # two attempts, one W&B run


def test_two_node_ddp_run_completes(
    slurm_cluster_2nodes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fer_csv_root: str
) -> None:
    profile = _client_profile(slurm_cluster_2nodes, monkeypatch, tmp_path, "test-2nodes")
    spec = write_spec(
        tmp_path, "two_nodes", fer_csv_root, grid={"gpus": [2], "nodes": [2], "batch_size_per_gpu": [16]}
    )
    sweep_dir = launch_sweep(
        str(spec), backend="slurm", cluster=str(profile), root=str(tmp_path), out=io.StringIO()
    )
    rows = wait_for_sweep(sweep_dir, poll_s=1, timeout_s=WAIT_S)
    assert [(r.name, r.state) for r in rows] == [("ddp-g2-n2-b16-s0", "completed")]
    run_json = json.loads((sweep_dir / "runs" / "ddp-g2-n2-b16-s0" / "run.json").read_text())
    assert run_json["world_size"] == 2 and len(run_json["hosts"]) == 2
    assert read_manifest(sweep_dir)["runs"]["ddp-g2-n2-b16-s0"]["shape"]["nodes"] == 2
