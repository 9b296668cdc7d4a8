"""`make demo` must show learning: its runs end clearly above the majority-class share."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_config
from harness.launcher.spec import expand_sweep, load_spec
from tests.spine_helpers import records

DEMO_SPEC = "configs/sweeps/fer_demo.yaml"
# Share of the largest class (Happy) in the synthetic validation split.
MAJORITY_SHARE = 0.218


@pytest.mark.slow
def test_the_demo_largest_global_batch_run_learns(tmp_path: Path) -> None:
    """The demo's hardest point to learn at (DDP, 2 processes, 32 each: the largest global
    batch this test can afford), at the demo's settings, two epochs shorter."""
    from efficientnet.synth import write_synthetic_fer
    from harness.spawn import launch

    root = write_synthetic_fer(str(tmp_path / "fer"), n=1200, fmt="csv", seed=0)
    plans = {plan.name: plan for plan in expand_sweep(load_spec(DEMO_SPEC), tmp_path / "sweep")}
    assert len(plans) == 8
    plan = plans["ddp-g2-b32-s0"]
    epochs = int(plan.config["TRAIN.EPOCHS"]) - 2
    cfg = load_config(
        plan.base,
        [
            *plan.opts,
            "DATASET.ROOT",
            root,
            "OUTPUT_DIR",
            str(tmp_path / "runs"),
            "RUN_NAME",
            "demo",
            "TRAIN.EPOCHS",
            str(epochs),
            "LOG.WANDB.MODE",
            "disabled",
        ],
    )
    assert launch(cfg) == "completed"
    final = records(tmp_path / "runs" / "demo", "val")[-1]["val/accuracy"]
    assert final >= 0.4 > MAJORITY_SHARE + 0.1
