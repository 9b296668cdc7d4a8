"""Dry run: the plan table and golden sbatch scripts for a DP shape, a single-node
DDP shape and a two-node DDP shape, rendered exactly as submitit would write them.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 pytest tests/test_launcher_dryrun.py`` and review the diff."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import yaml

from harness.launcher.profiles import profile_from_dict
from harness.launcher.slurm_backend import group_arrays, render_sbatch
from harness.launcher.spec import expand_sweep, load_spec
from harness.launcher.sweep_ops import launch_sweep

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
PROFILE = {
    "name": "golden-gpu",
    "partition": "gpu",
    "account": "proj",
    "qos": "normal",
    "gpus_per_node": 4,
    "cpus_per_task": 6,
    "mem_per_gpu_gb": 32,
    "timeout_min": 120,
    "signal_delay_s": 120,
    "max_num_timeout": 5,
    "max_array_size": 1000,
    "array_parallelism": 8,
    "python": "python",
    "setup": ["module load cuda/12.4", "source /opt/venv/bin/activate"],
}


@pytest.fixture()
def spec_and_profile(tmp_path: Path):
    profile_path = tmp_path / "golden-gpu.yaml"
    profile_path.write_text(yaml.safe_dump(PROFILE))
    spec_path = tmp_path / "golden.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "golden",
                "base": str(REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml"),
                "grid": {"strategy": ["dp", "ddp"], "gpus": [4, 8]},
                "repeats": 2,
                "exclude": [{"strategy": "dp", "gpus": 8}],
            },
            sort_keys=False,
        )
    )
    return spec_path, profile_path


def normalise(text: str, sweep_dir: Path) -> str:
    return text.replace(str(sweep_dir), "<SWEEP_DIR>")


def test_golden_sbatch_scripts(tmp_path: Path, spec_and_profile) -> None:
    spec_path, profile_path = spec_and_profile
    profile = profile_from_dict(yaml.safe_load(profile_path.read_text()), str(profile_path))
    sweep_dir = (tmp_path / "root" / "golden").resolve()
    plans = expand_sweep(load_spec(spec_path), sweep_dir, profile)
    chunks = group_arrays([p.to_dict() for p in plans], profile)
    assert [len(c.runs) for c in chunks] == [2, 2, 2]
    names = {"dp_1node": chunks[0], "ddp_1node": chunks[1], "ddp_2node": chunks[2]}
    assert [r["name"] for r in names["ddp_2node"].runs] == ["ddp-g8-b32-s0", "ddp-g8-b32-s1"]
    for label, chunk in names.items():
        text = normalise(render_sbatch(sweep_dir, chunk, profile, "golden"), sweep_dir)
        golden = GOLDEN / f"{label}.sbatch"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{label}: sbatch differs from {golden}"
    ddp2 = (GOLDEN / "ddp_2node.sbatch").read_text()
    assert "#SBATCH --nodes=2" in ddp2 and "#SBATCH --ntasks-per-node=4" in ddp2
    assert "#SBATCH --gpus-per-node=4" in ddp2 and "#SBATCH --mem=128GB" in ddp2
    dp = (GOLDEN / "dp_1node.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in dp and "#SBATCH --gpus-per-node=4" in dp
    assert "#SBATCH --cpus-per-task=24" in dp  # 6 per GPU, as ddp gets


def test_dry_run_prints_plan_and_scripts_and_submits_nothing(tmp_path: Path, spec_and_profile) -> None:
    spec_path, profile_path = spec_and_profile
    out = io.StringIO()
    root = tmp_path / "root"
    launch_sweep(
        str(spec_path), backend="slurm", cluster=str(profile_path), root=str(root), dry_run=True, out=out
    )
    text = out.getvalue()
    assert not root.exists()  # nothing written, nothing submitted
    assert "3 sbatch call(s) on cluster profile 'golden-gpu'" in text
    assert text.count("#!/bin/bash") == 3
    assert "ddp-g8-b32-s1  submit  ddp       8     2      32     256     2x4 task, 4 gpu/node" in text
    sweep_dir = (root / "golden").resolve()
    for label in ("dp_1node", "ddp_1node", "ddp_2node"):
        assert (GOLDEN / f"{label}.sbatch").read_text().strip() in normalise(text, sweep_dir)


def test_max_array_size_splits_arrays(tmp_path: Path, spec_and_profile) -> None:
    spec_path, _ = spec_and_profile
    profile = profile_from_dict({**PROFILE, "max_array_size": 1}, "inline")
    plans = expand_sweep(load_spec(spec_path), tmp_path / "x", profile)
    chunks = group_arrays([p.to_dict() for p in plans], profile)
    assert [len(c.runs) for c in chunks] == [1] * 6
    assert "--array" not in render_sbatch(tmp_path, chunks[0], profile, "golden")
