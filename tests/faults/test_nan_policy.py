"""issue 10 item 20: TRAIN.NAN_POLICY stop|skip, with the non-finite step found on the
device and read only at the window boundary or a checkpoint (harness.nan_guard)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness.config import load_config
from harness.nan_guard import NonFiniteError
from harness.spawn import launch
from tests.faults.helpers import status
from tests.spine_helpers import FER_SYNTH, fast_opts, model_state, records

# Plain SGD (no momentum, no decay, constant LR): a step with a zero gradient changes nothing.
PLAIN = dict(
    TRAIN__EPOCHS=1,
    TRAIN__MOMENTUM=0.0,
    TRAIN__WD=0.0,
    TRAIN__SCHEDULER="none",
    EVAL__EVERY_EPOCHS=0,
    LOG__EVERY_N_STEPS=3,
    LOG__WANDB__MODE="disabled",
)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """Trainable tensors only: BatchNorm statistics still see the skipped batch's forward pass."""
    return {k: v for k, v in model_state(run_dir).items() if "running_" not in k and "num_batches" not in k}


def test_skip_leaves_the_weights_as_if_the_step_never_happened(fer_csv_root: str, tmp_path: Path) -> None:
    two = load_config(
        FER_SYNTH, fast_opts(fer_csv_root, tmp_path, RUN_NAME="two", TRAIN__MAX_STEPS_PER_EPOCH=2, **PLAIN)
    )
    assert launch(two) == "completed"
    skip = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="skip",
            TRAIN__MAX_STEPS_PER_EPOCH=3,
            TRAIN__NAN_POLICY="skip",
            FAULT__NAN_AT_STEP=2,
            **PLAIN,
        ),
    )
    assert launch(skip) == "completed"
    a, b = _weights(tmp_path / "two"), _weights(tmp_path / "skip")
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} moved on the skipped step"
    window = records(tmp_path / "skip", "train")[-1]
    assert window["step"] == 3 and window["train/nonfinite_steps"] == 1
    assert math.isfinite(window["train/loss"])  # the mean of the two steps that counted
    assert status(tmp_path / "skip")["state"] == "completed"


def test_stop_fails_before_a_checkpoint_holds_the_bad_step(fer_csv_root: str, tmp_path: Path) -> None:
    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="stop",
            TRAIN__MAX_STEPS_PER_EPOCH=6,
            FAULT__NAN_AT_STEP=2,
            CHECKPOINT__EVERY_N_STEPS=1,
            **dict(PLAIN, LOG__EVERY_N_STEPS=6),
        ),
    )
    with pytest.raises(NonFiniteError, match="step 3"):
        launch(cfg)
    st = status(tmp_path / "stop")
    assert st["state"] == "failed" and "TRAIN.NAN_POLICY stop" in st["error"]
    state = torch.load(tmp_path / "stop" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 2  # the last good step; step 3's checkpoint was never written
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
