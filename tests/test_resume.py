"""A run stopped in mid-epoch and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.config import load_config
from harness.spawn import launch
from tests.spine_helpers import FER_SYNTH, fast_opts, model_state, records

# Dropout stays on (the RNG state must be restored too); adamw, warmup and cosine
# exercise the optimizer and schedule state.
DROPOUT_RUN = dict(
    MODEL__DROPOUT=0.3,
    TRAIN__EPOCHS=2,
    TRAIN__MAX_STEPS_PER_EPOCH=4,
    TRAIN__BATCH_SIZE_PER_GPU=8,
    TRAIN__OPTIMIZER="adamw",
    TRAIN__LR=0.002,
    TRAIN__WARMUP_EPOCHS=0.5,
    TRAIN__SCHEDULER="cosine",
    LOG__EVERY_N_STEPS=3,
)


def _training_view(run_dir: Path) -> list[tuple]:
    """Everything in metrics.jsonl that must not depend on timing."""
    keep = (
        "kind",
        "step",
        "epoch",
        "samples",
        "train/loss",
        "train/lr",
        "val/accuracy",
        "val/loss",
        "val/confusion",
    )
    return [tuple(r.get(k) for k in keep) for r in records(run_dir)]


def test_resume_mid_epoch_is_exact(fer_csv_root: str, tmp_path: Path) -> None:
    straight = load_config(FER_SYNTH, fast_opts(fer_csv_root, tmp_path, RUN_NAME="straight", **DROPOUT_RUN))
    assert launch(straight) == "completed"

    # Stopped after step 6 = epoch 1, step 2 of 4; resumed with loader workers, which must not matter.
    cut = fast_opts(
        fer_csv_root,
        tmp_path,
        RUN_NAME="cut",
        FAULT__PREEMPT_AT_STEP=6,
        LOG__WANDB__MODE="offline",
        **DROPOUT_RUN,
    )
    assert launch(load_config(FER_SYNTH, cut)) == "preempted"
    run_dir = tmp_path / "cut"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "preempted" and status["step"] == 6 and status["epoch"] == 1
    resumed = load_config(FER_SYNTH, cut[:-2] + ["FAULT.PREEMPT_AT_STEP", "-1", "DATA.NUM_WORKERS", "2"])
    assert launch(resumed) == "completed"

    a, b = model_state(tmp_path / "straight"), model_state(run_dir)
    for key in a:
        assert torch.equal(a[key], b[key]), f"parameter {key} differs after resume"
    assert _training_view(tmp_path / "straight") == _training_view(run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["requeues"] == 1
    # One W&B run, continued: both offline segments carry the same id as run.json.
    run_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]
    segments = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(segments) >= 2 and all(run_id in p.name for p in segments), segments


def test_records_after_the_checkpoint_are_set_aside_not_lost(fer_csv_root: str, tmp_path: Path) -> None:
    """A crash after the last checkpoint: the resumed run redoes those steps; the
    lost steps' records move to metrics.discarded.jsonl."""
    opts = fast_opts(fer_csv_root, tmp_path, RUN_NAME="crash", TRAIN__EPOCHS=2, FAULT__CRASH_AT_STEP=7)
    cfg = load_config(FER_SYNTH, opts)
    try:
        launch(cfg)
        raise AssertionError("the injected crash did not happen")
    except RuntimeError as e:
        assert "FAULT.CRASH_AT_STEP" in str(e)
    run_dir = tmp_path / "crash"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "FAULT.CRASH_AT_STEP" in status["error"]
    assert "Traceback" in status["traceback"]
    assert max(r["step"] for r in records(run_dir)) == 6
    assert launch(cfg) == "completed"  # the crash fires once; the rerun resumes from epoch 1
    steps = [r["step"] for r in records(run_dir, "train")]
    assert steps == sorted(set(steps)) and steps[-1] == 8
    discarded = (run_dir / "metrics.discarded.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in discarded] == [6]
