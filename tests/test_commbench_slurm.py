"""The shaped-link proof at one rate, on the real 2-node local Slurm cluster.

The node link is shaped to 300 Mbit/s (tc tbf in each node's namespace); commbench
runs across the two nodes through the launcher and must recover the rate within
15%, and the model's step time for a 2-node x 1-process DDP run of EfficientNet-B0
(compute from 1-node runs + commbench's alpha-beta) must be within 20% of the
measured one. `make commbench-study` runs three rates and writes docs/commbench.md.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.commbench_study import CLUSTER_SCRIPT, StudyOptions, run_study, shaped_link
from tests.slurm_cluster_fixture import LocalSlurmCluster

pytestmark = pytest.mark.slurm


def _link(cluster: LocalSlurmCluster) -> str:
    out = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "status", "--state-dir", str(cluster.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return next(line for line in out.splitlines() if line.startswith("node link:"))


def test_shape_is_removed_even_when_the_block_fails(slurm_cluster_2nodes: LocalSlurmCluster) -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with shaped_link("50mbit", slurm_cluster_2nodes.state_dir):
            assert _link(slurm_cluster_2nodes) == "node link: 50Mbit"
            raise RuntimeError("inside")
    assert _link(slurm_cluster_2nodes) == "node link: unshaped"


@pytest.mark.serial  # its step times are compared with the model: no other test may load the CPU
def test_commbench_recovers_the_shaped_link_and_the_model_predicts_ddp(
    slurm_cluster_2nodes: LocalSlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in slurm_cluster_2nodes.env.items():
        monkeypatch.setenv(key, value)  # restored afterwards (the study exports them)
    opts = StudyOptions(
        rates=["300mbit"],
        work=tmp_path / "study",
        state_dir=slurm_cluster_2nodes.state_dir,
        steps=10,
        warmup_steps=4,
        min_bytes="256K",
        max_bytes="16M",
        ops="all_reduce",
        timeout_s=420,
    )
    [point] = run_study(opts)
    assert _link(slurm_cluster_2nodes) == "node link: unshaped"
    summary = (
        f"busbw {point.measured_bytes_per_s} B/s vs {point.configured_bytes_per_s}; step predicted "
        f"{point.predicted_step_s:.3f} s (compute {point.compute_s:.3f} + comm {point.comm_s:.3f}) vs "
        f"measured {point.measured_step_s:.3f} s"
    )
    assert point.bandwidth_error is not None and point.bandwidth_error <= 0.15, summary
    assert point.step_error <= 0.20, summary
    assert point.comm_s > 0.1 * point.compute_s, summary  # the link is a visible part of the step
