"""issue 10 items 1-3: a relaunch never corrupts a run. The config is compared with the
checkpoint's before anything in the run directory is written; a difference in the
run's identity is refused in one line; ``--resume force`` is the recorded override;
a completed run relaunched as it was is left untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.checkpoint import CheckpointError
from harness.config import load_config
from harness.resume_guard import ResumeError
from harness.spawn import launch
from tests.faults.helpers import snapshot
from tests.spine_helpers import FER_SYNTH, fast_opts, harness_cli

SHORT = dict(TRAIN__EPOCHS=2, TRAIN__MAX_STEPS_PER_EPOCH=2, EVAL__EVERY_EPOCHS=0)


@pytest.fixture()
def completed(fer_csv_root: str, tmp_path: Path) -> tuple[list[str], Path]:
    opts = fast_opts(fer_csv_root, tmp_path, RUN_NAME="done", LOG__WANDB__MODE="offline", **SHORT)
    assert launch(load_config(FER_SYNTH, opts)) == "completed"
    return opts, tmp_path / "done"


@pytest.fixture()
def preempted(fer_csv_root: str, tmp_path: Path) -> tuple[list[str], Path]:
    opts = fast_opts(fer_csv_root, tmp_path, RUN_NAME="cut", FAULT__PREEMPT_AT_STEP=1, **SHORT)
    assert launch(load_config(FER_SYNTH, opts)) == "preempted"
    return opts[:-2] + ["FAULT.PREEMPT_AT_STEP", "-1"], tmp_path / "cut"


def test_other_model_on_a_completed_run_is_one_line_and_writes_nothing(completed) -> None:
    opts, run_dir = completed
    before = snapshot(run_dir)
    log_before = (run_dir / "train.log").read_bytes()
    proc = harness_cli("train", "--config", FER_SYNTH, *opts, "MODEL.NAME", "efficientnet_b0", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and len(proc.stderr) < 600, proc.stderr
    assert "MODEL.NAME 'tiny_cnn' -> 'efficientnet_b0'" in lines[0] and "--resume force" in lines[0]
    assert snapshot(run_dir) == before  # config.yaml not overwritten, status.json still completed
    assert json.loads(before["status.json"])["state"] == "completed"
    assert (run_dir / "train.log").read_bytes() == log_before


def test_other_strategy_gpus_and_batch_on_an_unfinished_run_are_refused(preempted) -> None:
    opts, run_dir = preempted
    before = snapshot(run_dir)
    changed = opts + ["DIST.STRATEGY", "dp", "DIST.GPUS", "2", "TRAIN.BATCH_SIZE_PER_GPU", "8"]
    with pytest.raises(ResumeError) as e:
        launch(load_config(FER_SYNTH, changed))
    message = str(e.value)
    for key in ("DIST.STRATEGY", "DIST.GPUS", "TRAIN.BATCH_SIZE_PER_GPU"):
        assert key in message
    assert "\n" not in message
    assert snapshot(run_dir) == before
    # What may change between launches (fault injection, loader workers) is not refused.
    assert launch(load_config(FER_SYNTH, opts + ["DATA.NUM_WORKERS", "1"])) == "completed"


def test_resume_force_continues_and_records_the_changed_keys(preempted) -> None:
    opts, run_dir = preempted
    forced = load_config(FER_SYNTH, opts + ["TRAIN.LR", "0.01", "SEED", "3"])
    with pytest.raises(ResumeError):
        launch(forced)
    assert launch(forced, resume="force") == "completed"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["resumed_with_changes"] == ["SEED", "TRAIN.LR"]
    assert "--resume force: continuing" in (run_dir / "train.log").read_text()
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["config"]["TRAIN.LR"] == 0.01 and state["global_step"] == 4
    # The next relaunch compares with the forced config: accepted as the same run.
    assert launch(forced) == "completed"


def test_completed_run_relaunched_unchanged_says_so_and_changes_nothing(completed) -> None:
    opts, run_dir = completed
    before = snapshot(run_dir)
    proc = harness_cli("train", "--config", FER_SYNTH, *opts)
    assert "already completed" in proc.stderr + proc.stdout
    assert snapshot(run_dir) == before
    # Nothing new in the run directory: no W&B segment, no log line.
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert "already completed" not in (run_dir / "train.log").read_text()


def test_force_with_a_model_the_checkpoint_does_not_fit_is_one_line(completed) -> None:
    opts, run_dir = completed
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError) as e:
        launch(load_config(FER_SYNTH, opts + ["MODEL.NAME", "efficientnet_b0"]), resume="force")
    message = str(e.value)
    assert "does not fit the model" in message and "\n" not in message and len(message) < 400, message
    assert snapshot(run_dir) == before


def test_a_corrupt_checkpoint_is_one_line(completed) -> None:
    opts, run_dir = completed
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 not a checkpoint" * 100)
    before = snapshot(run_dir)
    proc = harness_cli("train", "--config", FER_SYNTH, *opts, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unreadable" in proc.stderr and len(proc.stderr) < 600
    assert snapshot(run_dir) == before
